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


class WassersteinGP:
    """WGAN-GP (Gulrajani et al. 2017): the critic's mean score gap, plus a penalty pulling the
    critic's gradient norm towards 1 on points between real and fake images. The penalty comes
    with the loss (``d_penalty``), so choosing ``wgan_gp`` is all it takes."""

    def __init__(self, gp_weight: float = 10.0):
        self.gp_weight = float(gp_weight)
        if self.gp_weight < 0:
            raise ValueError("gp_weight must be >= 0")

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return fake_logits.mean() - real_logits.mean()

    def g_loss(self, fake_logits: torch.Tensor, real_logits: torch.Tensor) -> torch.Tensor:
        return -fake_logits.mean()

    def d_penalty(self, discriminator, real_images, fake_images, style, step: int):
        eps = torch.rand(real_images.shape[0], 1, 1, 1, device=real_images.device)
        mixed = (eps * real_images + (1 - eps) * fake_images.detach()).requires_grad_(True)
        (grad,) = torch.autograd.grad(discriminator(mixed, style).sum(), mixed, create_graph=True)
        return self.gp_weight * ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


LOSSES = {
    "nonsaturating": NonSaturating,
    "hinge": Hinge,
    "lsgan": LeastSquares,
    "wgan_gp": WassersteinGP,
}
