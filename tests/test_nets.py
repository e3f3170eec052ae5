import torch
from torch.nn import functional as F

from ganpipe.builtin.stylenets import ModulatedConv


def test_modulated_conv_equals_a_per_sample_demodulated_weight():
    """The fast form (scale inputs, convolve, scale outputs) must equal StyleGAN2's definition:
    a per-sample weight, modulated by the style and demodulated to unit norm."""
    torch.manual_seed(0)
    conv = ModulatedConv(8, 4, 16)
    torch.nn.init.normal_(conv.affine.weight)
    x, w = torch.randn(3, 8, 5, 5), torch.randn(3, 16)
    style = conv.affine(w)
    weight = conv.weight[None] * style[:, None, :, None, None]
    weight = weight * torch.rsqrt(weight.pow(2).sum(dim=(2, 3, 4), keepdim=True) + 1e-8)
    expected = torch.stack([F.conv2d(x[i : i + 1], weight[i], padding=1)[0] for i in range(3)])
    assert torch.allclose(conv(x, w), expected, atol=1e-5)


def test_nearest_upsampling_has_no_checkerboard_and_a_clear_error():
    """A transposed convolution of a constant image is periodic (its kernels overlap unevenly);
    nearest-neighbour doubling then a convolution keeps a constant image constant inside."""
    import pytest
    from torch import nn

    from ganpipe.builtin.nets import DCGANGenerator, upsampling

    torch.manual_seed(0)
    flat = torch.ones(1, 4, 8, 8)
    transpose, nearest = upsampling("transpose", 4, 2), upsampling("nearest", 4, 2)
    inner = (slice(None), slice(None), slice(2, -2), slice(2, -2))
    assert transpose(flat)[inner].std(dim=(2, 3)).min() > 1e-3  # per channel
    assert nearest(flat)[inner].std(dim=(2, 3)).max() < 1e-5
    assert isinstance(nearest[1], nn.Conv2d) and nearest(flat).shape == (1, 2, 16, 16)
    g = DCGANGenerator(3, 32, upsample="nearest")
    assert g(torch.randn(5, g.z_dim), torch.arange(5) % 3).shape == (5, 3, 32, 32)
    with pytest.raises(ValueError, match="transpose, nearest"):
        DCGANGenerator(3, 32, upsample="bilinear")
