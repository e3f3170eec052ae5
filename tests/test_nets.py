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
