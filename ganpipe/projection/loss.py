"""What "reproduces the image" means to a projection: pixels, the discriminator's features
and the style encoder's embedding, all from the run's own networks (no downloaded perceptual
network).

Pixels alone give blurry averages on real photographs; the discriminator's features, each
normalised per position across channels, compare edges and textures as the model learnt to
see them; the style encoder keeps the projection in the image's style.
"""

from __future__ import annotations

import numpy as np
import torch

from ganpipe.config import ProjectConfig
from ganpipe.contracts import FeatureDiscriminator, supports
from ganpipe.data.dataset import to_pixels


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).sum(dim=1, keepdim=True) + 1e-8)


def _pixel_gap(images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The difference as written pixels see it: beyond -1 or 1 everything is clamped, so an
    output past the end of the range where the target sits at that end costs nothing (a
    generator without a final tanh often goes past it, and a plain difference would pull it
    back at the expense of everything else)."""
    gap = images - target
    past = ((target <= -1) & (images < -1)) | ((target >= 1) & (images > 1))
    return torch.where(past, torch.zeros_like(gap), gap)


class ReconstructionLoss:
    """``loss(images)`` -> scalar (mean over the batch), against one target image."""

    def __init__(
        self,
        target: torch.Tensor,
        discriminator: torch.nn.Module | None,
        encoder: torch.nn.Module,
        spread: float,
        settings: ProjectConfig,
    ):
        self.target, self.settings, self.spread = target, settings, float(spread)
        self.d = discriminator if supports(discriminator, FeatureDiscriminator) else None
        self.encoder = encoder
        with torch.no_grad():
            self.target_maps = [_unit(m) for m in self.d.feature_maps(target)] if self.d else []
            self.target_embedding = encoder(target)

    def per_image(self, images: torch.Tensor) -> torch.Tensor:
        """(N,) loss of each image: for choosing among starting candidates."""
        s = self.settings
        loss = s.pixel_weight * _pixel_gap(images, self.target).pow(2).mean(dim=(1, 2, 3))
        if self.d is not None and s.feature_weight:
            maps = self.d.feature_maps(images)
            parts = [(_unit(m) - t).pow(2).sum(dim=1).mean(dim=(1, 2))
                     for m, t in zip(maps, self.target_maps)]  # fmt: skip
            loss = loss + s.feature_weight * torch.stack(parts).mean(dim=0)
        if s.style_weight:
            gap = (self.encoder(images) - self.target_embedding).pow(2).sum(dim=1)
            loss = loss + s.style_weight * gap / self.spread**2
        return loss

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.per_image(images).mean()


def psnr(images: torch.Tensor, target: torch.Tensor) -> float:
    """Peak signal-to-noise ratio (dB) of the pixels as written (uint8) against the target's."""
    a = to_pixels(images).astype(np.float64)
    b = to_pixels(target).astype(np.float64)
    mse = float(((a - b) ** 2).mean())
    return float("inf") if mse == 0 else 10 * float(np.log10(255.0**2 / mse))
