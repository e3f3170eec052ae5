"""Building what a run trains and trains with, each component chosen by registered name.

The order of construction is part of a run's identity: networks are built right after the
torch seed is set, so the same config always starts from the same weights.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from ganpipe.config import Config
from ganpipe.contracts import Bindable, supports
from ganpipe.contracts.contexts import TrainingContext
from ganpipe.registry import Registry
from ganpipe.style_encoders import encoder_for
from ganpipe.training.mixed_precision import Precision
from ganpipe.training.objective import GanObjective


@dataclass
class Networks:
    """The generator, discriminator and the EMA copy of the generator that is exported, with
    the constructor options the exported files record."""

    G: torch.nn.Module
    D: torch.nn.Module
    ema: torch.nn.Module  # the live generator itself when train.ema_decay is 0
    g_options: dict
    d_options: dict


def build_networks(
    config: Config, registry: Registry, num_styles: int, precision: Precision, device
) -> Networks:
    """G and D from the registry, on ``device`` in the run's memory layout (seeded by the
    caller)."""
    size = config.dataset.image_size
    g_options = {"num_styles": num_styles, "image_size": size, **config.model.generator_options}
    d_options = {"num_styles": num_styles, "image_size": size, **config.model.discriminator_options}
    G = registry.create(
        "generator", config.model.generator, config_key="model.generator_options", **g_options
    )
    D = registry.create(
        "discriminator",
        config.model.discriminator,
        config_key="model.discriminator_options",
        **d_options,
    )
    G, D = precision.prepare(G.to(device)), precision.prepare(D.to(device))
    # ema_decay 0: no EMA copy at all, the live generator is exported (as a plain loop would).
    decay = config.train.ema_decay
    ema = G if decay == 0 else copy.deepcopy(G).eval().requires_grad_(False)
    return Networks(G, D, ema, g_options, d_options)


def build_objective(config: Config, registry: Registry, styles_context) -> GanObjective:
    """The loss, regularisers and augmentations; regularisers that ask for the run's styles
    (a ``bind`` method) are given them. ``styles_context()`` builds that context, only when
    some regulariser needs it (it may load a style encoder)."""
    t = config.train
    loss = registry.create("loss", t.loss, config_key="train.loss_options", **t.loss_options)
    regularizers = [
        (n, registry.create("regularizer", n, config_key=f"train.regularizers.{n}", **o))
        for n, o in t.regularizers.items()
    ]
    augmentations = [
        (n, registry.create("augmentation", n, config_key=f"train.augmentations.{n}", **o))
        for n, o in t.augmentations.items()
    ]
    binding = [r for _, r in regularizers if supports(r, Bindable)]
    if binding:
        context = styles_context()
        for r in binding:
            r.bind(context)
    return GanObjective(registry, t.loss, loss, regularizers, augmentations)


def styles_context(
    registry: Registry, dataset, table, image_size: int, device: torch.device
) -> TrainingContext:
    """The run's style encoder, centroids and names, on ``device``."""
    encoder = encoder_for(registry, dataset, table.encoder, table.encoder_options, image_size)
    return TrainingContext(encoder.to(device), table.centroids.to(device), table.names)
