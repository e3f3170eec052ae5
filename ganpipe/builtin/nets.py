"""Conditional DCGAN: the classic transposed-convolution generator and strided-conv discriminator.

The style condition enters the generator through class-conditional batch norm (each style owns a
gain and bias per channel) and the discriminator through a projection head (inner product of the
style embedding with the image features), which condition far more strongly than concatenating a
one-hot vector, so styles separate early in training.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def num_doublings(image_size: int) -> int:
    n = int(math.log2(image_size)) - 2
    if image_size < 8 or 2 ** (n + 2) != image_size:
        raise ValueError(f"image_size must be a power of two >= 8, got {image_size}")
    return n


class ConditionalBatchNorm(nn.Module):
    def __init__(self, channels: int, cond_dim: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.gain = nn.Linear(cond_dim, channels)
        self.bias = nn.Linear(cond_dim, channels)
        nn.init.zeros_(self.gain.weight)
        nn.init.ones_(self.gain.bias)
        nn.init.zeros_(self.bias.weight)
        nn.init.zeros_(self.bias.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.bn(x) * self.gain(cond)[:, :, None, None] + self.bias(cond)[:, :, None, None]


class StyleConditioned(nn.Module):
    """What the generators that take a style through a conditioning vector share: the style
    table's embedding (plus an optional continuous style code), ``condition`` and ``forward``;
    each subclass supplies ``render(z, cond)``."""

    def _init_condition(self, num_styles: int, cond_dim: int, style_embedding_dim: int) -> None:
        self.num_styles = num_styles
        self.style_embedding_dim = style_embedding_dim
        self.embed = nn.Embedding(num_styles, cond_dim)
        self.embed_continuous = (
            nn.Linear(style_embedding_dim, cond_dim) if style_embedding_dim > 0 else None
        )

    def condition(
        self, style: torch.Tensor, style_embedding: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The conditioning vector every layer sees: ``style`` is style indices (N,) or weights
        over the styles (N, S), a blend such as a reference image gives; ``style_embedding``
        adds a continuous style code when the generator was built with one."""
        cond = style_vectors(self.embed, style)
        if style_embedding is not None and self.embed_continuous is not None:
            cond = cond + self.embed_continuous(style_embedding)
        return cond

    def forward(
        self, z: torch.Tensor, style: torch.Tensor, style_embedding: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.render(z, self.condition(style, style_embedding))


class DCGANGenerator(StyleConditioned):
    """z + style -> image; ``style_embedding`` (optional) steers it with a continuous style code."""

    def __init__(
        self,
        num_styles: int,
        image_size: int,
        z_dim: int = 64,
        channels: int = 16,
        max_channels: int = 256,
        cond_dim: int = 64,
        style_embedding_dim: int = 0,
        upsample: str = "transpose",
    ):
        super().__init__()
        self.z_dim = z_dim
        self.image_size = image_size
        n = num_doublings(image_size)
        widths = [min(channels * 2 ** (n - i), max_channels) for i in range(n + 1)]
        self._init_condition(num_styles, cond_dim, style_embedding_dim)
        self.project = nn.Linear(z_dim + cond_dim, widths[0] * 16)
        self.norms = nn.ModuleList(ConditionalBatchNorm(w, cond_dim) for w in widths)
        self.ups = nn.ModuleList(upsampling(upsample, widths[i], widths[i + 1]) for i in range(n))
        self.to_rgb = nn.Conv2d(widths[-1], 3, 3, 1, 1)
        self.width0 = widths[0]

    def render(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Image from a latent and a conditioning vector (interpolations blend the latter)."""
        x = self.project(torch.cat([z, cond], dim=1)).view(-1, self.width0, 4, 4)
        for norm, up in zip(self.norms[:-1], self.ups):
            x = up(torch.relu(norm(x, cond)))
        return torch.tanh(self.to_rgb(torch.relu(self.norms[-1](x, cond))))


UPSAMPLING = ("transpose", "nearest")


def upsampling(kind: str, cin: int, cout: int) -> nn.Module:
    """One doubling of the generator's resolution. ``transpose`` is the classic DCGAN stride-2
    transposed convolution, whose overlapping 4x4 kernels can print a checkerboard on flat
    areas; ``nearest`` repeats each pixel and then convolves (3x3), which cannot (Odena et al.
    2016, "Deconvolution and Checkerboard Artifacts")."""
    if kind == "transpose":
        return nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False)
    if kind == "nearest":
        return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                             nn.Conv2d(cin, cout, 3, 1, 1, bias=False))  # fmt: skip
    raise ValueError(f"upsample must be one of {', '.join(UPSAMPLING)}, got {kind!r}")


def style_vectors(embed: nn.Embedding, style: torch.Tensor) -> torch.Tensor:
    """Embedding rows for style indices, or their weighted sum for weights over the styles (a
    one-hot weight row gives exactly the row)."""
    if style.is_floating_point():
        return style.to(embed.weight.dtype) @ embed.weight
    return embed(style)


def minibatch_stddev(x: torch.Tensor, group: int = 4) -> torch.Tensor:
    """One feature map holding the spread of features across a small group of images
    (Karras et al. 2018): a collapsed generator, whose samples barely differ, becomes easy to
    spot, which pushes it back towards diversity within each style."""
    n, c, h, w = x.shape
    g = min(group, n)
    while n % g:
        g -= 1
    y = x.view(g, n // g, c, h, w)
    y = (y.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # (n // g,)
    return y.repeat(g)[:, None, None, None].expand(n, 1, h, w)


def style_stddev(x: torch.Tensor, style: torch.Tensor, num_styles: int) -> torch.Tensor:
    """Minibatch standard deviation taken among the images of the same style only.

    The plain form (``minibatch_stddev``) mixes styles in its groups, so in a conditional GAN
    the spread it measures is mostly the gap between styles, which a generator that has
    collapsed to one image per style still shows: the discriminator cannot see the collapse.
    Here each image gets the spread of its own style's images in the batch (unbiased, so the
    figure does not depend on how many there are), which is near zero exactly when a style
    has collapsed. An image alone with its style in the batch gets the mean over the others.
    """
    n, c, h, w = x.shape
    flat = x.reshape(n, -1).float()
    if style.is_floating_point():  # weights over the styles (a blend): its strongest style
        style = style.argmax(dim=1)
    _, spreads, count = per_style_moments(flat, style, num_styles)
    spread = spreads.mean(dim=1)  # (S,)
    paired = (count >= 2).to(flat)
    # without a style twice in the batch, the plain batch spread is the best there is; no
    # branch on the data, so the function compiles into one graph and never syncs a GPU
    batch_spread = (flat.var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
    paired_mean = (spread * paired).sum() / paired.sum().clamp(min=1)
    fallback = torch.where(paired.sum() > 0, paired_mean, batch_spread)
    per_image = torch.where(paired[style] > 0, spread[style], fallback)
    return per_image.to(x.dtype)[:, None, None, None].expand(n, 1, h, w)


def per_style_moments(rows: torch.Tensor, style: torch.Tensor, num_styles: int):
    """Per style: the mean, the unbiased per-column spread and the count of ``rows`` (N, D)
    of that style; what the per-style spread channel and ``style_moments`` both measure."""
    onehot = torch.nn.functional.one_hot(style, num_styles).to(rows)  # (N, S)
    n = onehot.sum(dim=0)  # (S,)
    mean = (onehot.T @ rows) / n.clamp(min=1)[:, None]
    var = (onehot.T @ (rows - mean[style]).pow(2)) / (n - 1).clamp(min=1)[:, None]
    return mean, (var + 1e-8).sqrt(), n


def minibatch_feature(
    kind: str, x: torch.Tensor, style: torch.Tensor, num_styles: int
) -> torch.Tensor:
    """The discriminator's extra spread channel: ``style`` (per-style spread), ``batch``
    (StyleGAN's groups of 4 across styles) or ``off`` (zeros, keeping the layer shapes)."""
    if kind == "style":
        return style_stddev(x, style, num_styles)
    if kind == "batch":
        return minibatch_stddev(x)
    return x.new_zeros(x.shape[0], 1, *x.shape[2:])


MINIBATCH_KINDS = ("style", "batch", "off")


def check_pack(pack: int) -> int:
    if not isinstance(pack, int) or pack < 1:
        raise ValueError(f"pack must be a whole number >= 1 (1: no packing), got {pack!r}")
    return pack


def check_minibatch(kind: str) -> str:
    if kind not in MINIBATCH_KINDS:
        raise ValueError(f"minibatch must be one of {', '.join(MINIBATCH_KINDS)}, got {kind!r}")
    return kind


def pack_images(
    images: torch.Tensor, style: torch.Tensor, pack: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """PacGAN (Lin et al. 2018): the discriminator judges ``pack`` consecutive images at once,
    stacked along the channels, so it sees samples jointly and a generator that repeats
    itself is easier to catch. The trainer's fakes come in the same style order as its reals,
    so real and fake packs hold the same styles. A batch that does not divide is padded with
    its last image; returns the packed images (N/pack, 3*pack, H, W) and styles (N/pack, pack).
    """
    if style.is_floating_point():  # weights over the styles (a blend): its strongest style
        style = style.argmax(dim=1)
    pad = (-images.shape[0]) % pack
    if pad:
        images = torch.cat([images, images[-1:].expand(pad, -1, -1, -1)])
        style = torch.cat([style, style[-1:].expand(pad)])
    n, c, h, w = images.shape
    return images.reshape(n // pack, pack * c, h, w), style.reshape(n // pack, pack)


def unpack_logits(logits: torch.Tensor, pack: int, n: int) -> torch.Tensor:
    """One logit per image again (each image gets its pack's), as every caller expects."""
    return logits.repeat_interleave(pack)[:n] if pack > 1 else logits


def projection_logits(
    h: torch.Tensor, styles: torch.Tensor, linear: nn.Linear, embed: nn.Embedding
) -> torch.Tensor:
    """The projection head (Miyato & Koyama 2018) every built-in discriminator ends with: a
    linear realism score of the pooled features ``h`` (N, C) plus their inner product with the
    style's embedding. ``styles`` is (N, pack): a pack's embeddings are averaged."""
    return linear(h).squeeze(1) + (embed(styles).mean(dim=1) * h).sum(dim=1)


def apply_spectral_norm(module: nn.Module) -> nn.Module:
    """Spectral normalisation (Miyato et al. 2018) of every convolution, linear layer and
    style embedding: each weight is divided by its largest singular value (one power-iteration
    step per training forward), which bounds how sharply the discriminator can change and
    steadies training on little data. The normalised weights export and load like any others:
    the factory option rebuilds the same parametrisation."""
    from torch.nn.utils.parametrizations import spectral_norm

    for child in list(module.modules()):
        if isinstance(child, (nn.Conv2d, nn.Linear, nn.Embedding)):
            spectral_norm(child)
    return module


class DCGANDiscriminator(nn.Module):
    """image + style -> realism logit, with a projection head for the style."""

    def __init__(
        self,
        num_styles: int,
        image_size: int,
        channels: int = 16,
        max_channels: int = 256,
        spectral_norm: bool = False,
        minibatch: str = "batch",
        pack: int = 1,
    ):
        super().__init__()
        self.minibatch, self.num_styles = check_minibatch(minibatch), num_styles
        self.pack = check_pack(pack)
        n = num_doublings(image_size)
        widths = [min(channels * 2**i, max_channels) for i in range(n + 1)]
        layers: list[nn.Module] = [nn.Conv2d(3 * pack, widths[0], 3, 1, 1), nn.LeakyReLU(0.2)]
        for i in range(n):
            layers += [nn.Conv2d(widths[i], widths[i + 1], 4, 2, 1), nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(*layers)
        self.final = nn.Conv2d(widths[-1] + 1, widths[-1], 3, 1, 1)
        self.linear = nn.Linear(widths[-1], 1)
        self.embed = nn.Embedding(num_styles, widths[-1])
        nn.init.normal_(self.embed.weight, std=0.02)
        if spectral_norm:
            apply_spectral_norm(self)

    def feature_maps(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The activations after each layer, finest first: what a projection compares (the
        image fills every slot of a pack)."""
        x, maps = images.repeat(1, self.pack, 1, 1), []
        for layer in self.features:
            x = layer(x)
            if isinstance(layer, nn.LeakyReLU):
                maps.append(x)
        return maps

    def forward(self, images: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        n = images.shape[0]
        packed, styles = pack_images(images, style, self.pack)
        x = self.features(packed)
        x = torch.cat([x, minibatch_feature(self.minibatch, x, styles[:, 0], self.num_styles)],
                      dim=1)  # fmt: skip
        h = nn.functional.leaky_relu(self.final(x), 0.2).sum(dim=(2, 3))
        return unpack_logits(projection_logits(h, styles, self.linear, self.embed), self.pack, n)
