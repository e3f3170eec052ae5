"""The optimiser of each network, chosen in the config (``train.optimizer``).

Adam with betas (0.5, 0.99) is the default and what every published GAN recipe ganpipe learns
from uses; AdamW adds decoupled weight decay (``train.optimizer_options.weight_decay``). Both
take ``train.betas``. Learning rates are per network (``train.lr_g``, ``train.lr_d``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch

from ganpipe.errors import ConfigError

if TYPE_CHECKING:
    from ganpipe.config import TrainConfig

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


def make_optimizer(t: TrainConfig, params: Iterable[torch.nn.Parameter],
                   lr: float) -> torch.optim.Optimizer:  # fmt: skip
    kind = OPTIMIZERS[t.optimizer]
    try:
        return kind(params, lr=lr, betas=t.betas, **t.optimizer_options)
    except TypeError as exc:
        raise ConfigError(
            f"{t.optimizer} does not take these options: {exc}",
            where="train.optimizer_options",
            fix="give options of torch.optim."
            f"{kind.__name__} other than lr and betas (e.g. weight_decay: 0.01)",
        ) from None
