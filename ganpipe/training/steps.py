"""The pieces of one optimisation step, shared by the discriminator and generator phases.

Each phase (stylegan2-ada's word) is data: the network it trains with its optimiser, loss scaler
and base learning rate, so both sides of the GAN step go through one ``optimise`` and one
finite-loss check instead of two copies of the same lines.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

from ganpipe.errors import GanpipeError
from ganpipe.training.distributed import World


class NonFiniteLoss(GanpipeError):
    pass


@dataclass
class Phase:
    """One side of the GAN step: ``name`` (generator or discriminator) and what trains it."""

    name: str
    module: torch.nn.Module
    opt: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    base_lr: float

    @property
    def what(self) -> str:
        """How a non-finite loss of this phase is named to the user."""
        return f"{self.name} loss"

    def optimise(self, loss: torch.Tensor, world: World, grad_clip: float | None) -> None:
        """One optimiser step: (scaled) backward, gradients averaged across ranks, clipped in
        true units, then the step (which the fp16 scaler skips if a gradient overflowed)."""
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss.float()).backward()
        world.average_gradients(self.module)
        if grad_clip is not None:
            self.scaler.unscale_(self.opt)
            torch.nn.utils.clip_grad_norm_(self.module.parameters(), grad_clip)
        self.scaler.step(self.opt)
        self.scaler.update()

    def scale_learning_rate(self, scale: float) -> None:
        """Set the learning rate to the configured one times ``scale`` (lowered by rollbacks)."""
        for group in self.opt.param_groups:
            group["lr"] = self.base_lr * scale


def plus(loss: torch.Tensor, penalties: Iterable[torch.Tensor | None]) -> torch.Tensor:
    """The loss plus every penalty a regulariser returned this step (None: not this step)."""
    for p in penalties:
        if p is not None:
            loss = loss + p
    return loss


def check_finite(
    value: torch.Tensor, step_no: int, what: str, t, world: World, device: torch.device
) -> None:
    """Stop on a non-finite loss, on every rank together (one rank alone would hang the rest)."""
    if world.any(not bool(torch.isfinite(value)), device):
        fix = (
            "lower train.lr_d / train.lr_g, add the r1 regularizer, or set "
            "train.on_nonfinite: rollback"
            if t.on_nonfinite == "stop"
            else "lower train.lr_d / train.lr_g or add the r1 regularizer"
        )
        raise NonFiniteLoss(
            f"the {what} became {value.item()} at step {step_no} (loss {t.loss!r})",
            where="train",
            fix=fix + " (a new model version, trained from scratch); this run's checkpoints "
            "are kept",
        )


@torch.no_grad()
def ema_decay_at(decay: float, step: int, rampup: bool) -> float:
    """The EMA decay at ``step``: ``decay``, or with ``rampup`` the warm-up form
    ``min(decay, (1 + step) / (10 + step))``, so the average follows the live weights closely at
    first (0.92 at step 100, 0.98 at 400) and settles at ``decay`` (0.995: by step 1,790). A warm
    start copies the start model into the EMA, and without it the EMA would hold the new
    styles' untrained rows for hundreds of steps."""
    return min(decay, (1 + step) / (10 + step)) if rampup else decay


def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """Move the EMA copy towards the live weights; buffers (batch-norm statistics) are copied,
    since averaging them would mix statistics of different weights."""
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p, 1.0 - decay)
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)
