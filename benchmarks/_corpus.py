"""Synthetic image corpora for the benchmarks: varied content, half JPEG and half PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def make_corpus(folder: Path, count: int, size: int = 256, seed: int = 0) -> Path:
    """``count`` distinct RGB images in 8 sub-folders; reused if already there."""
    folder = Path(folder)
    marker = folder / f".complete-{count}-{size}"
    if marker.exists():
        return folder
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    for i in range(count):
        fx, fy, phase = rng.uniform(1, 12, 2).tolist() + [rng.uniform(0, 6.3)]
        base = np.sin(2 * np.pi * (fx * xx + fy * yy) + phase)[..., None]
        colour = rng.uniform(0, 255, (2, 3)).astype(np.float32)
        pixels = (base + 1) / 2 * colour[0] + (1 - base) / 2 * colour[1]
        pixels += rng.normal(0, 8, pixels.shape)
        img = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        sub = folder / f"style-{i % 8}"
        sub.mkdir(parents=True, exist_ok=True)
        if i % 2:
            img.save(sub / f"img-{i:06d}.jpg", quality=90)
        else:
            img.save(sub / f"img-{i:06d}.png", compress_level=1)
    marker.touch()
    return folder
