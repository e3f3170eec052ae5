"""The quality benchmark's strong reference: the SNGAN/BigGAN conditional recipe for CIFAR-sized
images with DiffAugment and an EMA generator, written here independently of ganpipe's networks
so that ganpipe is judged against the published state of the art rather than against itself.

The recipe, and where each part comes from:

- ResNet generator with class-conditional batch norm (per-class gain and bias, gain starting at
  1 and bias at 0) and a ResNet discriminator with spectral normalisation on every weight and a
  projection head, sum(embed(y) * h): Miyato et al. 2018, "Spectral Normalization for
  Generative Adversarial Networks", and Miyato & Koyama 2018, "cGANs with Projection
  Discriminator"; conditional batch norm as BigGAN uses it (Brock et al. 2019, "Large Scale GAN
  Training for High Fidelity Natural Image Synthesis").
- Hinge loss and Adam(2e-4, betas (0, 0.999)) for both networks: BigGAN's CIFAR settings.
- An exponential moving average of G's weights, sampled from with re-estimated batch-norm
  statistics: BigGAN (after Yazıcı et al. 2019).
- DiffAugment with policy colour, translation, cutout on every image D sees, real and fake, in
  D's and G's steps: Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN
  Training".

Why it is the bar: this is the recipe that reaches the published CIFAR-10 figures, and, with
DiffAugment, keeps most of its quality on 10-20 % of the data, the regime ganpipe's users are
in. A platform that cannot approach it per minute of compute has something to explain.

Widths at 32 px are SNGAN's CIFAR widths (G 4*ch = 256, D 2*ch = 128 channels with ch = 64); at
64 px the level at full resolution is halved in both networks so that a step stays affordable.
"""

from __future__ import annotations

import copy
import math
import time

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import spectral_norm

# --------------------------------------------------------------------------- DiffAugment


def rand_brightness(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Adds one offset in [-0.5, 0.5) per image."""
    return x + (_rand(x, gen) - 0.5)


def rand_saturation(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Scales each pixel's distance from its grey value by a factor in [0, 2)."""
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * (_rand(x, gen) * 2) + mean


def rand_contrast(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Scales each image's distance from its mean by a factor in [0.5, 1.5)."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_rand(x, gen) + 0.5) + mean


def rand_translation(
    x: torch.Tensor, gen: torch.Generator, ratio: float = 0.125
) -> tuple[torch.Tensor, torch.Tensor]:
    """Moves each image by whole pixels, up to ``ratio`` of its side on each axis, filling with
    zeros; returns the images and the drawn (dy, dx) per image (content moves by +dy, +dx)."""
    n, _, h, w = x.shape
    sy, sx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sy, sy + 1, (n,), generator=gen).to(x.device)
    dx = torch.randint(-sx, sx + 1, (n,), generator=gen).to(x.device)
    padded = F.pad(x, [sx, sx, sy, sy])
    rows = torch.arange(h, device=x.device)[None, :] - dy[:, None] + sy  # (n, h)
    cols = torch.arange(w, device=x.device)[None, :] - dx[:, None] + sx  # (n, w)
    batch = torch.arange(n, device=x.device)[:, None, None]
    # advanced indices around a slice put their dimensions first: (n, h, w, c)
    out = padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    return out, torch.stack([dy, dx], 1)


def rand_cutout(
    x: torch.Tensor, gen: torch.Generator, ratio: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """Zeroes one square of ``ratio`` of the side per image, its centre anywhere in the image
    (so the square may be clipped by the border); returns the images and the drawn (top, left)
    corner per image, possibly negative."""
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    top = torch.randint(0, h + (1 - ch % 2), (n,), generator=gen).to(x.device) - ch // 2
    left = torch.randint(0, w + (1 - cw % 2), (n,), generator=gen).to(x.device) - cw // 2
    rows = torch.arange(h, device=x.device)[None, :]
    cols = torch.arange(w, device=x.device)[None, :]
    in_rows = (rows >= top[:, None]) & (rows < top[:, None] + ch)
    in_cols = (cols >= left[:, None]) & (cols < left[:, None] + cw)
    keep = ~(in_rows[:, :, None] & in_cols[:, None, :])
    return x * keep[:, None].to(x.dtype), torch.stack([top, left], 1)


def diff_augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """DiffAugment's policy "color,translation,cutout": every step is differentiable, so G
    learns through it and D never sees an un-augmented image, real or fake, which is what keeps
    D from memorising a small training set."""
    x = rand_contrast(rand_saturation(rand_brightness(x, gen), gen), gen)
    x = rand_translation(x, gen)[0]
    return rand_cutout(x, gen)[0].contiguous()


def _rand(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(x.shape[0], 1, 1, 1, generator=gen, dtype=x.dtype).to(x.device)


# --------------------------------------------------------------------------- networks


def _conv(cin: int, cout: int, k: int, gain: float = 1.0) -> nn.Conv2d:
    """Xavier-uniform weights, zero bias: SNGAN's initialisation (gain sqrt 2 on the residual
    path's 3x3 convolutions, 1 elsewhere)."""
    conv = nn.Conv2d(cin, cout, k, padding=k // 2)
    nn.init.xavier_uniform_(conv.weight, gain)
    nn.init.zeros_(conv.bias)
    return conv


def _linear(cin: int, cout: int) -> nn.Linear:
    lin = nn.Linear(cin, cout)
    nn.init.xavier_uniform_(lin.weight)
    nn.init.zeros_(lin.bias)
    return lin


def _g_width(ch: int, res: int) -> int:
    """G's channels at resolution ``res``: 4*ch up to 32 px (SNGAN CIFAR), halving above."""
    return ch * max(1, min(4, 128 // res))


def _d_width(ch: int, res: int) -> int:
    """D's channels for a block whose input has resolution ``res``: 2*ch up to 32 px (SNGAN
    CIFAR), halving above."""
    return ch * max(1, min(2, 64 // res))


class ConditionalBatchNorm(nn.Module):
    """Batch norm without its own affine, then a per-class gain and bias read from embeddings.
    Gain starts at 1 and bias at 0 so that at initialisation it is plain batch norm and the
    class signal is learnt, not imposed."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.gain = nn.Embedding(num_classes, channels)
        self.bias = nn.Embedding(num_classes, channels)
        nn.init.ones_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.bn(x) * self.gain(y)[:, :, None, None] + self.bias(y)[:, :, None, None]


class UpBlock(nn.Module):
    """cBN -> ReLU -> nearest x2 -> conv3x3 -> cBN -> ReLU -> conv3x3, plus a 1x1 shortcut.

    The shortcut convolves before it upsamples: a 1x1 convolution commutes exactly with nearest
    upsampling, and this order costs a quarter of the arithmetic."""

    def __init__(self, cin: int, cout: int, num_classes: int):
        super().__init__()
        self.bn1 = ConditionalBatchNorm(cin, num_classes)
        self.conv1 = _conv(cin, cout, 3, math.sqrt(2))
        self.bn2 = ConditionalBatchNorm(cout, num_classes)
        self.conv2 = _conv(cout, cout, 3, math.sqrt(2))
        self.shortcut = _conv(cin, cout, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = F.interpolate(F.relu(self.bn1(x, y)), scale_factor=2, mode="nearest")
        h = self.conv2(F.relu(self.bn2(self.conv1(h), y)))
        return h + F.interpolate(self.shortcut(x), scale_factor=2, mode="nearest")


class Generator(nn.Module):
    """z (128) -> linear to 4x4 -> log2(size/4) up-blocks -> BN -> ReLU -> conv3x3 -> tanh."""

    def __init__(self, num_classes: int, image_size: int, ch: int = 64, z_dim: int = 128):
        super().__init__()
        self.z_dim, self.num_classes = z_dim, num_classes
        levels = int(math.log2(image_size // 4))
        if 4 * 2**levels != image_size:
            raise ValueError(f"image size must be 4 times a power of two, got {image_size}")
        self.start = _g_width(ch, 4)
        self.linear = _linear(z_dim, 16 * self.start)
        widths = [_g_width(ch, 4 * 2**i) for i in range(levels + 1)]
        self.blocks = nn.ModuleList(
            UpBlock(widths[i], widths[i + 1], num_classes) for i in range(levels)
        )
        self.bn = nn.BatchNorm2d(widths[-1])
        self.out = _conv(widths[-1], 3, 3)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.linear(z).view(len(z), self.start, 4, 4)
        for block in self.blocks:
            h = block(h, y)
        return torch.tanh(self.out(F.relu(self.bn(h))))


class DownBlock(nn.Module):
    """ReLU -> conv3x3 -> ReLU -> conv3x3 (-> avgpool), shortcut 1x1 conv (-> avgpool) where
    the shape changes. The ``optimized`` first block (SNGAN) drops the leading ReLU, which would
    only clip the input image, and pools before its shortcut convolution, the cheaper order."""

    def __init__(self, cin: int, cout: int, down: bool, optimized: bool = False):
        super().__init__()
        self.down, self.optimized = down, optimized
        self.conv1 = spectral_norm(_conv(cin, cout, 3, math.sqrt(2)))
        self.conv2 = spectral_norm(_conv(cout, cout, 3, math.sqrt(2)))
        learnable = optimized or down or cin != cout
        self.shortcut = spectral_norm(_conv(cin, cout, 1)) if learnable else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(x if self.optimized else F.relu(x))
        h = self.conv2(F.relu(h))
        if self.down:
            h = F.avg_pool2d(h, 2)
        if self.optimized:
            return h + self.shortcut(F.avg_pool2d(x, 2))
        skip = x if self.shortcut is None else self.shortcut(x)
        return h + (F.avg_pool2d(skip, 2) if self.down else skip)


class Discriminator(nn.Module):
    """Down-blocks to 8x8 (the first one optimized), two more blocks at 8x8, ReLU, global sum
    pooling, then a linear score plus the projection sum(embed(y) * h).

    Spectral norm is on every weight, the class embedding included (as SNGAN's projection
    discriminator has it), so D's Lipschitz bound holds for the conditional term too."""

    def __init__(self, num_classes: int, image_size: int, ch: int = 64):
        super().__init__()
        downs = max(1, int(math.log2(image_size)) - 3)
        blocks: list[nn.Module] = []
        res, cin = image_size, 3
        for i in range(downs + 2):
            cout = _d_width(ch, res)
            down = i < downs
            blocks.append(DownBlock(cin, cout, down, optimized=i == 0))
            res, cin = (res // 2 if down else res), cout
        self.blocks = nn.Sequential(*blocks)
        self.linear = spectral_norm(_linear(cin, 1))
        embed = nn.Embedding(num_classes, cin)
        nn.init.xavier_uniform_(embed.weight)
        self.embed = spectral_norm(embed)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.blocks(x)).sum(dim=(2, 3))
        return self.linear(h).squeeze(1) + (self.embed(y) * h).sum(1)


# --------------------------------------------------------------------------- training


class StrongReference:
    """Trainable by steps (``train_steps``) or by wall clock (``train``), snapshottable and
    resumable bit for bit, so that a benchmark can read one run at several budgets.

    Every random draw after construction (batches, latents, augmentation) comes from one
    ``torch.Generator`` whose state is part of the snapshot; construction itself uses
    ``torch.manual_seed(seed)`` for the initial weights."""

    z_dim = 128
    bn_batches, bn_batch_size = 4, 128  # latents for the EMA's batch-norm statistics

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        num_styles: int,
        seed: int = 0,
        batch: int = 64,
        ch: int = 64,
        ema_decay: float = 0.999,
        ema_start: int = 0,
    ):
        torch.manual_seed(seed)
        self.images, self.labels, self.batch = images, labels.long(), batch
        self.num_styles, self.seed = num_styles, seed
        self.ema_decay, self.ema_start = ema_decay, ema_start
        device, size = images.device, images.shape[-1]
        self.G = Generator(num_styles, size, ch, self.z_dim).to(device)
        self.D = Discriminator(num_styles, size, ch).to(device)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=2e-4, betas=(0.0, 0.999))
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=2e-4, betas=(0.0, 0.999))
        self.gen = torch.Generator().manual_seed(seed)
        self.steps = 0
        self._bn_fresh_at: int | None = None  # the step the EMA's BN statistics belong to

    # ------------------------------------------------------------------ updates

    def step(self) -> None:
        """One D update and one G update (n_dis = 1).

        BigGAN and DiffAugment's CIFAR runs take 4 D steps per G step; here the reference runs
        on a CPU budget measured in minutes, where 4 D steps would cost most of G's updates,
        and DiffAugment's augmented D overfits slowly enough that a 1:1 schedule (as
        StyleGAN2-ADA uses) trains stably. The fake batch of the D step is reused for the G
        step, saving one forward pass of G, as the pytorch/examples DCGAN does."""
        self.G.train()
        self.D.train()
        device = self.images.device
        idx = torch.randint(len(self.images), (self.batch,), generator=self.gen).to(device)
        real, y = self.images[idx], self.labels[idx]
        z = torch.randn(self.batch, self.z_dim, generator=self.gen).to(device)
        fake = self.G(z, y)

        both = torch.cat([diff_augment(real, self.gen), diff_augment(fake.detach(), self.gen)])
        scores = self.D(both, torch.cat([y, y]))
        d_loss = F.relu(1 - scores[: self.batch]).mean() + F.relu(1 + scores[self.batch :]).mean()
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()

        self.D.requires_grad_(False)  # G's step needs gradients through D, not for it
        g_loss = -self.D(diff_augment(fake, self.gen), y).mean()
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt_g.step()
        self.D.requires_grad_(True)

        self.steps += 1
        self._update_ema()

    @torch.no_grad()
    def _update_ema(self) -> None:
        """Copies G until ``ema_start``, then averages with decay min(ema_decay, (1+k)/(10+k)),
        k the steps since averaging began: the warm-up (as TensorFlow's moving averages do)
        keeps a short run's average from being mostly the random initial weights."""
        ema, live = list(self.G_ema.parameters()), list(self.G.parameters())
        k = self.steps - self.ema_start
        if k <= 0:
            torch._foreach_copy_(ema, live)
            return
        decay = min(self.ema_decay, (1 + k) / (10 + k))
        torch._foreach_lerp_(ema, live, 1 - decay)

    def train_steps(self, n: int) -> None:
        for _ in range(n):
            self.step()

    def train(self, seconds: float) -> None:
        """As ``ExamplesDCGAN.train``: whole steps until ``seconds`` of wall clock have gone."""
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            self.step()

    # ------------------------------------------------------------------ sampling

    @torch.no_grad()
    def recompute_ema_bn(self, batches: int | None = None, size: int | None = None) -> None:
        """Re-estimates the EMA generator's batch-norm running statistics on fresh latents.

        Averaged weights with the live G's running statistics (or stale ones) give washed-out
        images: the statistics belong to other weights. Here they are reset and recomputed as
        a plain average over ``batches`` batches of ``size`` (512 latents by default: plenty for
        per-channel means and variances), labels drawn as in the data. The latents come
        from a generator seeded by (seed, steps), not from the training generator, so sampling
        never changes the course of training and is itself reproducible."""
        batches, size = batches or self.bn_batches, size or self.bn_batch_size
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.steps)
        device = self.images.device
        norms = [m for m in self.G_ema.modules() if isinstance(m, nn.BatchNorm2d)]
        saved = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the batches below
        self.G_ema.train()
        for _ in range(batches):
            z = torch.randn(size, self.z_dim, generator=gen).to(device)
            y = self.labels[torch.randint(len(self.labels), (size,), generator=gen).to(device)]
            self.G_ema(z, y)
        for m, momentum in zip(norms, saved):
            m.momentum = momentum
        self.G_ema.eval()
        self._bn_fresh_at = self.steps

    def sample(self, z: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] from the EMA generator in eval mode, in batches of 256."""
        if self._bn_fresh_at != self.steps:
            self.recompute_ema_bn()
        device = self.images.device
        with torch.inference_mode():
            out = [
                self.G_ema(z[i : i + 256].to(device), s[i : i + 256].to(device))
                for i in range(0, len(z), 256)
            ]
        return torch.cat(out)

    # ------------------------------------------------------------------ snapshots

    def snapshot(self) -> dict:
        """Everything a resumed run needs to continue bit for bit (copies, not views)."""
        return copy.deepcopy(
            {
                "G": self.G.state_dict(),
                "G_ema": self.G_ema.state_dict(),
                "D": self.D.state_dict(),
                "opt_g": self.opt_g.state_dict(),
                "opt_d": self.opt_d.state_dict(),
                "steps": self.steps,
                "seed": self.seed,
                "rng": self.gen.get_state(),
            }
        )

    def load_snapshot(self, snap: dict) -> None:
        self.G.load_state_dict(snap["G"])
        self.G_ema.load_state_dict(snap["G_ema"])
        self.D.load_state_dict(snap["D"])
        self.opt_g.load_state_dict(copy.deepcopy(snap["opt_g"]))
        self.opt_d.load_state_dict(copy.deepcopy(snap["opt_d"]))
        self.steps, self.seed = snap["steps"], snap["seed"]
        self.gen.set_state(snap["rng"])
        self._bn_fresh_at = None
