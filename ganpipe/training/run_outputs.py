"""What a run leaves beside its weights: sample grids, TensorBoard events, and batch-norm
statistics made to fit the exported (EMA) weights."""

from __future__ import annotations

import numpy as np
import torch

from ganpipe.data.dataset import to_pixels
from ganpipe.data.images import grid
from ganpipe.errors import ConfigError
from ganpipe.progress import log
from ganpipe.store import RunStore, layout


def tensorboard_writer(store: RunStore, files: layout.ModelFiles):
    """A TensorBoard writer into the model folder (a local store), or under the local cache
    (TensorBoard cannot write to object stores by itself); tells where either way."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError(
            "train.tensorboard is on but the tensorboard package is not installed",
            where="train.tensorboard",
            fix="pip install tensorboard (or 'ganpipe[tensorboard]'), or set it to false",
        ) from None
    from pathlib import Path

    from ganpipe.data.demo import cache_dir

    if store.local:
        local = Path(store.path(files.tensorboard))
    else:
        local = cache_dir() / "tensorboard" / files.folder
    log.info("TensorBoard events in %s (tensorboard --logdir %s)", local, local)
    return SummaryWriter(log_dir=str(local))


@torch.no_grad()
def recalibrate_batchnorm(model: torch.nn.Module, num_styles: int, device, seed: int) -> None:
    """Batch-norm statistics were gathered by the live generator, not by the EMA weights; redo
    them for the EMA weights so eval-mode samples match training-mode ones."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    gen = torch.Generator().manual_seed(seed)
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    model.train()
    for _ in range(16):
        z = torch.randn(256, model.z_dim, generator=gen).to(device)
        s = torch.randint(num_styles, (256,), generator=gen).to(device)
        model(z, s)
    model.eval()


@torch.no_grad()
def sample_grid(generator: torch.nn.Module, num_styles: int, device, per_style: int = 8):
    """One row per style, the same latents in every row; leaves the generator's mode as it was
    (sampling mid-training must not touch batch-norm statistics)."""
    was_training = generator.training
    generator.eval()
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(per_style, generator.z_dim, generator=gen).to(device)
    style_rows = [
        to_pixels(generator(z, torch.full((per_style,), s, device=device)))
        for s in range(num_styles)
    ]
    generator.train(was_training)
    return grid(np.concatenate(style_rows), cols=per_style, scale=2)
