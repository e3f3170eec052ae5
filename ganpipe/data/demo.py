"""The built-in demo dataset: six procedurally drawn visual styles, no download.

Each style differs from the others in palette, texture and structure at once, and varies inside
itself (angles, scales, offsets, colour jitter, grain), so that both style discovery and a
style-conditioned GAN have something real to learn. The images are written as ordinary PNG files
in one sub-folder per style, which ingestion then reads exactly like a user's folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

DEMO_VERSION = 1  # bump when the drawings change, so cached copies are redrawn
SOURCE_SIZE = 64  # drawn larger than the default training size so ingestion really resizes


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    return xx, yy


def _jitter(rng: np.random.Generator, rgb: tuple[int, int, int], amount: float = 18) -> np.ndarray:
    return np.clip(np.asarray(rgb, np.float32) + rng.normal(0, amount, 3), 0, 255)


def _mix(mask: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return mask[..., None] * a + (1.0 - mask[..., None]) * b


def _soft(x: np.ndarray, sharpness: float = 8.0) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-sharpness * x))


def stripes(rng: np.random.Generator, size: int) -> np.ndarray:
    """Diagonal red/cream stripes: angle, width and phase vary."""
    xx, yy = _grid(size)
    theta = np.deg2rad(rng.uniform(25, 65))
    period = rng.uniform(0.14, 0.24)
    wave = np.sin(
        2 * np.pi * (xx * np.cos(theta) + yy * np.sin(theta)) / period + rng.uniform(0, 6.3)
    )
    return _mix(_soft(wave, 6), _jitter(rng, (205, 45, 40)), _jitter(rng, (245, 228, 185)))


def checker(rng: np.random.Generator, size: int) -> np.ndarray:
    """Navy/sky-blue checkerboard: cell size, offset and a slight rotation vary."""
    xx, yy = _grid(size)
    cell = rng.uniform(0.14, 0.26)
    rot = np.deg2rad(rng.uniform(-12, 12))
    u = (xx * np.cos(rot) - yy * np.sin(rot)) / cell + rng.uniform(0, 1)
    v = (xx * np.sin(rot) + yy * np.cos(rot)) / cell + rng.uniform(0, 1)
    mask = _soft(np.sin(np.pi * u) * np.sin(np.pi * v), 10)
    return _mix(mask, _jitter(rng, (25, 40, 115)), _jitter(rng, (160, 205, 240)))


def dots(rng: np.random.Generator, size: int) -> np.ndarray:
    """Lime polka dots on a hex grid over dark green: spacing, radius and offset vary."""
    xx, yy = _grid(size)
    spacing = rng.uniform(0.2, 0.3)
    radius = rng.uniform(0.25, 0.38) * spacing
    ox, oy = rng.uniform(0, spacing, 2)
    row = np.floor((yy + oy) / spacing)
    cx = ((xx + ox + 0.5 * spacing * (row % 2)) % spacing) - spacing / 2
    cy = ((yy + oy) % spacing) - spacing / 2
    mask = _soft((radius - np.hypot(cx, cy)) / spacing, 60)
    return _mix(mask, _jitter(rng, (140, 225, 60)), _jitter(rng, (18, 52, 28), 8))


def rings(rng: np.random.Generator, size: int) -> np.ndarray:
    """Concentric purple/gold rings around a wandering centre: centre and period vary."""
    xx, yy = _grid(size)
    cx, cy = rng.uniform(0.2, 0.8, 2)
    period = rng.uniform(0.1, 0.17)
    wave = np.sin(2 * np.pi * np.hypot(xx - cx, yy - cy) / period + rng.uniform(0, 6.3))
    return _mix(_soft(wave, 5), _jitter(rng, (95, 30, 130)), _jitter(rng, (245, 195, 55)))


def clouds(rng: np.random.Generator, size: int) -> np.ndarray:
    """Soft teal-to-white cloud fields (smooth value noise): every image is new."""
    coarse = rng.uniform(0, 1, (5, 5)).astype(np.float32)
    field = (
        np.asarray(
            Image.fromarray((coarse * 255).astype(np.uint8)).resize((size, size), Image.BICUBIC),
            np.float32,
        )
        / 255.0
    )
    return _mix(field, _jitter(rng, (225, 238, 235), 8), _jitter(rng, (30, 115, 125)))


def mosaic(rng: np.random.Generator, size: int) -> np.ndarray:
    """Mondrian-like: mostly white blocks with a few red, yellow and blue ones, split by thick
    black lines; the layout varies, the palette proportions stay."""
    img = np.zeros((size, size, 3), np.float32)
    cells = [(0, 0, size, size)]
    for _ in range(int(rng.integers(6, 10))):
        i = int(rng.integers(len(cells)))
        x0, y0, x1, y1 = cells.pop(i)
        if (x1 - x0) >= (y1 - y0) and x1 - x0 > 12:
            cut = int(rng.integers(x0 + 6, x1 - 5))
            cells += [(x0, y0, cut, y1), (cut, y0, x1, y1)]
        elif y1 - y0 > 12:
            cut = int(rng.integers(y0 + 6, y1 - 5))
            cells += [(x0, y0, x1, cut), (x0, cut, x1, y1)]
        else:
            cells.append((x0, y0, x1, y1))
    accents = [(215, 35, 30), (250, 210, 20), (30, 60, 170)]
    order = rng.permutation(len(cells))
    line = max(2, size // 24)
    for rank, cell in enumerate(cells[i] for i in order):
        x0, y0, x1, y1 = cell
        colour = accents[rank] if rank < len(accents) and rank < len(cells) - 2 else (242, 240, 232)
        img[y0:y1, x0:x1] = _jitter(rng, colour, 8)
        img[y0 : y0 + line, x0:x1] = img[y0:y1, x0 : x0 + line] = 15
    img[-line:, :] = img[:, -line:] = 15
    return img


STYLES: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "stripes": stripes,
    "checker": checker,
    "dots": dots,
    "rings": rings,
    "clouds": clouds,
    "mosaic": mosaic,
}


def render(style: str, index: int, size: int = SOURCE_SIZE, seed: int = 0) -> Image.Image:
    """One demo image; the same (style, index, seed) always gives the same pixels."""
    style_no = list(STYLES).index(style)
    rng = np.random.default_rng([seed, style_no, index])
    pixels = STYLES[style](rng, size)
    pixels = pixels * rng.uniform(0.9, 1.1) + rng.normal(0, 5, pixels.shape)  # light and grain
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def write_demo_dataset(out_dir: str | Path, per_style: int, size: int = SOURCE_SIZE) -> Path:
    """Write ``<out_dir>/<style>/<style>-NNNN.png`` for every style; returns ``out_dir``."""
    out = Path(out_dir)
    for style in STYLES:
        (out / style).mkdir(parents=True, exist_ok=True)
        for i in range(per_style):
            render(style, i, size).save(out / style / f"{style}-{i:04d}.png", optimize=False)
    return out


def cache_dir() -> Path:
    """ganpipe's local cache (``$GANPIPE_CACHE``, default ``~/.cache/ganpipe``)."""
    return Path(os.environ.get("GANPIPE_CACHE", Path.home() / ".cache" / "ganpipe"))


def demo_dataset_dir(per_style: int) -> Path:
    """The demo dataset, drawn once into the user cache and reused.

    Drawn into a temporary folder and renamed into place, so an interrupted first run never
    leaves a half-drawn dataset behind that later runs would trust.
    """
    cache = cache_dir()
    target = cache / f"demo-v{DEMO_VERSION}-{per_style}x{SOURCE_SIZE}"
    if target.is_dir():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".demo-", dir=cache))
    try:
        write_demo_dataset(tmp, per_style)
        os.replace(tmp, target)
    except OSError:
        if not target.is_dir():  # a concurrent run may have won the rename: then use its copy
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
