"""Sample-quality metrics in a feature space (the style encoder's, by default)."""

from __future__ import annotations

import torch


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (FID's formula)."""
    a, b = a.double(), b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    # Tr(sqrt(A B)) from the eigenvalues of sqrt(A) B sqrt(A), which is symmetric.
    vals, vecs = torch.linalg.eigh(cov_a)
    sqrt_a = vecs @ torch.diag(vals.clamp_min(0).sqrt()) @ vecs.T
    middle = torch.linalg.eigvalsh(sqrt_a @ cov_b @ sqrt_a).clamp_min(0).sqrt().sum()
    return float(((mu_a - mu_b) ** 2).sum() + torch.trace(cov_a) + torch.trace(cov_b) - 2 * middle)


def style_accuracy(
    embeddings: torch.Tensor, styles: torch.Tensor, centroids: torch.Tensor
) -> float:
    """Share of samples whose nearest style centroid is the style they were asked for."""
    nearest = torch.cdist(embeddings.float(), centroids.float()).argmin(dim=1)
    return float((nearest == styles).float().mean())


def diversity(embeddings: torch.Tensor, styles: torch.Tensor) -> float:
    """Mean pairwise embedding distance within each style, averaged over styles."""
    values = []
    for s in styles.unique():
        e = embeddings[styles == s]
        if len(e) > 1:
            d = torch.cdist(e, e)
            values.append(float(d.sum() / (len(e) * (len(e) - 1))))
    return sum(values) / len(values) if values else 0.0
