"""DiffAugment (Zhao et al. 2020): cheap differentiable augmentations applied to real and fake
images alike, which keeps a discriminator on a small dataset from memorising it."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from ganpipe.builtin.ada import AdaptiveAugment


class DiffAugment:
    def __init__(self, color: bool = True, translation: float = 0.125, cutout: float = 0.0):
        if not 0 <= translation < 1 or not 0 <= cutout < 1:
            raise ValueError("translation and cutout are fractions of the image side in [0, 1)")
        self.color, self.translation, self.cutout = color, translation, cutout

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n = x.shape[0]

        def rand(*shape):
            return torch.rand(*shape, generator=generator).to(x.device, x.dtype)

        if self.color:
            x = x + (rand(n, 1, 1, 1) - 0.5)  # brightness
            mean = x.mean(dim=1, keepdim=True)
            x = (x - mean) * (rand(n, 1, 1, 1) * 2) + mean  # saturation
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            x = (x - mean) * (rand(n, 1, 1, 1) + 0.5) + mean  # contrast
        if self.translation > 0:
            side = x.shape[-1]
            shift = int(side * self.translation + 0.5)
            dx, dy = ((rand(2, n) * (2 * shift + 1)).long() - shift).unbind(0)
            padded = F.pad(x, (shift, shift, shift, shift))
            rows = torch.arange(side, device=x.device)
            iy = (rows[None, :] + dy[:, None] + shift).clamp(0, side + 2 * shift - 1)
            ix = (rows[None, :] + dx[:, None] + shift).clamp(0, side + 2 * shift - 1)
            batch = torch.arange(n, device=x.device)[:, None, None]
            x = padded.permute(0, 2, 3, 1)[batch, iy[:, :, None], ix[:, None, :]].permute(
                0, 3, 1, 2
            )
        if self.cutout > 0:
            side = x.shape[-1]
            size = max(1, int(side * self.cutout + 0.5))
            cy, cx = (rand(2, n) * (side - size + 1)).long().unbind(0)
            rows = torch.arange(side, device=x.device)
            inside_y = (rows[None] >= cy[:, None]) & (rows[None] < cy[:, None] + size)
            inside_x = (rows[None] >= cx[:, None]) & (rows[None] < cx[:, None] + size)
            mask = ~(inside_y[:, :, None] & inside_x[:, None, :])
            x = x * mask[:, None].to(x.dtype)
        return x


AUGMENTATIONS = {"diffaugment": DiffAugment, "ada": AdaptiveAugment}
