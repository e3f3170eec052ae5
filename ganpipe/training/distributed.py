"""Data-parallel training across the processes ``torchrun`` starts.

Every rank holds the whole model, draws its own batches, and gradients are averaged across ranks
after each backward pass, so all ranks take identical optimiser steps and hold identical weights.
This is the synchronisation DistributedDataParallel performs; it is done explicitly because a GAN
step runs the discriminator several times before one backward pass and R1 / WGAN-GP take
gradients of gradients, which DDP's hooks do not support. Only rank 0 writes to the store.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass
class World:
    rank: int = 0
    size: int = 1
    owns_group: bool = False  # this process created the process group (so it tears it down)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def broadcast(self, module: torch.nn.Module, buffers_only: bool = False) -> None:
        """Rank 0's parameters and buffers to every rank (buffers such as batch-norm statistics
        are not gradients: they are kept in step by copying rank 0's, as DDP does)."""
        if self.size > 1:
            import torch.distributed as dist

            tensors = list(module.buffers())
            if not buffers_only:
                tensors += list(module.parameters())
            for tensor in tensors:
                dist.broadcast(tensor.data, src=0)

    def average_gradients(self, module: torch.nn.Module) -> None:
        if self.size > 1:
            import torch.distributed as dist

            for p in module.parameters():
                if p.grad is not None:
                    dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
                    p.grad.div_(self.size)

    def any(self, flag: bool, device) -> bool:
        """True on every rank when it is true on any: ranks must stop at the same step."""
        if self.size == 1:
            return flag
        import torch.distributed as dist

        value = torch.tensor([1.0 if flag else 0.0], device=device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def close(self) -> None:
        if self.owns_group:
            import torch.distributed as dist

            dist.barrier()
            dist.destroy_process_group()


def all_sum(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` summed over every rank, in place (itself when training on one process).

    For components that learn from the batches they see, such as ADA's tally of the
    discriminator's verdicts or running statistics of the reals: each rank sees different
    batches, and a state kept per rank would drift apart, while a checkpoint holds rank 0's
    alone, so a resumed run would not continue as the uninterrupted one. Summed here, every
    rank holds the same state. Every rank must call it at the same point of the step."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def join(device: torch.device) -> World:
    """The world this process trains in: itself alone, or the ranks torchrun started."""
    if not launched_by_torchrun():
        return World()
    import torch.distributed as dist

    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return World(dist.get_rank(), dist.get_world_size(), owns)


def local_device(device: torch.device) -> torch.device:
    """Under torchrun each rank takes its own GPU."""
    if device.type == "cuda" and launched_by_torchrun() and device.index is None:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device
