"""SNGAN/BigGAN-style residual networks: the generator ``resnet`` and the discriminator
``sngan`` (Miyato et al. 2018, "Spectral Normalization for GANs"; Miyato & Koyama 2018,
"cGANs with Projection Discriminator"; Brock et al. 2019, BigGAN).

The generator is DCGAN's conditioning (class-conditional batch norm fed by ``condition``) on
residual up-blocks; the discriminator is residual down-blocks with ReLU, spectral norm on every
layer, global sum pooling and the projection head. Both take the same options, under the same
names, as the DCGAN pair they can replace.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ganpipe.builtin.nets import (
    ConditionalBatchNorm,
    StyleConditioned,
    apply_spectral_norm,
    check_minibatch,
    check_pack,
    minibatch_feature,
    num_doublings,
    pack_images,
    projection_logits,
    unpack_logits,
    upsampling,
)

_RESIDUAL_GAIN = math.sqrt(2)  # the residual convolutions feed a ReLU: He-like scale


def _glorot(module: nn.Module, gain: float = 1.0) -> nn.Module:
    """SNGAN's initialisation (Glorot-uniform weights, zero biases) of every convolution and
    linear layer in ``module``."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module


class UpBlock(nn.Module):
    """Conditional BN -> ReLU -> double -> conv 3x3 -> conditional BN -> ReLU -> conv 3x3, plus
    a shortcut: a 1x1 convolution of the input, doubled by nearest neighbour (convolving before
    doubling is the same arithmetic at a quarter of the cost).

    ``upsample`` is DCGAN's option (``nets.upsampling``): ``nearest`` (SNGAN's doubling) or
    ``transpose``. The first convolution has no bias: the batch norm after it would remove it.
    """

    def __init__(self, cin: int, cout: int, cond_dim: int, upsample: str = "nearest"):
        super().__init__()
        self.norm1 = ConditionalBatchNorm(cin, cond_dim)
        self.conv1 = _glorot(upsampling(upsample, cin, cout), _RESIDUAL_GAIN)
        self.norm2 = ConditionalBatchNorm(cout, cond_dim)
        self.conv2 = _glorot(nn.Conv2d(cout, cout, 3, 1, 1), _RESIDUAL_GAIN)
        self.shortcut = _glorot(nn.Conv2d(cin, cout, 1))

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.relu(self.norm1(x, cond)))
        h = self.conv2(F.relu(self.norm2(h, cond)))
        return h + F.interpolate(self.shortcut(x), scale_factor=2, mode="nearest")


class ResNetGenerator(StyleConditioned):
    """z + style -> image through residual up-blocks (SNGAN's generator); ``style_embedding``
    (optional) steers it with a continuous style code.

    The latent and the style's conditioning vector are projected to 4x4, doubled by one
    ``UpBlock`` per octave (every batch norm in them conditioned on the style), then batch norm,
    ReLU, a 3x3 convolution and tanh. The options are ``DCGANGenerator``'s, with the same
    meanings and widths (``channels`` at the image size, doubling per octave down to 4x4, at
    most ``max_channels``; ``channels=256, max_channels=256`` is SNGAN's 32 px generator), so
    ``model.generator_options`` carry over; ``upsample`` defaults to ``nearest``, SNGAN's.
    """

    def __init__(
        self,
        num_styles: int,
        image_size: int,
        z_dim: int = 64,
        channels: int = 16,
        max_channels: int = 256,
        cond_dim: int = 64,
        style_embedding_dim: int = 0,
        upsample: str = "nearest",
    ):
        super().__init__()
        self.z_dim = z_dim
        self.image_size = image_size
        n = num_doublings(image_size)
        widths = [min(channels * 2 ** (n - i), max_channels) for i in range(n + 1)]
        self._init_condition(num_styles, cond_dim, style_embedding_dim)
        self.project = _glorot(nn.Linear(z_dim + cond_dim, widths[0] * 16))
        self.blocks = nn.ModuleList(
            UpBlock(widths[i], widths[i + 1], cond_dim, upsample) for i in range(n)
        )
        self.norm = nn.BatchNorm2d(widths[-1])  # unconditional, as in SNGAN and BigGAN
        self.to_rgb = _glorot(nn.Conv2d(widths[-1], 3, 3, 1, 1))
        self.width0 = widths[0]

    def render(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Image from a latent and a conditioning vector (interpolations blend the latter)."""
        x = self.project(torch.cat([z, cond], dim=1)).view(-1, self.width0, 4, 4)
        for block in self.blocks:
            x = block(x, cond)
        return torch.tanh(self.to_rgb(F.relu(self.norm(x))))


class DownBlock(nn.Module):
    """ReLU -> conv 3x3 -> ReLU -> conv 3x3 -> 2x2 average pool, plus a shortcut: a 1x1
    convolution then the pool (the identity where neither width nor size changes).

    ``first``: SNGAN's "optimized" block on the image itself: no ReLU before the first
    convolution (it would clip the pixels) and a shortcut that pools before its convolution.
    """

    def __init__(self, cin: int, cout: int, downsample: bool = True, first: bool = False):
        super().__init__()
        self.downsample, self.first = downsample, first
        self.conv1 = _glorot(nn.Conv2d(cin, cout, 3, 1, 1), _RESIDUAL_GAIN)
        self.conv2 = _glorot(nn.Conv2d(cout, cout, 3, 1, 1), _RESIDUAL_GAIN)
        learnt = cin != cout or downsample
        self.shortcut = _glorot(nn.Conv2d(cin, cout, 1)) if learnt else None

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, 2) if self.downsample else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(F.relu(self.conv1(x if self.first else F.relu(x))))
        if self.first:
            skip = self.shortcut(self._pool(x))
        else:
            skip = x if self.shortcut is None else self._pool(self.shortcut(x))
        return self._pool(h) + skip


class SNGANDiscriminator(nn.Module):
    """image + style -> realism logit: SNGAN's projection discriminator.

    Down-blocks (``DownBlock``) halve the image down to 8x8 (the first on the pixels), two more
    blocks work at 8x8 (SNGAN's CIFAR layout; an 8 px image goes to 4x4), then ReLU, the sum
    over positions and ``projection_logits``. Spectral norm on every convolution, linear layer
    and the style embedding (``spectral_norm``, on by default) and Glorot initialisation, as in
    the paper. Block widths follow ``dcgan``'s rule (``channels`` at the image size, doubling
    per octave, at most ``max_channels``): ``channels=128, max_channels=128`` is SNGAN's 32 px
    discriminator. ``minibatch`` (``off`` by default) and ``pack`` mean what they mean for
    ``dcgan``; the spread channel joins the input of the two last blocks.

    Why a discriminator of its own rather than options on ``ResidualDiscriminator``: that one
    has spectral norm and the projection head already, but differs from the recipe in nearly
    every other part (LeakyReLU, a 1x1 RGB layer, residual sums scaled by 1/sqrt(2), no blocks
    after the last halving but a 3x3 convolution, an always-present spread channel, PyTorch's
    default initialisation). A flag for each would double its code paths and put the outputs
    of existing ``resnet`` models at risk; a second registered name keeps both plain.
    """

    def __init__(
        self,
        num_styles: int,
        image_size: int,
        channels: int = 16,
        max_channels: int = 256,
        spectral_norm: bool = True,
        minibatch: str = "off",
        pack: int = 1,
    ):
        super().__init__()
        self.minibatch, self.num_styles = check_minibatch(minibatch), num_styles
        self.pack = check_pack(pack)
        downs = max(1, num_doublings(image_size) - 1)  # to 8x8 (4x4 from 8 px)
        widths = [min(channels * 2**i, max_channels) for i in range(downs + 1)]
        blocks = [DownBlock(3 * pack, widths[0], first=True)]
        blocks += [DownBlock(widths[i - 1], widths[i]) for i in range(1, downs)]
        self.blocks = nn.ModuleList(blocks)
        spread = 0 if minibatch == "off" else 1
        self.tail = nn.Sequential(
            DownBlock(widths[-2] + spread, widths[-1], downsample=False),
            DownBlock(widths[-1], widths[-1], downsample=False),
        )
        self.linear = _glorot(nn.Linear(widths[-1], 1))
        self.embed = nn.Embedding(num_styles, widths[-1])
        nn.init.xavier_uniform_(self.embed.weight)
        if spectral_norm:
            apply_spectral_norm(self)

    def feature_maps(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The output of each halving block, finest first (the last at 8x8): what a projection
        compares (the image fills every slot of a pack). Each image's maps are its own."""
        x, maps = images.repeat(1, self.pack, 1, 1), []
        for block in self.blocks:
            x = block(x)
            maps.append(x)
        return maps

    def forward(self, images: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        n = images.shape[0]
        x, styles = pack_images(images, style, self.pack)
        for block in self.blocks:
            x = block(x)
        if self.minibatch != "off":
            spread = minibatch_feature(self.minibatch, x, styles[:, 0], self.num_styles)
            x = torch.cat([x, spread], dim=1)
        h = F.relu(self.tail(x)).sum(dim=(2, 3))
        return unpack_logits(projection_logits(h, styles, self.linear, self.embed), self.pack, n)
