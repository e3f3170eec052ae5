"""Image grids and encoding, shared by the styles, training, generation and report stages."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def grid(pixels: np.ndarray, cols: int | None = None, pad: int = 2, scale: int = 1) -> Image.Image:
    """Tile (N, H, W, 3) uint8 images into one picture, row-major, ``cols`` per row."""
    n, h, w, _ = pixels.shape
    cols = cols or max(1, int(np.ceil(np.sqrt(n))))
    rows = max(1, int(np.ceil(n / cols)))
    canvas = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        canvas[y : y + h, x : x + w] = pixels[i]
    img = Image.fromarray(canvas)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    return img


def encode(
    image: Image.Image | np.ndarray, fmt: str = "png", quality: int = 95, png_level: int = 6
) -> bytes:
    """Encode deterministically (no timestamps or metadata), so equal pixels give equal bytes."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buf = io.BytesIO()
    if fmt == "png":
        image.save(buf, format="PNG", compress_level=png_level)
    elif fmt == "webp":
        image.save(buf, format="WEBP", quality=quality, method=4)
    elif fmt == "jpeg":
        image.save(buf, format="JPEG", quality=quality)
    else:
        raise ValueError(f"unknown image format {fmt!r}")
    return buf.getvalue()


def animation(frames: np.ndarray, frame_ms: int = 100, scale: int = 1) -> bytes:
    """An animated GIF of (N, H, W, 3) uint8 frames that loops forever; the palette of each
    frame is chosen from its own pixels, deterministically."""
    images = [Image.fromarray(f) for f in frames]
    if scale > 1:
        images = [im.resize((im.width * scale, im.height * scale), Image.NEAREST) for im in images]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:],
                   duration=frame_ms, loop=0, optimize=False)  # fmt: skip
    return buf.getvalue()
