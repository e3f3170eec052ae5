"""Setting a run up: its data, device and precision, networks and components, and where it
resumes from. ``build_trainer`` does these in the order that fixes a run's random draws."""

from __future__ import annotations

import torch

from ganpipe.config import Config
from ganpipe.errors import ConfigError, StoreError
from ganpipe.progress import log
from ganpipe.registry import Registry
from ganpipe.store import RunStore, layout, read_uri
from ganpipe.store.checkpoints import load_checkpoint_bytes, newest_valid_checkpoint
from ganpipe.training.components import build_networks, build_objective, styles_context
from ganpipe.training.distributed import join, local_device
from ganpipe.training.mixed_precision import resolve_precision
from ganpipe.training.trainer import Placement, Trainer
from ganpipe.training.training_data import TrainingData
from ganpipe.training.warm_start import InitSource, freeze_early_layers, warm_start


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(
            f"unknown device {name!r}", where="train.device", fix="use auto, cpu, cuda or cuda:N"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "train.device asks for CUDA but no CUDA device is available",
            where="train.device",
            fix="use auto or cpu, or install a CUDA build",
        )
    return device


def build_trainer(
    config: Config,
    store: RunStore,
    registry: Registry,
    data: TrainingData,
    version: str,
    files: layout.ModelFiles,
    start: InitSource | None = None,
) -> Trainer:
    """A trainer ready to ``fit``: networks built from the seed (or warm-started from the
    model ``start`` names), components bound, and the checkpoint ``train.resume`` names (if
    any) restored."""
    t = config.train
    device = local_device(pick_device(t.device))
    precision = resolve_precision(t.precision, t.channels_last, device)
    world = join(device)
    reals = data.images(t)
    torch.manual_seed(t.seed)  # the initial weights
    nets = build_networks(config, registry, len(data.table.names), precision, device)
    if start is not None and not start.is_scratch:
        warm_start(nets, start, data.table, config, registry)
    freeze_early_layers(nets.D, t.freeze_d_layers)
    size = config.dataset.image_size
    objective = build_objective(
        config, registry, lambda: styles_context(registry, data.dataset, data.table, size, device)
    )
    placement = Placement(world, device, precision)
    warm = start is not None and not start.is_scratch
    rampup = warm if t.ema_rampup == "auto" else t.ema_rampup
    trainer = Trainer(config, store, registry, data, version, files, placement, reals, nets,
                      objective, ema_rampup=rampup)  # fmt: skip
    point = find_resume_point(store, files.checkpoints, t.resume, data.dataset.fingerprint)
    if point is not None:
        log.info("resuming from step %d of %s", point[0], version)
    trainer.resume(point)
    return trainer


def find_resume_point(
    store: RunStore, folder: str, policy: str, dataset_fp: str
) -> tuple[int, dict] | None:
    """The step and state ``train.resume`` names: the newest valid checkpoint in ``folder``
    (auto), none (never), or the checkpoint at a URI; refused when from another dataset."""
    if policy == "never":
        return None
    if policy == "auto":
        found = newest_valid_checkpoint(store, folder)
    else:
        data = read_uri(policy, what="the checkpoint", where="train.resume",
                        fix="use auto, never, or the URI of a step-XXXXXXXX.pt file")  # fmt: skip
        state = load_checkpoint_bytes(data, policy)
        found = (int(state["step"]), state)
    if found is not None and found[1].get("dataset_fingerprint") != dataset_fp:
        raise StoreError(
            "the checkpoint was trained on another dataset "
            f"({found[1].get('dataset_fingerprint')}, this one is {dataset_fp})",
            where="train.resume",
            fix="use resume: auto or never",
        )
    return found
