"""Artefact figures: what a person spots in a grid of samples, as numbers.

Feature-space metrics (FD, precision, recall) can look fine while every sample carries a
transposed-convolution checkerboard or colours pushed to the ends of the range: the judge's
features barely see either. These figures measure them on the pixels, per style, and each is
read against the same figure of the real images of that style:

- ``checkerboard``: the share of an image's spectral power (mean removed) on the Nyquist lines
  of its 2D spectrum (vertical and horizontal period-2 patterns, and their mixtures). A
  stride-2 upsampler's checkerboard puts its power exactly there; photographs put very little.
- ``saturation``: mean HSV saturation, (max - min) / max of each pixel's RGB.
- ``clipped``: the share of pixels with a channel at 0 or 255 once written as 8-bit.

Images are (N, 3, H, W) in [-1, 1], as everywhere in ganpipe.
"""

from __future__ import annotations

import torch

# Below these, a figure counts as the floor when a ratio to the real images is taken: data with
# no clipped pixels at all must not turn one stray sample pixel into an infinite ratio. Real
# photographs put about 0.1-1% of their power on the Nyquist lines, hence the lower floor there.
RATIO_FLOORS = {"checkerboard": 1e-3, "saturation": 0.01, "clipped": 0.01}


@torch.inference_mode()
def checkerboard_energy(images: torch.Tensor) -> torch.Tensor:
    """Per image: power on the Nyquist row and column of the grey image's 2D spectrum over all
    power but the mean's. A flat image has no power at all and scores 0."""
    grey = _grey(images)
    grey = grey - grey.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.fft2(grey).abs().square()
    h, w = power.shape[-2:]
    nyquist = torch.zeros(h, w, dtype=torch.bool)
    nyquist[h // 2, :] = True
    nyquist[:, w // 2] = True
    total = power.flatten(1).sum(1)
    on_lines = power[:, nyquist].sum(1)
    return torch.where(total > 0, on_lines / total.clamp_min(1e-30), torch.zeros_like(total))


@torch.inference_mode()
def saturation(images: torch.Tensor) -> torch.Tensor:
    """Per image: mean HSV saturation of its pixels (black pixels count as 0)."""
    rgb = _unit(images)
    top, bottom = rgb.amax(dim=1), rgb.amin(dim=1)
    sat = torch.where(top > 0, (top - bottom) / top.clamp_min(1e-12), torch.zeros_like(top))
    return sat.flatten(1).mean(1)


@torch.inference_mode()
def clipped_share(images: torch.Tensor) -> torch.Tensor:
    """Per image: share of pixels with any channel at 0 or 255 after 8-bit rounding, the way
    ganpipe writes images."""
    levels = torch.round(_unit(images) * 255)
    at_end = ((levels <= 0) | (levels >= 255)).any(dim=1)
    return at_end.flatten(1).float().mean(1)


def artefact_figures(images: torch.Tensor) -> dict[str, float]:
    """The three figures, averaged over ``images``."""
    return {
        "checkerboard": float(checkerboard_energy(images).mean()),
        "saturation": float(saturation(images).mean()),
        "clipped": float(clipped_share(images).mean()),
    }


def relative_artefacts(
    fakes: torch.Tensor,
    fake_styles: torch.Tensor,
    reals: torch.Tensor,
    real_styles: torch.Tensor,
    num_styles: int,
) -> dict[str, list[float]]:
    """Per style, each figure of the samples divided by the same figure of the real images of
    that style (1 = like the data): ``checkerboard``, ``saturation``, ``clipped``. Figures below
    ``RATIO_FLOORS`` count as the floor, so a style whose images clip nowhere is not infinitely
    far from a sample that clips one pixel. A style with no samples or no real images is NaN."""
    out: dict[str, list[float]] = {"checkerboard": [], "saturation": [], "clipped": []}
    for s in range(num_styles):
        fake, real = fakes[fake_styles == s], reals[real_styles == s]
        if not len(fake) or not len(real):
            for values in out.values():
                values.append(float("nan"))
            continue
        f, r = artefact_figures(fake), artefact_figures(real)
        for name, values in out.items():
            floor = RATIO_FLOORS[name]
            values.append(max(f[name], floor) / max(r[name], floor))
    return out


def _unit(images: torch.Tensor) -> torch.Tensor:
    return ((images.float().clamp(-1, 1) + 1) / 2).cpu()


def _grey(images: torch.Tensor) -> torch.Tensor:
    weights = torch.tensor([0.299, 0.587, 0.114])[None, :, None, None]  # ITU-R BT.601 luma
    return (_unit(images).double() * weights.double()).sum(dim=1)
