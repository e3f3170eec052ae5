"""The two projection recipes: gradient descent on the code, from the best of a few random
starts, with the StyleGAN2 projector's learning-rate ramp (up over the first 5%, cosine down
over the last 25%).

- ``project_z`` (generators with ``condition`` and ``render``): the latent ``z``, kept near
  the sphere Gaussian latents live on, and the weights over the styles (a softmax).
- ``project_w`` (generators with a mapping network and levels): ``w`` first, with decaying
  noise added to it so early steps explore, then one ``w`` per level (W+), which reaches
  images W alone cannot; per-layer noise maps too where the generator takes them, kept
  noise-like by a penalty on their autocorrelation and renormalised every step, each with a
  gain that starts at 0 (images ganpipe generates carry no noise, so none is forced on).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ganpipe.config import ProjectConfig
from ganpipe.contracts import NoiseInputs, supports
from ganpipe.generation.render import style_means
from ganpipe.projection.loss import ReconstructionLoss

Record = Callable[[int, torch.Tensor], None]  # (steps done, current image): for curves


@dataclass
class Found:
    """The code found and its image."""

    image: torch.Tensor  # (1, 3, H, W)
    style: torch.Tensor  # (S,)
    z: torch.Tensor | None = None  # (z_dim,)
    w: torch.Tensor | None = None  # (L, w_dim)
    noise: list[torch.Tensor] = field(default_factory=list)  # (H, W) each


def learning_rate(t: float, peak: float) -> float:
    """The projector's schedule at progress ``t`` in [0, 1]."""
    down = min(1.0, (1.0 - t) / 0.25)
    return peak * (0.5 - 0.5 * math.cos(math.pi * down)) * min(1.0, t / 0.05)


def _set_lr(optimiser: torch.optim.Optimizer, lr: float) -> None:
    for group in optimiser.param_groups:
        group["lr"] = lr


def project_z(g, loss: ReconstructionLoss, weights: torch.Tensor, s: ProjectConfig,
              record: Record | None = None) -> Found:  # fmt: skip
    """``z`` and style weights for a generator without a mapping network."""
    seeded = torch.Generator().manual_seed(s.seed)
    candidates = torch.randn(s.candidates, g.z_dim, generator=seeded)
    with torch.no_grad():
        cond = g.condition(weights.expand(s.candidates, -1))
        best = int(loss.per_image(g.render(candidates, cond)).argmin())
    z = candidates[best : best + 1].clone().requires_grad_(True)
    logits = torch.log(weights[None] + 1e-4).clone().requires_grad_(True)
    optimiser = torch.optim.Adam([z, logits], betas=(0.9, 0.999))
    for step in range(s.steps):
        _set_lr(optimiser, learning_rate(step / s.steps, s.lr))
        image = g.render(z, g.condition(torch.softmax(logits, dim=1)))
        sphere = (z.pow(2).mean() - 1.0).pow(2)  # Gaussian latents have mean square 1
        objective = loss(image) + 0.01 * sphere
        optimiser.zero_grad(set_to_none=True)
        objective.backward()
        optimiser.step()
        if record is not None:
            record(step + 1, image.detach())
    with torch.no_grad():
        style = torch.softmax(logits, dim=1)
        image = g.render(z, g.condition(style))
    return Found(image, style[0], z=z.detach()[0])


def _noise_penalty(maps: list[torch.Tensor]) -> torch.Tensor:
    """Autocorrelation of each noise map with itself shifted by one pixel, at every scale
    down to 8x8: large when a map carries image structure instead of noise."""
    total = torch.zeros(())
    for n in maps:
        while True:
            total = total + (n * torch.roll(n, 1, dims=3)).mean().pow(2)
            total = total + (n * torch.roll(n, 1, dims=2)).mean().pow(2)
            if n.shape[2] <= 8:
                break
            n = F.avg_pool2d(n, 2)
    return total


def _normalise(maps: list[torch.Tensor]) -> None:
    with torch.no_grad():
        for n in maps:
            n -= n.mean()
            n *= torch.rsqrt(n.pow(2).mean() + 1e-8)


def _start_w(g, loss: ReconstructionLoss, weights: torch.Tensor, s: ProjectConfig):
    """The styles' mean code, the per-dimension spread of codes, and the start: the mean, or
    the best of random codes pulled halfway toward it. Codes are optimised in units of the
    spread (``w = mean + scale * u``), so one learning rate suits any generator's scale."""
    seeded = torch.Generator().manual_seed(s.seed)
    mean = weights @ style_means(g, len(weights))
    with torch.no_grad():
        z = torch.randn(512, g.z_dim, generator=seeded)
        # the spread over every style (an image may lie nearer another style than the encoder
        # thought), and candidates in the image's own styles
        anywhere = torch.randint(len(weights), (512,), generator=seeded)
        everywhere = g.map_latent(z, g.condition(anywhere))
        scale = (everywhere - everywhere.mean(0)).pow(2).mean(dim=0).sqrt().clamp(min=1e-6)
        own = g.map_latent(
            z[: s.candidates - 1], g.condition(weights.expand(len(z), -1))[: s.candidates - 1]
        )
        starts = torch.cat([mean[None], torch.lerp(mean, own, 0.5)])
        best = int(loss.per_image(g.synthesis(starts)).argmin())
    return mean, scale, (starts[best : best + 1] - mean) / scale, seeded


def project_w(g, loss: ReconstructionLoss, weights: torch.Tensor, s: ProjectConfig,
              record: Record | None = None) -> Found:  # fmt: skip
    """W, then W+ (and noise maps where the generator takes them)."""
    mean, scale, start, seeded = _start_w(g, loss, weights, s)
    noisy = supports(g, NoiseInputs)
    noise = [torch.randn(1, 1, h, w, generator=seeded).requires_grad_(True)
             for h, w in (g.noise_shapes() if noisy else [])]  # fmt: skip
    # how much of each (unit-variance) map is used, from none: generated images carry no noise
    gains = torch.zeros(len(noise), requires_grad=True)

    def scaled() -> list[torch.Tensor]:
        return [n * gain for n, gain in zip(noise, gains)]

    u = start.clone().requires_grad_(True)
    optimiser = torch.optim.Adam([u, gains, *noise], betas=(0.9, 0.999))
    switch = round(s.steps * s.w_plus_from)
    for step in range(s.steps):
        if step == switch:  # W+: one code per level, from where W got to
            u = u.detach()[:, None].expand(-1, g.num_levels, -1).clone().requires_grad_(True)
            optimiser = torch.optim.Adam([u, gains, *noise], betas=(0.9, 0.999))
        t = step / s.steps
        _set_lr(optimiser, learning_rate(t, s.lr))
        jitter = 0.05 * max(0.0, 1.0 - t / 0.75) ** 2
        code = mean + scale * (u + torch.randn(u.shape, generator=seeded) * jitter)
        image = g.synthesis(code, scaled()) if noisy else g.synthesis(code)
        objective = loss(image) + s.noise_weight * _noise_penalty(noise)
        optimiser.zero_grad(set_to_none=True)
        objective.backward()
        optimiser.step()
        _normalise(noise)
        if record is not None:
            record(step + 1, image.detach())
    with torch.no_grad():
        w = mean + scale * u
        levels = w if w.ndim == 3 else w[:, None].expand(-1, g.num_levels, -1)
        maps = scaled()
        image = g.synthesis(levels, maps) if noisy else g.synthesis(levels)
    maps = [n.detach()[0, 0] for n in maps]
    return Found(image, weights, w=levels.detach()[0], noise=maps)
