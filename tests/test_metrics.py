import numpy as np
import pytest
import torch

from ganpipe.stats import metrics
from ganpipe.stats.metrics import (
    coverage_per_style,
    density_coverage,
    diversity,
    diversity_ratio_per_style,
    frechet_distance,
    kid,
    prdc,
    precision_recall,
    style_accuracy,
)


def test_frechet_distance_of_known_gaussians():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(20000, 4, generator=gen)
    b = torch.randn(20000, 4, generator=gen) + torch.tensor([1.0, 2.0, 0.0, 0.0])
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    # Equal covariances: the distance is the squared distance of the means, 1 + 4.
    assert frechet_distance(a, b) == pytest.approx(5.0, abs=0.1)
    # N(0, I) vs N(0, 4I) in 4-d: 4 * (1 + 4 - 2 * 2) = 4.
    assert frechet_distance(a, 2 * a) == pytest.approx(4.0, abs=0.1)


def test_frechet_distance_with_covariances_that_do_not_commute():
    # In 2-d, Tr(sqrt(M)) = sqrt(tr M + 2 sqrt(det M)) for M = S1 S2: a closed form that shares
    # nothing with the eigen-decomposition the implementation uses.
    s1 = torch.tensor([[2.0, 0.8], [0.8, 1.0]], dtype=torch.float64)
    s2 = torch.tensor([[0.5, -0.3], [-0.3, 1.5]], dtype=torch.float64)
    mu1, mu2 = torch.tensor([1.0, -1.0]), torch.tensor([0.0, 2.0])
    m = s1 @ s2
    tr_sqrt = float(torch.sqrt(torch.trace(m) + 2 * torch.sqrt(torch.det(m))))
    expected = float(((mu1 - mu2) ** 2).sum() + torch.trace(s1) + torch.trace(s2)) - 2 * tr_sqrt
    gen = torch.Generator().manual_seed(7)
    z1 = torch.randn(200_000, 2, generator=gen, dtype=torch.float64)
    z2 = torch.randn(200_000, 2, generator=gen, dtype=torch.float64)
    a = z1 @ torch.linalg.cholesky(s1).T + mu1
    b = z2 @ torch.linalg.cholesky(s2).T + mu2
    assert frechet_distance(a, b) == pytest.approx(expected, rel=0.01)


def test_style_accuracy_and_diversity():
    centroids = torch.tensor([[0.0, 0.0], [10.0, 10.0]])
    emb = torch.tensor([[0.1, 0.0], [9.0, 9.5], [1.0, 1.0], [0.0, 0.2]])
    styles = torch.tensor([0, 1, 1, 0])
    assert style_accuracy(emb, styles, centroids) == 0.75
    same = torch.zeros(4, 2)
    assert diversity(same, styles) == 0.0
    assert diversity(emb, styles) > diversity(emb * 0.5, styles) > 0


# Precision, recall, density, coverage ------------------------------------------------------


def reference_prdc(real, fake, k):
    """prdc's formulas on full distance matrices, straight from the papers (numpy)."""
    real, fake = real.double().numpy(), fake.double().numpy()

    def dist(a, b):
        return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))

    real_r = np.sort(dist(real, real), axis=1)[:, k]  # column 0 is the point itself
    fake_r = np.sort(dist(fake, fake), axis=1)[:, k]
    d = dist(real, fake)  # (real, fake)
    return {
        "precision": (d < real_r[:, None]).any(axis=0).mean(),
        "recall": (d < fake_r[None, :]).any(axis=1).mean(),
        "density": (d < real_r[:, None]).sum(axis=0).mean() / k,
        "coverage": (d.min(axis=1) < real_r).mean(),
    }


def test_prdc_matches_a_direct_reference_in_small_blocks(monkeypatch):
    gen = torch.Generator().manual_seed(1)
    real = torch.randn(300, 8, generator=gen)
    fake = 1.2 * torch.randn(250, 8, generator=gen) + 0.3
    # Blocks of a few rows, so the row-block bookkeeping is exercised.
    monkeypatch.setattr(metrics, "_BLOCK_BYTES", 8 * 300 * 7)
    want3, want5 = reference_prdc(real, fake, 3), reference_prdc(real, fake, 5)
    precision, recall = precision_recall(real, fake, k=3)
    density, coverage = density_coverage(real, fake, k=5)
    assert precision == pytest.approx(want3["precision"], abs=1e-12)
    assert recall == pytest.approx(want3["recall"], abs=1e-12)
    assert density == pytest.approx(want5["density"], abs=1e-12)
    assert coverage == pytest.approx(want5["coverage"], abs=1e-12)
    assert 0 < precision < 1 and 0 < recall < 1


@pytest.mark.slow
def test_prdc_of_two_gaussian_samples_matches_the_published_values():
    # The prdc package's README example: two independent N(0, I) samples of 10,000 points in
    # 1,000-d, nearest_k=5 for all four -> precision 0.4772, recall 0.4705, density 1.0555,
    # coverage 0.9738. Those come from one random draw; over other draws density moves most
    # (0.95 to 1.13 measured over seeds 1-3), hence its wider tolerance.
    gen = torch.Generator().manual_seed(0)
    real = torch.randn(10_000, 1000, generator=gen)
    fake = torch.randn(10_000, 1000, generator=gen)
    found = prdc(real, fake, k=5)
    assert found["precision"] == pytest.approx(0.4772, abs=0.02)
    assert found["recall"] == pytest.approx(0.4705, abs=0.02)
    assert found["density"] == pytest.approx(1.0555, abs=0.05)
    assert found["coverage"] == pytest.approx(0.9738, abs=0.02)


def test_prdc_falls_when_samples_leave_the_data():
    gen = torch.Generator().manual_seed(2)
    real = torch.randn(2000, 32, generator=gen)
    same = prdc(real, torch.randn(2000, 32, generator=gen))
    shifted = prdc(real, torch.randn(2000, 32, generator=gen) + 1.0)
    shrunk = prdc(real, 0.5 * torch.randn(2000, 32, generator=gen))
    spread = prdc(real, 2.0 * torch.randn(2000, 32, generator=gen))
    assert same["coverage"] > 0.9 and 0.6 < same["density"] < 1.4
    # Shifted away from the data: few samples look real, few real images are reached.
    assert shifted["precision"] < same["precision"] / 2
    assert shifted["coverage"] < same["coverage"] / 2
    assert shifted["density"] < same["density"] / 2
    # Collapsed to the centre: every sample looks real, but the data's spread is missed.
    assert shrunk["precision"] > 0.99 and shrunk["recall"] < same["recall"] / 2
    # Spread too wide: samples fall off the data, yet they reach much of it.
    assert spread["precision"] < same["precision"] / 2 and spread["recall"] > same["recall"]


def test_prdc_needs_more_points_than_neighbours():
    with pytest.raises(ValueError, match="k=5 need more than 5 points"):
        density_coverage(torch.randn(5, 3), torch.randn(50, 3), k=5)
    with pytest.raises(ValueError, match="same D"):
        precision_recall(torch.randn(50, 3), torch.randn(50, 4))


# KID ----------------------------------------------------------------------------------------


def cubic_mmd2_of_shifted_gaussians(shift: torch.Tensor) -> float:
    """MMD² between N(0, I) and N(shift, I) for k(x, y) = (x.y/d + 1)^3, in closed form.

    For independent u ~ N(a, I), v ~ N(b, I) and t = u.v: E t = a.b,
    E t^2 = d + |a|^2 + |b|^2 + (a.b)^2, E t^3 = (a.b)^3 + 3 (a.b)(|a|^2 + |b|^2) + (3d + 6) a.b.
    Expanding E[(t/d + 1)^3] for the three pairs and combining (with m = |shift|^2) leaves
    (m^3 + 6 m^2 + (3d + 6) m) / d^3 + 3 m^2 / d^2 + 3 m / d.
    """
    d, m = len(shift), float((shift**2).sum())
    return (m**3 + 6 * m**2 + (3 * d + 6) * m) / d**3 + 3 * m**2 / d**2 + 3 * m / d


def test_kid_of_one_distribution_is_about_zero_and_can_be_negative():
    gen = torch.Generator().manual_seed(3)
    a, b = torch.randn(3000, 16, generator=gen), torch.randn(3000, 16, generator=gen)
    mean, std = kid(a, b, subsets=20, subset_size=500)
    assert abs(mean) < 0.01 and abs(mean) < 3 * std + 1e-3
    values = [kid(a, b, subsets=1, subset_size=50, seed=s)[0] for s in range(20)]
    assert min(values) < 0 < max(values)  # unbiased: no floor at zero


def test_kid_of_shifted_gaussians_matches_the_closed_form():
    gen = torch.Generator().manual_seed(4)
    shift = torch.full((16,), 0.5)
    a, b = torch.randn(5000, 16, generator=gen), torch.randn(5000, 16, generator=gen) + shift
    mean, std = kid(a, b, subsets=20, subset_size=1000)
    assert mean == pytest.approx(cubic_mmd2_of_shifted_gaussians(shift), rel=0.05)
    assert 0 < std < 0.2 * mean
    assert kid(a, b, subsets=20, subset_size=1000) == (mean, std)  # seeded
    assert kid(a, b, subsets=20, subset_size=1000, seed=1) != (mean, std)


def test_kid_over_whole_sets_equals_a_direct_quadratic_reference(monkeypatch):
    gen = torch.Generator().manual_seed(5)
    x, y = torch.randn(120, 6, generator=gen), 1.5 * torch.randn(90, 6, generator=gen)
    xs, ys = x.double().numpy(), y[:90].double().numpy()
    # subset_size is capped at 90: every subset is all of y and 90 of x's 120 points, so take
    # x's subset from the same seeded permutation kid uses.
    gen = torch.Generator().manual_seed(0)
    xs = xs[torch.randperm(120, generator=gen)[:90].numpy()]
    ys = ys[torch.randperm(90, generator=gen).numpy()]
    d, m = 6, 90
    direct = 0.0
    for i in range(m):
        for j in range(m):
            if i != j:
                direct += ((xs[i] @ xs[j] / d + 1) ** 3 + (ys[i] @ ys[j] / d + 1) ** 3) / (
                    m * (m - 1)
                )
            direct -= 2 * (xs[i] @ ys[j] / d + 1) ** 3 / (m * m)
    monkeypatch.setattr(metrics, "_BLOCK_BYTES", 8 * 90 * 8)  # blocks of 8 rows
    mean, std = kid(x, y, subsets=1, subset_size=5000)
    assert mean == pytest.approx(direct, rel=1e-10) and std == 0.0


# Per-style ----------------------------------------------------------------------------------


def test_per_style_coverage_and_diversity_ratio_find_the_collapsed_style():
    gen = torch.Generator().manual_seed(6)
    centres = torch.tensor([[0.0] * 8, [8.0] * 8])
    real = torch.cat([torch.randn(400, 8, generator=gen) + c for c in centres])
    real_styles = torch.arange(2).repeat_interleave(400)
    healthy = torch.randn(400, 8, generator=gen) + centres[0]
    collapsed = 0.05 * torch.randn(400, 8, generator=gen) + centres[1]
    fake, fake_styles = torch.cat([healthy, collapsed]), real_styles
    coverage = coverage_per_style(real, real_styles, fake, fake_styles, k=5)
    assert coverage[0] > 0.85 and coverage[1] < 0.2
    ratio = diversity_ratio_per_style(real, real_styles, fake, fake_styles)
    assert ratio[0] == pytest.approx(1.0, abs=0.1) and ratio[1] < 0.1
    # Samples asked for style 0 but drawn at style 1 cover nothing of style 0.
    swapped = coverage_per_style(real, real_styles, fake, 1 - fake_styles, k=5)
    assert swapped[0] < 0.05
