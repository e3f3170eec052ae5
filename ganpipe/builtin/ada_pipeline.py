"""The full ADA augmentation pipeline, 'bgc' (Karras et al. 2020, section 2.3 and appendix B):
blits, geometric transformations and colour transformations, each applied per image with
probability ``p`` and composed into one affine map of the pixel grid and one 4x4 matrix of the
colours, so that the image is resampled once however many operations fire.

Why all of them: a discriminator that sees every training image in a thousand geometric and
colour variations cannot memorise the few hundred images of a style; the subset in
``ada.py`` (flip, integer translation, brightness, contrast, saturation, cutout) leaves it the
orientation, scale and hue to memorise. Every operation is one the generator cannot "leak"
into its samples as long as ``p`` stays below about 0.8, which the controller enforces.

Geometric: x-flip, 90-degree rotations, integer translation (1/8 of the side), isotropic
scaling (log2-normal, sd 0.2), arbitrary rotation before and after anisotropic scaling (each with
probability ``1 - sqrt(1 - p)``, so that at least one fires with probability ``p``),
anisotropic scaling (log2-normal, sd 0.2), fractional translation (normal, sd 1/8 of the side).
The image is resampled bilinearly with reflected borders (no blank frame tells D what was done).
Colour: brightness (normal, sd 0.2), contrast (log2-normal, sd 0.5), luma flip, hue rotation
(uniform angle), saturation (log2-normal, sd 1), about the luma axis (1, 1, 1) / sqrt(3).
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

GEOMETRIC = ("xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac")
COLOUR = ("brightness", "contrast", "lumaflip", "hue", "saturation")
OPERATIONS = GEOMETRIC + COLOUR


def check_operations(ops: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    unknown = [op for op in ops if op not in OPERATIONS]
    if unknown:
        raise ValueError(
            f"unknown ada operation(s) {', '.join(unknown)}; choose from {', '.join(OPERATIONS)}"
        )
    return tuple(ops)


class _Draws:
    """Per-image random draws, all from the trainer's generator, in a fixed order."""

    def __init__(self, n: int, p: float, generator: torch.Generator):
        self.n, self.p, self.generator = n, p, generator

    def fires(self, p: float | None = None) -> torch.Tensor:
        return torch.rand(self.n, generator=self.generator) < (self.p if p is None else p)

    def uniform(self) -> torch.Tensor:
        return torch.rand(self.n, generator=self.generator)

    def normal(self) -> torch.Tensor:
        return torch.randn(self.n, generator=self.generator)

    def integers(self, high: int) -> torch.Tensor:
        return torch.randint(high, (self.n,), generator=self.generator)


def _eye(n: int, size: int) -> torch.Tensor:
    return torch.eye(size, dtype=torch.float64).repeat(n, 1, 1)


def _scale2d(sx, sy) -> torch.Tensor:
    m = _eye(len(sx), 3)
    m[:, 0, 0], m[:, 1, 1] = sx, sy
    return m


def _rotate2d(theta) -> torch.Tensor:
    m = _eye(len(theta), 3)
    c, s = torch.cos(theta), torch.sin(theta)
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = c, -s, s, c
    return m


def _translate2d(tx, ty) -> torch.Tensor:
    m = _eye(len(tx), 3)
    m[:, 0, 2], m[:, 1, 2] = tx, ty
    return m


def geometric_matrix(draws: _Draws, ops: tuple[str, ...], side: int) -> torch.Tensor:
    """(N, 3, 3): where each output pixel samples the input, in normalised coordinates
    ([-1, 1] spans the image), composed in the paper's order. An image whose operations all
    skip gets the identity, so the caller can leave it untouched."""
    n, p = draws.n, draws.p
    m = _eye(n, 3)
    one = torch.ones(n, dtype=torch.float64)
    rot_p = 1 - math.sqrt(max(1 - p, 0.0))
    for op in GEOMETRIC:
        if op not in ops:
            continue
        if op == "xflip":
            flip = draws.fires().double()
            m = m @ _scale2d(1 - 2 * flip, one)
        elif op == "rotate90":
            quarter = draws.integers(4).double() * draws.fires().double()
            m = m @ _rotate2d(quarter * math.pi / 2)
        elif op == "xint":  # whole pixels: 2 / side is one pixel in normalised coordinates
            on = draws.fires().double()
            t = ((draws.uniform() * 2 - 1) * 0.125 * side).round() * 2 / side
            u = ((draws.uniform() * 2 - 1) * 0.125 * side).round() * 2 / side
            m = m @ _translate2d(t.double() * on, u.double() * on)
        elif op == "scale":
            s = torch.where(draws.fires(), 2 ** (draws.normal() * 0.2), torch.ones(n))
            m = m @ _scale2d(s.double(), s.double())
        elif op == "rotate":
            theta = torch.where(draws.fires(rot_p), (draws.uniform() * 2 - 1) * math.pi,
                                torch.zeros(n))  # fmt: skip
            m = m @ _rotate2d(theta.double())
        elif op == "aniso":
            s = torch.where(draws.fires(), 2 ** (draws.normal() * 0.2), torch.ones(n))
            m = m @ _scale2d(s.double(), 1 / s.double())
            if "rotate" in ops:  # the rotation after the anisotropic scaling
                theta = torch.where(draws.fires(rot_p), (draws.uniform() * 2 - 1) * math.pi,
                                    torch.zeros(n))  # fmt: skip
                m = m @ _rotate2d(theta.double())
        elif op == "xfrac":
            on = draws.fires().double()
            t, u = draws.normal().double() * 0.125 * 2, draws.normal().double() * 0.125 * 2
            m = m @ _translate2d(t * on, u * on)
    return m


def colour_matrix(draws: _Draws, ops: tuple[str, ...]) -> torch.Tensor:
    """(N, 4, 4) acting on homogeneous RGB in [-1, 1]."""
    n = draws.n
    c = _eye(n, 4)
    luma = torch.tensor([1.0, 1.0, 1.0, 0.0], dtype=torch.float64) / math.sqrt(3)
    outer = torch.outer(luma, luma)
    for op in COLOUR:
        if op not in ops:
            continue
        if op == "brightness":
            b = torch.where(draws.fires(), draws.normal() * 0.2, torch.zeros(n)).double()
            t = _eye(n, 4)
            t[:, :3, 3] = b[:, None]
            c = t @ c
        elif op == "contrast":
            k = torch.where(draws.fires(), 2 ** (draws.normal() * 0.5), torch.ones(n)).double()
            t = _eye(n, 4)
            t[:, 0, 0] = t[:, 1, 1] = t[:, 2, 2] = k
            c = t @ c
        elif op == "lumaflip":  # reflect the luma component: bright <-> dark, hue kept
            flip = (draws.integers(2) * draws.fires()).double()
            t = _eye(n, 4) - 2 * outer[None] * flip[:, None, None]
            c = t @ c
        elif op == "hue":
            theta = torch.where(draws.fires(), (draws.uniform() * 2 - 1) * math.pi,
                                torch.zeros(n)).double()  # fmt: skip
            c = _rotate_about_luma(theta) @ c
        elif op == "saturation":
            s = torch.where(draws.fires(), 2 ** draws.normal(), torch.ones(n)).double()
            t = outer[None] + (_eye(n, 4) - outer[None]) * s[:, None, None]
            t[:, 3, :] = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64)
            c = t @ c
    return c


def _rotate_about_luma(theta: torch.Tensor) -> torch.Tensor:
    """Rodrigues' rotation about the unit grey axis v = (1, 1, 1) / sqrt(3), as 4x4."""
    v = torch.full((3,), 1 / math.sqrt(3), dtype=torch.float64)
    k = torch.tensor([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]], dtype=torch.float64)
    c, s = torch.cos(theta)[:, None, None], torch.sin(theta)[:, None, None]
    r = torch.eye(3, dtype=torch.float64) * c + s * k + (1 - c) * torch.outer(v, v)
    out = _eye(len(theta), 4)
    out[:, :3, :3] = r
    return out


def augment(x: torch.Tensor, p: float, ops: tuple[str, ...], generator: torch.Generator):
    """``x`` (N, C, H, W) in [-1, 1], each operation of ``ops`` applied with probability ``p``;
    differentiable in ``x``. Images no geometric operation touched are not resampled."""
    n, side = x.shape[0], x.shape[-1]
    draws = _Draws(n, p, generator)
    if any(op in ops for op in GEOMETRIC):
        g = geometric_matrix(draws, ops, side)
        moved = ~torch.isclose(g, _eye(n, 3), atol=1e-9).flatten(1).all(1)
        if moved.any():
            theta = g[moved][:, :2, :].to(x.device, x.dtype)
            grid = F.affine_grid(theta, list(x[moved].shape), align_corners=False)
            warped = F.grid_sample(x[moved], grid, mode="bilinear", padding_mode="reflection",
                                   align_corners=False)  # fmt: skip
            index = moved.nonzero().flatten().to(x.device)
            x = x.index_copy(0, index, warped)
    if any(op in ops for op in COLOUR) and x.shape[1] == 3:
        c = colour_matrix(draws, ops).to(x.device, x.dtype)
        x = torch.einsum("nij,njhw->nihw", c[:, :3, :3], x) + c[:, :3, 3, None, None]
    return x
