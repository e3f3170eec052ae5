"""Built-in quality filters. Thresholds default to values derived from the real data, so that
most real images of a style would pass: a sample is rejected for being unlike the data, not for
missing an arbitrary number.

``realism``, ``sharpness``, ``near_duplicate`` and ``memorisation`` take the ``lower`` quantile,
an actual real image's value, so that on the small samples of a small dataset every real image at
or above it passes instead of the smallest one failing against an interpolated limit.

A score computed by the model itself (the discriminator's logit) is compared with held-out real
images only: the discriminator has trained on the others and scores them above almost any new
picture. The style encoder and the image statistics are not trained by the GAN, so the other
filters compare with a sample of all real images."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F

from ganpipe.data.dataset import to_tensor
from ganpipe.progress import log

CHUNK = 1024  # images (or rows of a distance matrix) handled at once: bounds memory
MIN_PER_STYLE = 8  # fewer real images of a style than this: its limit is the overall one
# Fewer held-out (val) images than this are too few to calibrate on alone: memorisation adds
# training images to them, realism judges each candidate relative to the batch instead.
MIN_REFERENCE = 32
# Floors under the derived thresholds (an explicit one is taken as given), for data that holds
# copies of itself, which would put the quantile at zero: below these a sample is a copy.
SAME_EMBEDDING = 1e-3  # style-embedding distance (real neighbours are ~100x further apart)
SAME_PICTURE = 4 / 255  # RMS pixel distance in [-1, 1]: two grey levels


def _quantile(values: torch.Tensor, q: float, interpolation: str = "linear") -> float:
    return float(torch.quantile(values.double(), q, interpolation=interpolation))


class Realism:
    """The discriminator's realism logit; at or above the limit passes.

    The limit is the ``quantile`` of the logits of held-out real images (the dataset's ``val``
    split, which training never sees), per requested style where a style has at least
    ``MIN_PER_STYLE`` of them (a conditional discriminator scores each style on its own scale)
    and over all of them for the others. Not of training images: a discriminator at the end of
    training scores its own training images above almost every new picture, real or generated,
    so a limit taken from them measures how far it has overfit, not the sample.

    With fewer than ``MIN_REFERENCE`` held-out images in all, a limit from them would be noise,
    and training images are what must not be used, so a candidate is judged against the batch
    instead: it fails when its logit is more than ``mad_k`` robust standard deviations below the
    median of its style's candidates (the whole batch's, for a style with fewer than
    ``MIN_PER_STYLE`` candidates), i.e. below ``median - mad_k * 1.4826 * MAD`` (1.4826 * MAD is
    the standard deviation of normal data; where MAD is 0, more than half the logits being
    equal, ``1.2533 * mean absolute deviation`` takes its place). Median and MAD because the few
    bad samples this is to catch cannot move them (a mean and standard deviation would be
    dragged down by exactly those samples, and hide them), and a limit from the spread because
    a batch quantile would reject a fixed share of even a flawless batch. It catches the
    outliers of a batch, not a batch that is bad all over: give the dataset a larger
    ``val_fraction`` for a limit from real images.

    An explicit ``threshold`` replaces either. ``calibration`` says, after ``score``, which
    limit was used (it is logged too)."""

    higher_is_better = True

    def __init__(self, quantile: float = 0.02, threshold: float | None = None,
                 mad_k: float = 3.0):  # fmt: skip
        self.quantile, self.mad_k = float(quantile), float(mad_k)
        self.threshold = None if threshold is None else float(threshold)
        if not 0 <= self.quantile < 1:
            raise ValueError("realism quantile must be in [0, 1)")
        if self.mad_k < 0:
            raise ValueError("realism mad_k must be >= 0")
        self.calibration = ""

    def score(self, context):
        if context.discriminator is None:
            raise ValueError("the realism filter needs the model's discriminator")
        fake = context.discriminator_scores(context.images, context.styles)
        limits = self._limits(context, fake)
        log.info("realism filter: %s", self.calibration)
        return fake.numpy(), (fake >= limits).numpy()

    def _limits(self, context, fake: torch.Tensor) -> torch.Tensor | float:
        """The limit for each candidate (or one for all), and ``calibration`` set to say why."""
        if self.threshold is not None:
            self.calibration = f"the threshold given, {self.threshold:g}"
            return self.threshold
        held, held_styles = context.held_out_images(), context.held_out_styles
        if len(held) >= MIN_REFERENCE:
            real = context.discriminator_scores(held, held_styles)
            limits = per_style_limits(real, held_styles, context.num_styles, self.quantile)
            own = int((torch.bincount(held_styles, minlength=context.num_styles)
                       >= MIN_PER_STYLE).sum())  # fmt: skip
            self.calibration = (
                f"limit at the {self.quantile:g} quantile of {len(held)} held-out (val) images' "
                f"logits, per style for {own} of {context.num_styles} styles"
            )
            return limits[context.styles]
        self.calibration = (
            f"only {len(held)} held-out (val) images, fewer than {MIN_REFERENCE}: a candidate "
            f"fails {self.mad_k:g} robust standard deviations below its style's median logit "
            "in the batch (raise dataset.val_fraction for a limit from real images)"
        )
        return batch_limits(fake, context.styles, context.num_styles, self.mad_k)


class StyleMatch:
    """Style-encoder distance to the requested style's centroid, divided by the distance within
    which ``quantile`` of that style's real images lie: <= ``margin`` passes."""

    higher_is_better = False

    def __init__(self, quantile: float = 0.95, margin: float = 1.0):
        self.quantile, self.margin = float(quantile), float(margin)
        if not 0 < self.quantile <= 1 or self.margin <= 0:
            raise ValueError("style_match needs 0 < quantile <= 1 and margin > 0")

    def score(self, context):
        fake_dist = context.centroid_distance(context.fake_embeddings(), context.styles)
        real_dist = context.centroid_distance(context.real_embeddings(), context.real_styles)
        limits = torch.ones(context.num_styles)
        for s in range(context.num_styles):
            mine = real_dist[context.real_styles == s]
            limits[s] = _quantile(mine, self.quantile) if len(mine) else float(real_dist.max())
        ratio = fake_dist / limits[context.styles].clamp_min(1e-8)
        return ratio.numpy(), (ratio <= self.margin).numpy().astype(bool)


class Sharpness:
    """Variance of the Laplacian of the grey image (the classic focus measure: blur removes the
    high frequencies the Laplacian responds to); passes at or above the ``quantile`` of the real
    images of the requested style (or an explicit ``threshold``).

    The limit is per style because sharpness is part of a style: a soft watercolour style is
    blurry by nature and a pixel-art style crisp, so one overall limit would reject every soft
    style's samples or wave through blurred crisp ones. A style with fewer than
    ``MIN_PER_STYLE`` real images in the sample falls back to the overall limit."""

    higher_is_better = True

    def __init__(self, quantile: float = 0.02, threshold: float | None = None):
        self.quantile = float(quantile)
        self.threshold = None if threshold is None else float(threshold)
        if not 0 <= self.quantile < 1:
            raise ValueError("sharpness quantile must be in [0, 1)")

    def score(self, context):
        fake = laplacian_variance(context.images)
        if self.threshold is not None:
            return fake.numpy(), (fake >= self.threshold).numpy()
        real = laplacian_variance(context.real_images)
        limits = per_style_limits(real, context.real_styles, context.num_styles, self.quantile)
        return fake.numpy(), (fake >= limits[context.styles]).numpy()


class NearDuplicate:
    """Style-encoder distance to the nearest other kept candidate of the batch. Candidates are
    visited in manifest order (style, then seed); one closer than the threshold to a candidate
    already kept is rejected, so of a group of near-identical samples the first is kept.

    The default threshold is the ``quantile`` of the real images' nearest-neighbour distances in
    the same space: closer than almost any two different real images are to each other. Exact
    copies always count, even if the real data holds some (``SAME_EMBEDDING``)."""

    higher_is_better = True

    def __init__(self, quantile: float = 0.02, threshold: float | None = None):
        self.quantile = float(quantile)
        self.threshold = None if threshold is None else float(threshold)
        if not 0 <= self.quantile < 1:
            raise ValueError("near_duplicate quantile must be in [0, 1)")
        if self.threshold is not None and self.threshold < 0:
            raise ValueError("near_duplicate threshold must be >= 0")

    def score(self, context):
        fake = context.fake_embeddings().double()
        if self.threshold is not None:
            threshold = self.threshold
        else:
            real = nearest_other(context.real_embeddings().double())
            derived = _quantile(real, self.quantile, "lower") if len(real) else 0.0
            threshold = max(derived, SAME_EMBEDDING)
        kept = _first_of_each_group(fake, threshold)
        distance = _nearest_kept(fake, kept)
        return distance.numpy(), kept


class Memorisation:
    """RMS pixel distance (images scaled to [-1, 1] and averaged down to at most ``size`` x
    ``size``) from each candidate to its nearest training image, over every training image of
    the dataset, streamed shard by shard. Closer than the threshold is a copy and fails.

    Why pixels and not style embeddings: memorisation asks whether a sample *is* a training
    picture, and a style encoder is built to map different pictures of one style close together,
    so it would confuse "same style" with "same picture". Averaging down to a thumbnail keeps
    the picture, averages away small noise and re-encoding differences (a copy with +-2/255
    noise lands ~0.005 from its original, different real images ~0.1 and more) and makes the scan
    of the whole training set cheap.

    The default threshold is the ``quantile`` of held-out real images' distances to their
    nearest training image: those are real new pictures, so a sample nearer a training image
    than almost any of them is a copy. The held-out images are the dataset's ``val`` split (at
    most ``reference_images``); with fewer than ``MIN_REFERENCE`` of them, training images
    measured against the *other* training images are added. Whatever the data says, a sample
    within two grey levels RMS (``SAME_PICTURE``) of a training image is a copy."""

    higher_is_better = True

    def __init__(self, quantile: float = 0.02, threshold: float | None = None, size: int = 16,
                 reference_images: int = 1024):  # fmt: skip
        self.quantile = float(quantile)
        self.threshold = None if threshold is None else float(threshold)
        self.size, self.reference_images = int(size), int(reference_images)
        if not 0 <= self.quantile < 1:
            raise ValueError("memorisation quantile must be in [0, 1)")
        if self.size < 1 or self.reference_images < 1:
            raise ValueError("memorisation needs size >= 1 and reference_images >= 1")

    def score(self, context):
        dataset = context.dataset
        if dataset is None:
            raise ValueError("the memorisation filter needs the model's training dataset")
        manifest = dataset.manifest
        train = manifest[manifest["split"] == "train"]
        queries = [thumbnails(context.images, self.size)]
        owners = [np.full(len(context.images), -1)]  # manifest row of a query taken from the data
        if self.threshold is None:
            reference = self._reference_rows(manifest, train)
            queries.append(thumbnails(to_tensor(dataset.load_pixels(reference)), self.size))
            owners.append(reference.index.to_numpy())
        nearest = nearest_training(
            dataset, train, torch.cat(queries), np.concatenate(owners), self.size
        )
        fake, real = nearest[: len(context.images)], nearest[len(context.images) :]
        if self.threshold is not None:
            threshold = self.threshold
        else:
            real = real[torch.isfinite(real)]
            derived = _quantile(real, self.quantile, "lower") if len(real) else 0.0
            threshold = max(derived, SAME_PICTURE)
        return fake.numpy(), (fake >= threshold).numpy()

    def _reference_rows(self, manifest, train):
        val = manifest[manifest["split"] == "val"]
        val = val.sample(min(len(val), self.reference_images), random_state=0)
        if len(val) >= MIN_REFERENCE:
            return val
        extra = train.sample(min(len(train), self.reference_images - len(val)), random_state=0)
        return pd.concat([val, extra])


FILTERS = {
    "realism": Realism,
    "style_match": StyleMatch,
    "sharpness": Sharpness,
    "near_duplicate": NearDuplicate,
    "memorisation": Memorisation,
}

# Shared measurements -------------------------------------------------------------------------

_LAPLACE = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])[None, None]
_GREY = torch.tensor([0.299, 0.587, 0.114])[None, :, None, None]  # ITU-R BT.601 luma


@torch.inference_mode()
def laplacian_variance(images: torch.Tensor) -> torch.Tensor:
    """Per image, on the grey image in [0, 1], without padding (so borders add no edges)."""
    out = []
    for i in range(0, len(images), CHUNK):
        grey = ((images[i : i + CHUNK].float() + 1) / 2 * _GREY).sum(dim=1, keepdim=True)
        out.append(F.conv2d(grey, _LAPLACE).flatten(1).var(dim=1))
    return torch.cat(out) if out else torch.zeros(0)


def per_style_limits(real: torch.Tensor, real_styles: torch.Tensor, num_styles: int,
                     quantile: float) -> torch.Tensor:  # fmt: skip
    """The ``quantile`` of each style's real values; the overall one for thinly sampled styles."""
    overall = _quantile(real, quantile, "lower") if len(real) else float("-inf")
    limits = torch.full((num_styles,), overall, dtype=real.dtype)
    for s in range(num_styles):
        mine = real[real_styles == s]
        if len(mine) >= MIN_PER_STYLE:
            limits[s] = _quantile(mine, quantile, "lower")
    return limits


def batch_limits(scores: torch.Tensor, styles: torch.Tensor, num_styles: int,
                 k: float) -> torch.Tensor:  # fmt: skip
    """Per candidate, ``median - k * spread`` of its style's scores (of all of them, for a
    style with fewer than ``MIN_PER_STYLE``), the spread being 1.4826 * MAD, or 1.2533 * the
    mean absolute deviation where MAD is 0 (both the standard deviation of normal data)."""
    overall = _robust_floor(scores, k) if len(scores) else float("-inf")
    limits = torch.full((num_styles,), overall, dtype=torch.float64)
    for s in range(num_styles):
        mine = scores[styles == s]
        if len(mine) >= MIN_PER_STYLE:
            limits[s] = _robust_floor(mine, k)
    return limits[styles]


def _robust_floor(x: torch.Tensor, k: float) -> float:
    x = x.double()
    median = _quantile(x, 0.5)
    deviation = (x - median).abs()
    mad = _quantile(deviation, 0.5)
    spread = 1.4826 * mad if mad > 0 else 1.2533 * float(deviation.mean())
    return median - k * spread


def nearest_other(x: torch.Tensor) -> torch.Tensor:
    """Each row's distance to its nearest other row (empty with fewer than two rows)."""
    if len(x) < 2:
        return x.new_zeros(0)
    out = []
    for i in range(0, len(x), CHUNK):
        d = torch.cdist(x[i : i + CHUNK], x)
        d[torch.arange(len(d)), torch.arange(i, i + len(d))] = float("inf")
        out.append(d.min(dim=1).values)
    return torch.cat(out)


def _first_of_each_group(x: torch.Tensor, threshold: float) -> np.ndarray:
    """Greedy in row order: a row is kept unless it is closer than ``threshold`` to a row
    already kept. One distance pass, then one vector test per row that has an earlier close
    row (a collapsed batch can have a quadratic number of close pairs: never loop over them)."""
    n = len(x)
    kept = torch.ones(n, dtype=torch.bool)
    for i in range(0, n, CHUNK):
        d = torch.cdist(x[i : i + CHUNK], x[: i + CHUNK])
        rows = torch.arange(i, i + len(d))[:, None]
        near = (d < threshold) & (torch.arange(d.shape[1])[None, :] < rows)
        # near[r] only names rows before i + r, which are decided by then.
        for r in near.any(dim=1).nonzero().flatten().tolist():
            kept[i + r] = not bool((near[r] & kept[: d.shape[1]]).any())
    return kept.numpy()


def _nearest_kept(x: torch.Tensor, kept: np.ndarray) -> torch.Tensor:
    """Each row's distance to the nearest kept row other than itself (inf when there is none):
    below the threshold exactly for the rejected rows."""
    kept_rows = torch.from_numpy(np.flatnonzero(kept))
    out = []
    for i in range(0, len(x), CHUNK):
        d = torch.cdist(x[i : i + CHUNK], x[kept_rows])
        d[kept_rows[None, :] == torch.arange(i, i + len(d))[:, None]] = float("inf")
        out.append(d.min(dim=1).values if d.shape[1] else torch.full((len(d),), float("inf")))
    return torch.cat(out) if out else torch.zeros(0, dtype=x.dtype)


@torch.inference_mode()
def thumbnails(images: torch.Tensor, size: int) -> torch.Tensor:
    """Images in [-1, 1] averaged down to at most ``size`` x ``size``, flattened, divided by the
    square root of their length so that Euclidean distances between them are RMS differences."""
    side = (min(size, images.shape[-2]), min(size, images.shape[-1]))
    small = F.adaptive_avg_pool2d(images.float(), side).flatten(1)
    return small / small.shape[1] ** 0.5


@torch.inference_mode()
def nearest_training(dataset, train: pd.DataFrame, queries: torch.Tensor, owners: np.ndarray,
                     size: int) -> torch.Tensor:  # fmt: skip
    """Distance from each query thumbnail to the nearest thumbnail of the ``train`` rows, read
    shard by shard, so memory holds one shard whatever the dataset's size. A query whose
    ``owners`` entry is a manifest row (not -1) is not compared with that row itself; thumbnails
    are ``size`` as in :func:`thumbnails`."""
    best = torch.full((len(queries),), float("inf"))
    owners_t = torch.from_numpy(owners.astype(np.int64))
    for part, pixels in dataset.iter_shards(train):
        positions = torch.from_numpy(part.index.to_numpy().astype(np.int64))
        for i in range(0, len(part), CHUNK):
            real = thumbnails(to_tensor(pixels[i : i + CHUNK]), size)
            d = torch.cdist(queries, real)
            d[owners_t[:, None] == positions[None, i : i + CHUNK]] = float("inf")
            best = torch.minimum(best, d.min(dim=1).values)
    return best
