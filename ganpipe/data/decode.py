"""Validating and normalising one input image.

Every input ends as either pixels (RGB, square, ``image_size``) or a reject with a short reason
code and a detail a person can act on. Decoding never raises: a library error on a strange file
becomes a reject, so one bad file cannot stop an ingest of thousands.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

if TYPE_CHECKING:
    from ganpipe.config import Config


@dataclass(frozen=True)
class DecodeSettings:
    image_size: int
    resize: str = "center_crop"
    min_size: int = 8
    max_pixels: int = 50_000_000
    background: tuple[int, int, int] = (255, 255, 255)


def decode_settings(config: Config) -> DecodeSettings:
    """The decode settings of ``config.dataset``: what ingest and reference images share."""
    d = config.dataset
    return DecodeSettings(d.image_size, d.resize, d.min_size, d.max_pixels, tuple(d.background))


@dataclass(frozen=True)
class Decoded:
    pixels: np.ndarray  # (size, size, 3) uint8
    width: int
    height: int
    mode: str


@dataclass(frozen=True)
class Rejected:
    reason: str
    detail: str


def decode_image(data: bytes, settings: DecodeSettings) -> Decoded | Rejected:
    if not data:
        return Rejected("empty", "the file has zero bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            width, height = img.size
            if width * height > settings.max_pixels:
                return Rejected(
                    "too_large",
                    f"{width}x{height} pixels exceeds dataset.max_pixels={settings.max_pixels}",
                )
            mode = img.mode
            if img.format == "JPEG":
                # Let libjpeg scale down by 1/2, 1/4 or 1/8 while decoding (DCT scaling), never
                # below the target size: most of the decoding work for large photos disappears.
                img.draft(None, (settings.image_size, settings.image_size))
            img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        return Rejected("too_large", f"refused before decoding: {exc}")
    except UnidentifiedImageError:
        return Rejected("not_image", "not a recognised image format")
    except OSError as exc:
        text = str(exc)
        reason = "truncated" if "truncated" in text.lower() else "corrupt"
        return Rejected(reason, f"decoder error: {text}")
    except Exception as exc:  # decoders raise many types on hostile input
        return Rejected("corrupt", f"decoder error: {type(exc).__name__}: {exc}")
    if min(width, height) < settings.min_size:
        return Rejected(
            "too_small", f"{width}x{height} is below dataset.min_size={settings.min_size}"
        )
    try:
        rgb = to_rgb(ImageOps.exif_transpose(img), settings.background)
        square = fit_square(rgb, settings.image_size, settings.resize, settings.background)
    except Exception as exc:
        return Rejected("corrupt", f"cannot convert: {type(exc).__name__}: {exc}")
    return Decoded(np.asarray(square, dtype=np.uint8), width, height, mode)


def to_rgb(img: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """Any mode to RGB; transparency is composited on ``background``, 16-bit is rescaled."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        img = Image.fromarray(_to_8bit(img), "L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, background + (255,))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return img.convert("RGB")


def _to_8bit(img: Image.Image) -> np.ndarray:
    """A 16- or 32-bit (integer or float) grey image as 8 bits. Values are scaled by the range
    their type implies when they stay in it (0-1 for floats, 0-255, 0-65535), otherwise from
    the image's own minimum to maximum; NaN or infinite values make it unusable (a reject with
    that reason), not a black or white square."""
    arr = np.asarray(img, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"the {img.mode}-mode image holds NaN or infinite values")
    lo, hi = float(arr.min()), float(arr.max())
    if img.mode.startswith("I;16"):
        lo, top = 0.0, 65535.0
    elif img.mode == "F" and lo >= 0 and hi <= 1:
        lo, top = 0.0, 1.0
    elif lo >= 0 and hi <= 255:
        lo, top = 0.0, 255.0
    elif lo >= 0 and hi <= 65535:
        lo, top = 0.0, 65535.0
    else:  # beyond any standard range: the image's own range
        top = hi if hi > lo else lo + 1.0
    return ((arr - lo) / (top - lo) * 255.0).clip(0, 255).astype(np.uint8)


def fit_square(img: Image.Image, size: int, policy: str, background) -> Image.Image:
    w, h = img.size
    if policy == "center_crop":
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        img = img.crop((left, top, left + side, top + side))
    elif policy == "pad":
        side = max(w, h)
        canvas = Image.new("RGB", (side, side), tuple(background))
        canvas.paste(img, ((side - w) // 2, (side - h) // 2))
        img = canvas
    if img.size != (size, size):
        img = img.resize((size, size), Image.LANCZOS, reducing_gap=3.0)
    return img
