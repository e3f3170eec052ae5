"""k-means in torch, automatic choice of k, and clustering agreement scores."""

from __future__ import annotations

import math

import numpy as np
import torch


def kmeans(x: torch.Tensor, k: int, seed: int = 0, iters: int = 100, restarts: int = 8):
    """k-means++ seeded, best of ``restarts`` by inertia. Returns (labels, centroids)."""
    n = x.shape[0]
    if k > n:
        raise ValueError(f"cannot form {k} styles from {n} images")
    gen = torch.Generator().manual_seed(seed)
    best = None
    for _ in range(restarts):
        centroids = _plus_plus(x, k, gen)
        for _ in range(iters):
            labels = torch.cdist(x, centroids).argmin(dim=1)
            new = torch.stack(
                [x[labels == j].mean(0) if (labels == j).any() else centroids[j] for j in range(k)]
            )
            if torch.allclose(new, centroids, atol=1e-6):
                break
            centroids = new
        labels = torch.cdist(x, centroids).argmin(dim=1)
        inertia = float(((x - centroids[labels]) ** 2).sum())
        if best is None or inertia < best[0]:
            best = (inertia, labels, centroids)
    return best[1], best[2]


def _plus_plus(x: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    first = int(torch.randint(x.shape[0], (1,), generator=gen))
    centroids = [x[first]]
    d2 = ((x - x[first]) ** 2).sum(1)
    for _ in range(1, k):
        probs = d2 / d2.sum() if float(d2.sum()) > 0 else torch.full_like(d2, 1 / len(d2))
        idx = int(torch.multinomial(probs, 1, generator=gen))
        centroids.append(x[idx])
        d2 = torch.minimum(d2, ((x - x[idx]) ** 2).sum(1))
    return torch.stack(centroids)


def silhouette(x: torch.Tensor, labels: torch.Tensor, sample: int = 2000, seed: int = 0) -> float:
    """Mean silhouette on at most ``sample`` points (the full score is quadratic in n)."""
    if x.shape[0] > sample:
        idx = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))[:sample]
        x, labels = x[idx], labels[idx]
    ks, inv = labels.unique(return_inverse=True)
    if len(ks) < 2:
        return -1.0
    onehot = torch.nn.functional.one_hot(inv, len(ks)).to(x.dtype)  # (n, K)
    sums = torch.cdist(x, x) @ onehot  # summed distance from each point to each cluster
    sizes = onehot.sum(0)
    own_size = sizes[inv]
    a = sums.gather(1, inv[:, None]).squeeze(1) / (own_size - 1).clamp_min(1)  # excludes self
    other = sums / sizes
    other[torch.arange(len(inv)), inv] = math.inf
    b = other.min(1).values
    s = (b - a) / torch.maximum(a, b).clamp_min(1e-12)
    s[own_size <= 1] = 0.0
    return float(s.mean())


def choose_k(x: torch.Tensor, max_k: int, seed: int = 0) -> tuple[int, dict[int, float]]:
    """The k in [2, max_k] with the best silhouette."""
    scores = {}
    for k in range(2, min(max_k, x.shape[0] - 1) + 1):
        labels, _ = kmeans(x, k, seed=seed)
        scores[k] = silhouette(x, labels, seed=seed)
    if not scores:
        return 1, {}
    return max(scores, key=lambda k: (scores[k], -k)), scores


def nmi(true: np.ndarray, pred: np.ndarray) -> float:
    """Normalised mutual information (arithmetic mean normalisation, as scikit-learn's default)."""
    _, t = np.unique(true, return_inverse=True)
    _, p = np.unique(pred, return_inverse=True)
    joint = np.zeros((t.max() + 1, p.max() + 1))
    np.add.at(joint, (t, p), 1)
    joint /= joint.sum()
    pt, pp = joint.sum(1), joint.sum(0)
    nz = joint > 0
    mi = float((joint[nz] * np.log(joint[nz] / (pt[:, None] * pp[None, :])[nz])).sum())
    h = lambda q: float(-(q[q > 0] * np.log(q[q > 0])).sum())  # noqa: E731
    denom = (h(pt) + h(pp)) / 2
    return 1.0 if denom == 0 else mi / denom


def purity(true: np.ndarray, pred: np.ndarray) -> float:
    """Share of images whose cluster's majority label is their own label."""
    _, t = np.unique(true, return_inverse=True)
    _, p = np.unique(pred, return_inverse=True)
    return sum(int(np.bincount(t[p == c]).max()) for c in np.unique(p)) / len(t)
