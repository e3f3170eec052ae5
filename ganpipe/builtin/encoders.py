"""The built-in texture/colour style encoder, which needs no pretrained weights.

Gram matrices of a fixed random convolutional network capture texture remarkably well (Ustyuzhaninov
et al., "Texture synthesis using shallow convolutional networks with random filters"), and colour
statistics capture palette; together they separate styles without any download. Weights come from
a seed, so the same options always give the same encoder on every machine.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def _upper(gram: torch.Tensor) -> torch.Tensor:
    c = gram.shape[-1]
    rows, cols = torch.triu_indices(c, c)
    return gram[:, rows, cols]


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / (x.norm(dim=1, keepdim=True) + 1e-8)


class TextureColourEncoder(nn.Module):
    def __init__(
        self,
        image_size: int = 32,
        embedding_dim: int = 64,
        widths: tuple[int, ...] | list[int] = (16, 32, 32),
        colour_weight: float = 1.0,
        seed: int = 0,
    ):
        super().__init__()
        if embedding_dim < 2 or not widths:
            raise ValueError("texture encoder needs embedding_dim >= 2 and at least one width")
        self.embedding_dim = embedding_dim
        self.colour_weight = colour_weight
        gen = torch.Generator().manual_seed(seed)
        self.convs = nn.ModuleList()
        in_ch = 3
        for w in widths:
            conv = nn.Conv2d(in_ch, w, 3, padding=1)
            with torch.no_grad():
                conv.weight.copy_(
                    torch.randn(conv.weight.shape, generator=gen) / (in_ch * 9) ** 0.5
                )
                conv.bias.copy_(torch.randn(w, generator=gen) * 0.1)
            conv.requires_grad_(False)
            self.convs.append(conv)
            in_ch = w
        feature_dim = 9 + sum(w * (w + 1) // 2 for w in widths)
        projection = torch.randn(feature_dim, embedding_dim, generator=gen) / embedding_dim**0.5
        self.register_buffer("projection", projection)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images
        n = x.shape[0]
        # Palette: channel means, spreads and correlations.
        flat = x.flatten(2)
        mean = flat.mean(dim=2)
        centred = flat - mean[:, :, None]
        cov = centred @ centred.transpose(1, 2) / flat.shape[2]
        blocks = [self.colour_weight * _unit(torch.cat([mean, _upper(cov)], dim=1))]
        # Texture: Gram matrices at growing receptive fields.
        for i, conv in enumerate(self.convs):
            if i:
                x = F.avg_pool2d(x, 2) if min(x.shape[-2:]) >= 4 else x
            x = F.relu(conv(x))
            f = x.flatten(2)
            gram = f @ f.transpose(1, 2) / f.shape[2]
            g = _upper(gram)
            blocks.append(_unit(torch.sign(g) * (g.abs() + 1e-8).sqrt()))
        features = torch.cat(blocks, dim=1).reshape(n, -1)
        return _unit(features @ self.projection)


ENCODERS = {"texture": TextureColourEncoder}
