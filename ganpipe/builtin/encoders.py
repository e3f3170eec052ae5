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

from ganpipe.builtin.inception import inception_features


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


class ContrastiveEncoder(nn.Module):
    """A small CNN trained on the dataset itself with SimCLR's objective (Chen et al. 2020).

    Two views of an image differ in crop position and scale, flips and quarter turns, but never
    in colour or texture: so what the network learns to recognise across views is the style,
    not the layout. ``ganpipe styles`` trains it once per dataset version and stores its weights
    beside the style table (or loads ``weights``, a local path or store URI, when given).
    """

    trainable = True

    def __init__(
        self,
        image_size: int = 32,
        embedding_dim: int = 64,
        width: int = 16,
        steps: int = 150,  # longer runs learn instance detail and cluster styles worse
        batch_size: int = 128,
        temperature: float = 1.0,  # a soft objective groups images of one style together
        lr: float = 2e-3,
        seed: int = 0,
        weights: str | None = None,
    ):
        super().__init__()
        if embedding_dim < 2 or width < 4 or steps < 0 or batch_size < 2 or temperature <= 0:
            raise ValueError("contrastive encoder: check embedding_dim, width, steps, batch_size")
        self.embedding_dim = embedding_dim
        self.steps, self.batch_size, self.temperature, self.lr = steps, batch_size, temperature, lr
        self.seed, self.weights = seed, weights
        torch.manual_seed(seed)

        def block(cin, cout, stride):
            return [nn.Conv2d(cin, cout, 3, stride, 1), nn.GroupNorm(4, cout), nn.ReLU()]

        self.features = nn.Sequential(
            *block(3, width, 1), *block(width, width, 2), *block(width, 2 * width, 2),
            *block(2 * width, 2 * width, 1),
        )  # fmt: skip
        self.embed = nn.Linear(4 * width + 6, embedding_dim)  # mean + std pools, colour stats
        self.project = nn.Sequential(nn.ReLU(), nn.Linear(embedding_dim, embedding_dim))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h = self.features(images).flatten(2)
        flat = images.flatten(2)
        pooled = torch.cat([h.mean(2), h.std(2), flat.mean(2), flat.std(2)], dim=1)
        return _unit(self.embed(pooled))

    def fit(self, draw, log=None) -> None:
        """Train on batches from ``draw(n, generator) -> images (n, 3, H, W) in [-1, 1]``."""
        gen = torch.Generator().manual_seed(self.seed)
        opt = torch.optim.Adam(self.parameters(), lr=self.lr)
        self.train()
        for step in range(self.steps):
            x = draw(self.batch_size, gen)
            z = torch.cat([self.project(self(_view(x, gen))), self.project(self(_view(x, gen)))])
            loss = _nt_xent(_unit(z), self.temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if log and (step + 1) % 50 == 0:
                log(step + 1, loss.item())
        self.eval()


def _view(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A random crop (40-100% of the side), flip and quarter turn of each image, resampled to
    the same size in one batched ``grid_sample``; colours are left alone."""
    n = x.shape[0]
    scale = 0.4 + 0.6 * torch.rand(n, generator=gen)
    shift = (1 - scale)[:, None] * (2 * torch.rand(n, 2, generator=gen) - 1)
    turns = torch.randint(4, (n,), generator=gen).float() * (torch.pi / 2)
    flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(turns) * scale, torch.sin(turns) * scale
    theta = torch.stack(
        [
            torch.stack([cos * flip, -sin, shift[:, 0]], 1),
            torch.stack([sin * flip, cos, shift[:, 1]], 1),
        ],
        dim=1,
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _nt_xent(z: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's loss: each view must pick its partner out of the whole batch."""
    n = z.shape[0] // 2
    sim = z @ z.T / temperature
    sim.fill_diagonal_(float("-inf"))
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return F.cross_entropy(sim, partner)


ENCODERS = {
    "texture": TextureColourEncoder,
    "contrastive": ContrastiveEncoder,
    "inception": inception_features,  # FID's space, from weights at a path or URI
}
