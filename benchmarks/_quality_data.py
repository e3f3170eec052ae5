"""The collections the quality benchmark judges on, all built offline from installed packages.

- ``demo``: ganpipe's built-in demo styles (drawn shapes), labelled by folder.
- ``photos``: crops of real photographs bundled with scikit-image (``skimage/data``), one style
  per photograph: brick, grass, gravel, a Hubble deep field, an immunohistochemistry slide and
  a cat's fur. Labelled by folder.
- ``digits``: three handwritten digits from scikit-learn's bundled ``load_digits`` stacked in
  the red, green and blue channels (the "stacked MNIST" of PacGAN, built from the 8x8 digits):
  1,000 modes. No labels: ganpipe discovers styles itself, and the judge counts modes with a
  digit classifier.

Each builder writes PNG folders once (a marker file makes reruns free) and returns the config
overrides that point ganpipe at them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

PHOTO_STYLES = {
    "brick": "brick.png",
    "grass": "grass.png",
    "gravel": "gravel.png",
    "hubble": "hubble_deep_field.jpg",
    "ihc": "ihc.png",
    "fur": "chelsea.png",
}


@dataclass
class Collection:
    name: str
    folder: Path
    overrides: list[str]
    labelled: bool = True
    extra: dict = field(default_factory=dict)


def _done(folder: Path, tag: str) -> bool:
    return (folder / f".complete-{tag}").exists()


def _mark(folder: Path, tag: str) -> None:
    (folder / f".complete-{tag}").touch()


def demo(root: Path, per_style: int = 200) -> Collection:
    from ganpipe.data.demo import write_demo_dataset

    folder = Path(root) / f"demo-{per_style}"
    if not _done(folder, "demo"):
        write_demo_dataset(folder, per_style)
        _mark(folder, "demo")
    return Collection("demo", folder, [f"dataset.sources=[{folder}]", "dataset.labels=dirs",
                                       "style.source=labels"])  # fmt: skip


def _photo(name: str) -> np.ndarray:
    import skimage

    path = Path(skimage.__file__).parent / "data" / PHOTO_STYLES[name]
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def photos(root: Path, per_style: int = 300, size: int = 32) -> Collection:
    """Random crops (side 1 to 3 times ``size``, resized to ``size``, random flips) of each
    photograph: the variety is the photograph's own texture, not synthetic noise."""
    folder = Path(root) / f"photos-{per_style}x{size}"
    if not _done(folder, "photos"):
        rng = np.random.default_rng(0)
        for style in PHOTO_STYLES:
            source = _photo(style)
            h, w = source.shape[:2]
            (folder / style).mkdir(parents=True, exist_ok=True)
            for i in range(per_style):
                side = int(rng.integers(size, min(3 * size, h, w) + 1))
                y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
                crop = Image.fromarray(source[y : y + side, x : x + side])
                crop = crop.resize((size, size), Image.Resampling.BILINEAR)
                if rng.random() < 0.5:
                    crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
                crop.save(folder / style / f"{style}-{i:04d}.png")
        _mark(folder, "photos")
    return Collection("photos", folder, [f"dataset.sources=[{folder}]", "dataset.labels=dirs",
                                         "style.source=labels"])  # fmt: skip


def digit_images(size: int) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 8x8 digits scaled to ``size`` px, as floats in [0, 1]."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.stack([
        np.asarray(Image.fromarray((d * 255 / 16).astype(np.uint8)).resize(
            (size, size), Image.Resampling.BILINEAR))
        for d in digits.images
    ]).astype(np.float32) / 255  # fmt: skip
    return images, digits.target.astype(np.int64)


def digits(root: Path, count: int = 12000, size: int = 32) -> Collection:
    """``count`` images, each three random digits in the R, G and B channels: mode =
    100 * red + 10 * green + blue. Unlabelled; the file names carry the mode for checking."""
    folder = Path(root) / f"digits-{count}x{size}"
    if not _done(folder, "digits"):
        images, labels = digit_images(size)
        rng = np.random.default_rng(0)
        (folder / "images").mkdir(parents=True, exist_ok=True)
        for i in range(count):
            pick = rng.integers(0, len(images), 3)
            pixels = (np.stack([images[j] for j in pick], axis=-1) * 255).astype(np.uint8)
            mode = int(labels[pick[0]] * 100 + labels[pick[1]] * 10 + labels[pick[2]])
            Image.fromarray(pixels).save(folder / "images" / f"{i:06d}-m{mode:03d}.png")
        _mark(folder, "digits")
    return Collection(
        "digits", folder,
        [f"dataset.sources=[{folder}]", "dataset.labels=none", "style.source=clusters"],
        labelled=False,
    )  # fmt: skip
