"""Sample-quality metrics in a feature space (the style encoder's, by default).

Everything that sums many terms or compares distances against radii runs in float64, and every
pairwise computation is done a block of rows at a time, so 10,000 x 10,000 distances never sit
in memory at once. Precision/recall follow Kynkäänniemi et al. 2019, density/coverage Naeem et
al. 2020 (the ``prdc`` reference code: a point's radius is the distance to its k-th nearest
neighbour other than itself, and "inside" is a strict ``<``); KID is Bińkowski et al. 2018's
unbiased MMD² with the cubic polynomial kernel over random subsets.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

_BLOCK_BYTES = 1 << 27  # 128 MB of float64 distances per block of rows


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (FID's formula). NaN
    (shown as "n/a") when either set has fewer than 2 points: one point has no spread to fit."""
    a, b = _float64(a), _float64(b)
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    # Tr(sqrt(A B)) from the eigenvalues of sqrt(A) B sqrt(A), which is symmetric.
    try:
        vals, vecs = torch.linalg.eigh(cov_a)
        sqrt_a = vecs @ torch.diag(vals.clamp_min(0).sqrt()) @ vecs.T
        middle = torch.linalg.eigvalsh(sqrt_a @ cov_b @ sqrt_a).clamp_min(0).sqrt().sum()
    except torch.linalg.LinAlgError:  # non-finite features: nothing to measure
        return float("nan")
    return float(((mu_a - mu_b) ** 2).sum() + torch.trace(cov_a) + torch.trace(cov_b) - 2 * middle)


def kid(
    real: torch.Tensor,
    fake: torch.Tensor,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """Kernel Inception Distance: (mean, std) over seeded random subsets of the unbiased MMD²
    with the kernel k(x, y) = (x.y / d + 1)^3. Unbiased, so it is near zero (and may be
    negative) for samples of one distribution; ``subset_size`` is capped at the smaller set."""
    real, fake = _pair(real, fake)
    m = min(subset_size, len(real), len(fake))
    if m < 2:
        raise ValueError(
            f"KID needs at least 2 points in each set, got {len(real)} and {len(fake)}"
        )
    gen = torch.Generator().manual_seed(seed)
    values = torch.empty(subsets, dtype=torch.float64)
    for i in range(subsets):
        x = real[torch.randperm(len(real), generator=gen)[:m]]
        y = fake[torch.randperm(len(fake), generator=gen)[:m]]
        values[i] = _mmd2_unbiased(x, y)
    return float(values.mean()), float(values.std(unbiased=False))


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> tuple[float, float]:
    """Precision: share of samples inside the real images' k-NN manifold (realism). Recall:
    share of real images inside the samples' k-NN manifold (how much of the data is reached)."""
    found = prdc(real, fake, k)
    return found["precision"], found["recall"]


def density_coverage(real: torch.Tensor, fake: torch.Tensor, k: int = 5) -> tuple[float, float]:
    """Density: how many real k-NN balls hold each sample, over k (about 1 for matching
    distributions, robust to real outliers). Coverage: share of real images with a sample
    inside their k-NN ball."""
    found = prdc(real, fake, k)
    return found["density"], found["coverage"]


def prdc(real: torch.Tensor, fake: torch.Tensor, k: int = 5) -> dict[str, float]:
    """Precision, recall, density and coverage with one neighbourhood size, in one pass over
    the real-to-sample distances."""
    real, fake = _pair(real, fake)
    real_radii, fake_radii = knn_radii(real, k), knn_radii(fake, k)
    precise = density = 0.0
    recalled = torch.zeros(len(real), dtype=torch.bool)
    nearest = torch.full((len(real),), float("inf"), dtype=torch.float64)
    for rows, d in _distance_blocks(fake, real):
        within = d < real_radii
        precise += float(within.any(dim=1).sum())
        density += float(within.sum())
        recalled |= (d < fake_radii[rows, None]).any(dim=0)
        nearest = torch.minimum(nearest, d.min(dim=0).values)
    return {
        "precision": precise / len(fake),
        "recall": float(recalled.double().mean()),
        "density": density / (k * len(fake)),
        "coverage": float((nearest < real_radii).double().mean()),
    }


def knn_radii(x: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each point to its k-th nearest neighbour, itself excluded."""
    x = _float64(x)
    if len(x) <= k:
        raise ValueError(f"k-nearest-neighbour radii with k={k} need more than {k} points, "
                         f"got {len(x)}")  # fmt: skip
    radii = torch.empty(len(x), dtype=torch.float64)
    for rows, d in _distance_blocks(x, x):
        radii[rows] = d.topk(k + 1, dim=1, largest=False).values[:, k]
    return radii


def coverage_per_style(
    real: torch.Tensor,
    real_styles: torch.Tensor,
    fake: torch.Tensor,
    fake_styles: torch.Tensor,
    k: int = 5,
) -> dict[int, float]:
    """Coverage of each style's real images by the samples asked for that style. Radii come
    from the whole real set, so a style is judged on the same neighbourhoods as the total."""
    real, fake = _pair(real, fake)
    radii = knn_radii(real, k)
    found = {}
    for s in real_styles.unique().tolist():
        mine, theirs = real_styles == s, fake[fake_styles == s]
        if len(theirs) == 0:
            found[s] = 0.0
            continue
        nearest = _nearest_distance(real[mine], theirs)
        found[s] = float((nearest < radii[mine]).double().mean())
    return found


def diversity_ratio_per_style(
    real: torch.Tensor,
    real_styles: torch.Tensor,
    fake: torch.Tensor,
    fake_styles: torch.Tensor,
) -> dict[int, float]:
    """Mean pairwise distance of the samples of each style over that of its real images:
    1 is as varied as the data, well below 1 is mode collapse. Styles with fewer than two real
    images or two samples, or with identical real images, have no ratio."""
    real, fake = _pair(real, fake)
    found = {}
    for s in real_styles.unique().tolist():
        r, f = real[real_styles == s], fake[fake_styles == s]
        if len(r) > 1 and len(f) > 1:
            spread = _mean_pairwise_distance(r)
            if spread > 0:
                found[s] = _mean_pairwise_distance(f) / spread
    return found


def style_accuracy(
    embeddings: torch.Tensor, styles: torch.Tensor, centroids: torch.Tensor
) -> float:
    """Share of samples whose nearest style centroid is the style they were asked for."""
    nearest = torch.cdist(embeddings.float(), centroids.float()).argmin(dim=1)
    return float((nearest == styles).float().mean())


def diversity(embeddings: torch.Tensor, styles: torch.Tensor) -> float:
    """Mean pairwise embedding distance within each style, averaged over styles."""
    values = [
        _mean_pairwise_distance(e)
        for s in styles.unique()
        if len(e := _float64(embeddings[styles == s])) > 1
    ]
    return sum(values) / len(values) if values else 0.0


def _mean_pairwise_distance(x: torch.Tensor) -> float:
    total = sum(float(d.sum()) for _, d in _distance_blocks(x, x))
    return total / (len(x) * (len(x) - 1))


def _nearest_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    out = torch.empty(len(a), dtype=torch.float64)
    for rows, d in _distance_blocks(a, b):
        out[rows] = d.min(dim=1).values
    return out


def _distance_blocks(a: torch.Tensor, b: torch.Tensor) -> Iterator[tuple[slice, torch.Tensor]]:
    """Euclidean distances from blocks of rows of ``a`` to all of ``b``, in bounded memory."""
    step = max(1, _BLOCK_BYTES // (8 * max(len(b), 1)))
    for start in range(0, len(a), step):
        rows = slice(start, min(start + step, len(a)))
        yield rows, torch.cdist(a[rows], b)


def _mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    m, d = len(x), x.shape[1]
    one = torch.ones((), dtype=torch.float64)

    def kernel_sum(a, b, skip_diagonal):
        step = max(1, _BLOCK_BYTES // (8 * len(b)))
        total = sum(
            torch.addmm(one, a[i : i + step], b.T, alpha=1 / d).pow_(3).sum()
            for i in range(0, len(a), step)
        )
        if skip_diagonal:  # k(x, x) terms bias the estimate upwards
            total = total - ((a * a).sum(dim=1) / d + 1).pow(3).sum()
        return total

    same = (kernel_sum(x, x, True) + kernel_sum(y, y, True)) / (m * (m - 1))
    return same - 2 * kernel_sum(x, y, False) / (m * m)


def _float64(x: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(x).detach().to(dtype=torch.float64)


def _pair(real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    real, fake = _float64(real), _float64(fake)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(
            f"features must be (N, D) with the same D, got {tuple(real.shape)} and "
            f"{tuple(fake.shape)}"
        )
    return real, fake
