"""Adversarial losses, each a pair of D and G objectives over realism logits."""

from __future__ import annotations

import torch
from torch.nn import functional as F


class NonSaturating:
    """The original GAN loss with the non-saturating generator objective (Goodfellow et al.)."""

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()

    def g_loss(self, fake_logits: torch.Tensor, real_logits: torch.Tensor) -> torch.Tensor:
        return F.softplus(-fake_logits).mean()


class Hinge:
    """Hinge loss (SAGAN, BigGAN): D stops pushing once a margin of 1 is reached."""

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()

    def g_loss(self, fake_logits: torch.Tensor, real_logits: torch.Tensor) -> torch.Tensor:
        return -fake_logits.mean()


class LeastSquares:
    """LSGAN: squared distance of logits to the real (1) and fake (0) targets."""

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((real_logits - 1.0) ** 2).mean() + 0.5 * (fake_logits**2).mean()

    def g_loss(self, fake_logits: torch.Tensor, real_logits: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((fake_logits - 1.0) ** 2).mean()


LOSSES = {"nonsaturating": NonSaturating, "hinge": Hinge, "lsgan": LeastSquares}
