"""Losses and regularisers against values computed by hand."""

import math

import pytest
import torch
from torch import nn

from ganpipe.builtin.losses import Hinge, LeastSquares, NonSaturating, WassersteinGP
from ganpipe.builtin.regularizers import R1, Diversity


def t(*values):
    return torch.tensor(values, dtype=torch.float64)


def test_losses_match_hand_computed_values():
    ns = NonSaturating()
    assert float(ns.d_loss(t(0.0), t(0.0))) == pytest.approx(2 * math.log(2))
    assert float(ns.g_loss(t(0.0), t(0.0))) == pytest.approx(math.log(2))
    hinge = Hinge()
    # relu(1 - [2, .5]) = [0, .5]; relu(1 + [-2, .5]) = [0, 1.5]
    assert float(hinge.d_loss(t(2.0, 0.5), t(-2.0, 0.5))) == pytest.approx(0.25 + 0.75)
    assert float(hinge.g_loss(t(-2.0, 0.5), t(0.0))) == pytest.approx(0.75)
    ls = LeastSquares()
    assert float(ls.d_loss(t(1.0, 0.0), t(0.0, 1.0))) == pytest.approx(0.5 * 0.5 + 0.5 * 0.5)
    assert float(ls.g_loss(t(0.0, 1.0), t(0.0))) == pytest.approx(0.25)
    w = WassersteinGP()
    assert float(w.d_loss(t(1.0, 3.0), t(0.0, 2.0))) == pytest.approx(-1.0)
    assert float(w.g_loss(t(0.0, 2.0), t(0.0))) == pytest.approx(-1.0)


class Linear(nn.Module):
    """D(x) = sum(w * x): its gradient with respect to x is w everywhere."""

    def __init__(self, weight: float):
        super().__init__()
        self.weight = weight

    def forward(self, x, style):
        return (self.weight * x).flatten(1).sum(1)


def test_gradient_penalties_match_hand_computed_values():
    real, fake, style = torch.randn(3, 1, 2, 2), torch.randn(3, 1, 2, 2), torch.zeros(3).long()
    # R1: 0.5 * gamma * interval * |grad|^2 = 0.5 * 2 * 1 * (4 * 1.0^2)
    assert float(R1(gamma=2.0, interval=1).d_penalty(Linear(1.0), real, fake, style, 0)) == 4.0
    assert R1(interval=4).d_penalty(Linear(1.0), real, fake, style, 3) is None  # lazy step
    # WGAN-GP: weight * (|grad| - 1)^2 = 10 * (sqrt(4 * 1.5^2) - 1)^2 = 10 * 4
    gp = WassersteinGP(gp_weight=10.0).d_penalty(Linear(1.5), real, fake, style, 0)
    assert float(gp) == pytest.approx(40.0)


def test_diversity_penalty_matches_hand_computed_value():
    fakes = torch.cat([torch.zeros(2, 3, 4, 4), torch.ones(2, 3, 4, 4)])  # image gap 1
    latents = torch.cat([torch.zeros(2, 8), 2 * torch.ones(2, 8)])  # latent gap 2
    penalty = Diversity(weight=1.0, eps=0.0).g_penalty(fakes, latents, None, 0)
    assert float(penalty) == pytest.approx(1 / 0.5)
    collapsed = Diversity(weight=1.0).g_penalty(torch.zeros(4, 3, 4, 4), latents, None, 0)
    assert float(collapsed) > 1000  # identical images for different latents cost a lot


def _data_capped(weight: float = 1.0) -> Diversity:
    from types import SimpleNamespace

    reg = Diversity(weight=weight, eps=0.0, target="data")
    reg.bind(SimpleNamespace(style_names=["a", "b"], centroids=torch.zeros(2, 2)))
    return reg


def test_diversity_with_a_data_target_pushes_only_up_to_the_datas_own_variety():
    reg = _data_capped()
    # reals of style 0: all 0, all 1 and all 3: pair gaps 1, 3, 2 (mean 2); style 1 one image
    reals = torch.cat([torch.full((1, 3, 4, 4), v) for v in (0.0, 1.0, 3.0, 7.0)])
    assert reg.d_penalty(None, reals, None, torch.tensor([0, 0, 0, 1]), 0) is None
    assert reg.pairs.tolist() == [3.0, 0.0] and reg.gap_sum.tolist() == [6.0, 0.0]
    target = 2.0 / Diversity.LATENT_GAP  # the data's image gap per unit of latent gap
    latents = torch.cat([torch.zeros(2, 8), 2 * torch.ones(2, 8)])  # latent gap 2
    style = torch.tensor([0, 0, 0, 0])
    alike = torch.cat([torch.zeros(2, 3, 4, 4), torch.ones(2, 3, 4, 4)])  # ratio 1 / 2
    assert float(reg.g_penalty(alike, latents, style, 0)) == pytest.approx(2 - 1 / target)
    assert reg.metrics() == {"diversity_vs_data": pytest.approx(0.5 / target)}
    # pairs as different as the data's (or more, e.g. noise) are left alone: no push, no gradient
    varied = torch.cat([torch.zeros(2, 3, 4, 4), torch.full((2, 3, 4, 4), 9.0)])
    varied.requires_grad_(True)
    penalty = reg.g_penalty(varied, latents, style, 0)
    assert float(penalty.detach()) == 0.0
    penalty.backward()
    assert float(varied.grad.abs().sum()) == 0.0
    # a style no real pair was seen of yet: plain MSGAN, weight / ratio
    other = torch.tensor([1, 1, 1, 1])
    assert float(reg.g_penalty(alike, latents, other, 0)) == pytest.approx(2.0)
    # the running figures are state: a restored copy carries on exactly
    restored = _data_capped()
    restored.load_state_dict(reg.state_dict())
    assert torch.equal(restored.gap_sum, reg.gap_sum) and torch.equal(restored.pairs, reg.pairs)
    with pytest.raises(ValueError, match="target"):
        Diversity(target="dataset")


def test_diversity_with_a_data_target_leaves_a_style_of_identical_images_alone():
    reg = _data_capped()
    reg.d_penalty(None, torch.zeros(3, 3, 4, 4), None, torch.tensor([0, 0, 0]), 0)
    latents = torch.cat([torch.zeros(2, 8), 2 * torch.ones(2, 8)])
    assert reg.g_penalty(torch.zeros(4, 3, 4, 4), latents, torch.tensor([0, 0, 0, 0]), 0) is None


def test_style_consistency_pulls_fakes_to_their_style_centroid():
    from types import SimpleNamespace

    from ganpipe.builtin.regularizers import StyleConsistency

    class MeanColour(nn.Module):
        def forward(self, images):
            return images.mean(dim=(2, 3))

    reg = StyleConsistency(weight=2.0)
    centroids = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    reg.bind(
        SimpleNamespace(style_encoder=MeanColour(), centroids=centroids, style_names=["a", "b"])
    )
    fakes = torch.zeros(2, 3, 4, 4)
    fakes[:, 0] = 1.0  # both images pure "red": the centroid of style 0
    # style 0: distance 0; style 1: |(1,0,0) - (0,1,0)|^2 = 2; mean 1; weight 2
    penalty = reg.g_penalty(fakes.requires_grad_(True), None, torch.tensor([0, 1]), 0)
    assert penalty.item() == pytest.approx(2.0)
    penalty.backward()
    assert fakes.grad.abs().sum() > 0  # it trains the generator through the encoder
