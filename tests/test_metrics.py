import pytest
import torch

from ganpipe.metrics import diversity, frechet_distance, style_accuracy


def test_frechet_distance_of_known_gaussians():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(20000, 4, generator=gen)
    b = torch.randn(20000, 4, generator=gen) + torch.tensor([1.0, 2.0, 0.0, 0.0])
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    # Equal covariances: the distance is the squared distance of the means, 1 + 4.
    assert frechet_distance(a, b) == pytest.approx(5.0, abs=0.1)
    # N(0, I) vs N(0, 4I) in 4-d: 4 * (1 + 4 - 2 * 2) = 4.
    assert frechet_distance(a, 2 * a) == pytest.approx(4.0, abs=0.1)


def test_style_accuracy_and_diversity():
    centroids = torch.tensor([[0.0, 0.0], [10.0, 10.0]])
    emb = torch.tensor([[0.1, 0.0], [9.0, 9.5], [1.0, 1.0], [0.0, 0.2]])
    styles = torch.tensor([0, 1, 1, 0])
    assert style_accuracy(emb, styles, centroids) == 0.75
    same = torch.zeros(4, 2)
    assert diversity(same, styles) == 0.0
    assert diversity(emb, styles) > diversity(emb * 0.5, styles) > 0
