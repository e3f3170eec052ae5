"""What lets the discriminator see a collapsed generator: the minibatch spread channel (taken
per style, it sees a conditional generator that has collapsed to one image per style, which
the plain StyleGAN form cannot) and PacGAN packing."""

import pytest
import torch

from ganpipe.builtin.nets import (
    DCGANDiscriminator,
    minibatch_stddev,
    pack_images,
    style_stddev,
)
from ganpipe.builtin.stylenets import ResidualDiscriminator


def test_style_spread_is_the_unbiased_spread_of_each_styles_images_by_hand():
    x = torch.zeros(5, 2, 1, 1)
    x[0, :, 0, 0] = torch.tensor([1.0, 2.0])  # style 0: the same image twice
    x[1, :, 0, 0] = torch.tensor([1.0, 2.0])
    x[2, :, 0, 0] = torch.tensor([0.0, 0.0])  # style 1: three images
    x[3, :, 0, 0] = torch.tensor([2.0, 6.0])
    x[4, :, 0, 0] = torch.tensor([4.0, 0.0])
    style = torch.tensor([0, 0, 1, 1, 1])
    spread = style_stddev(x, style, num_styles=3)[:, 0, 0, 0]
    # style 1, channel 0: values 0, 2, 4 -> unbiased variance 4; channel 1: 0, 6, 0 -> 12
    expected_1 = (4.0**0.5 + 12.0**0.5) / 2
    assert spread[:2].tolist() == pytest.approx([0.0, 0.0], abs=1e-3)
    assert spread[2:].tolist() == pytest.approx([expected_1] * 3, rel=1e-4)


def test_an_image_alone_with_its_style_gets_the_mean_spread_of_the_others():
    x = torch.tensor([[0.0], [2.0], [0.0], [4.0], [9.0]])[:, :, None, None]
    style = torch.tensor([0, 0, 1, 1, 2])
    spread = style_stddev(x, style, num_styles=3)[:, 0, 0, 0]
    s0, s1 = 2.0**0.5, 8.0**0.5  # unbiased spreads of (0, 2) and (0, 4)
    assert spread.tolist() == pytest.approx([s0, s0, s1, s1, (s0 + s1) / 2], rel=1e-4)


def test_collapse_within_styles_is_visible_per_style_and_invisible_across_styles():
    gen = torch.Generator().manual_seed(0)
    style = torch.arange(4).repeat(16)[torch.randperm(64, generator=gen)]  # a batch's random order
    centres = torch.randn(4, 8, 4, 4, generator=gen) * 3
    reals = centres[style] + torch.randn(64, 8, 4, 4, generator=gen)  # varied within a style
    collapsed = centres[style] + torch.randn(4, 8, 4, 4, generator=gen)[style]  # one per style
    plain_real = minibatch_stddev(reals).mean()
    plain_fake = minibatch_stddev(collapsed).mean()
    assert plain_fake > 0.8 * plain_real  # across styles the gap between styles hides it
    per_style_real = style_stddev(reals, style, 4).mean()
    per_style_fake = style_stddev(collapsed, style, 4).mean()
    assert per_style_fake < 0.01 * per_style_real


@pytest.mark.parametrize("network", [DCGANDiscriminator, ResidualDiscriminator])
def test_discriminators_take_the_spread_kind_as_an_option(network):
    images, style = torch.rand(8, 3, 16, 16), torch.tensor([0, 1] * 4)
    logits = {kind: network(2, 16, minibatch=kind)(images, style) for kind in ("style", "batch",
                                                                             "off")}  # fmt: skip
    assert all(v.shape == (8,) and torch.isfinite(v).all() for v in logits.values())
    with pytest.raises(ValueError, match="minibatch must be one of style, batch, off"):
        network(2, 16, minibatch="groups")


def test_a_batch_without_a_repeated_style_falls_back_to_the_plain_spread():
    x = torch.tensor([[1.0], [3.0]])[:, :, None, None]
    spread = style_stddev(x, torch.tensor([0, 1]), num_styles=2)[:, 0, 0, 0]
    assert spread.tolist() == pytest.approx([1.0, 1.0], rel=1e-4)  # biased spread of (1, 3)


def test_packing_stacks_consecutive_images_on_channels_and_pads_an_odd_batch():
    images = torch.arange(5.0)[:, None, None, None].expand(5, 3, 2, 2)
    packed, styles = pack_images(images, torch.tensor([0, 1, 2, 3, 4]), pack=2)
    assert packed.shape == (3, 6, 2, 2)
    assert packed[1, :3].eq(2).all() and packed[1, 3:].eq(3).all()
    assert packed[2, 3:].eq(4).all()  # padded with the last image
    assert styles.tolist() == [[0, 1], [2, 3], [4, 4]]


@pytest.mark.parametrize("network", [DCGANDiscriminator, ResidualDiscriminator])
def test_a_packing_discriminator_gives_every_image_its_packs_logit(network):
    torch.manual_seed(0)
    D = network(3, 16, pack=2, minibatch="off")  # the spread channel would couple the batch
    images, style = torch.rand(7, 3, 16, 16), torch.tensor([0, 1, 2, 0, 1, 2, 0])
    logits = D(images, style)
    assert logits.shape == (7,)
    assert logits[0] == logits[1] and logits[2] == logits[3]
    changed = images.clone()
    changed[1] = torch.rand(3, 16, 16)  # only the first pack's verdict may move
    again = D(changed, style)
    assert again[0] != logits[0] and torch.equal(again[2:], logits[2:])
    with pytest.raises(ValueError, match="pack must be a whole number >= 1"):
        network(3, 16, pack=0)
