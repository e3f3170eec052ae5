"""The full ADA pipeline ('bgc'), operation by operation, on images where the answer is known."""

import pytest
import torch

from ganpipe.builtin.ada import AdaptiveAugment
from ganpipe.builtin.ada_pipeline import augment


def _images(n: int = 6, side: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, side, side, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _run(x, ops, p=1.0, seed=1):
    return augment(x, p, tuple(ops), torch.Generator().manual_seed(seed))


def test_nothing_fires_at_p_zero():
    x = _images()
    assert torch.equal(_run(x, ["xflip", "rotate", "hue", "saturation"], p=0.0), x)


def test_xflip_mirrors_every_image_exactly():
    x = _images()
    assert torch.allclose(_run(x, ["xflip"]), x.flip(3), atol=1e-5)


def test_rotate90_gives_one_of_the_four_quarter_turns():
    x, out = _images(), _run(_images(), ["rotate90"])
    turns = []
    for img, got in zip(x, out):
        matches = [k for k in range(4) if torch.allclose(torch.rot90(img, k, (1, 2)), got,
                                                          atol=1e-5)]  # fmt: skip
        assert len(matches) == 1
        turns.append(matches[0])
    assert len(set(turns)) > 1  # the turn is drawn per image


def test_integer_translation_moves_whole_pixels_within_an_eighth_of_the_side():
    x, out = _images(side=16), _run(_images(side=16), ["xint"])
    for img, got in zip(x, out):
        inner = got[:, 2:-2, 2:-2]
        found = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                 if torch.allclose(inner, img[:, 2 - dy : 14 - dy, 2 - dx : 14 - dx],
                                   atol=1e-5)]  # fmt: skip
        assert len(found) == 1, found


def test_hue_and_saturation_leave_grey_alone_and_hue_keeps_the_grey_level():
    grey = torch.linspace(-0.9, 0.9, 16 * 16).view(1, 1, 16, 16).expand(4, 3, 16, 16).clone()
    assert torch.allclose(_run(grey, ["hue", "saturation"]), grey, atol=1e-5)
    colour = _images(4)
    hued = _run(colour, ["hue"])
    assert not torch.allclose(hued, colour, atol=1e-3)
    assert torch.allclose(hued.mean(1), colour.mean(1), atol=1e-5)  # luma axis is the mean


def test_luma_flip_turns_grey_into_its_negative_or_leaves_it():
    grey = torch.linspace(-0.9, 0.9, 64).view(1, 1, 8, 8).expand(8, 3, 8, 8).clone()
    out = _run(grey, ["lumaflip"])
    for img, got in zip(grey, out):
        assert torch.allclose(got, img, atol=1e-5) or torch.allclose(got, -img, atol=1e-5)
    assert not torch.allclose(out, grey, atol=1e-5)  # some image was flipped


def test_brightness_adds_one_constant_per_image():
    x = _images()
    shift = _run(x, ["brightness"]) - x
    per_image = shift.flatten(1)
    assert torch.allclose(per_image, per_image[:, :1].expand_as(per_image), atol=1e-5)
    assert per_image[:, 0].std() > 0.05


def test_gradients_reach_the_input_and_the_draws_repeat():
    x = _images().requires_grad_(True)
    ops = ["xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac", "brightness",
           "contrast", "lumaflip", "hue", "saturation"]  # fmt: skip
    out = _run(x, ops, p=0.5)
    out.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert torch.equal(_run(x.detach(), ops, p=0.5), out.detach())


def test_ada_keeps_shapes_and_refuses_unknown_operations():
    x = _images()
    ada = AdaptiveAugment(p=0.6, pipeline="bgc", ops=["xflip", "hue"], cutout=0.0)
    assert ada(x, torch.Generator().manual_seed(0)).shape == x.shape
    with pytest.raises(ValueError, match="unknown ada operation"):
        AdaptiveAugment(pipeline="bgc", ops=["twirl"])
    with pytest.raises(ValueError, match="pipeline: bgc"):
        AdaptiveAugment(ops=["xflip"])
    with pytest.raises(ValueError, match="classic' or 'bgc"):
        AdaptiveAugment(pipeline="full")
