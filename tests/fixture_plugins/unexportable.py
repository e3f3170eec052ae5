"""Generators an export must refuse, each with a clear error naming it: one without the
conditioning methods, one whose code branches on the batch size (a trace records one path)."""

import torch
from torch import nn

from ganpipe import hookimpl
from ganpipe.builtin.nets import DCGANGenerator


class IndexOnlyGenerator(nn.Module):
    """Styles by index only: no condition() and render(), so no weights over the styles."""

    def __init__(self, num_styles: int, image_size: int, z_dim: int = 8):
        super().__init__()
        self.z_dim, self.image_size = z_dim, image_size
        self.net = nn.Linear(z_dim, 3 * image_size**2)
        self.embed = nn.Embedding(num_styles, 3 * image_size**2)

    def forward(self, z, style, style_embedding=None):
        side = self.image_size
        return torch.tanh(self.net(z) + self.embed(style)).view(len(z), 3, side, side)


class BatchDependentGenerator(DCGANGenerator):
    """Darkens odd-sized batches: its output depends on a Python branch on the batch size."""

    def render(self, z, cond):
        images = super().render(z, cond)
        return images * 0.5 if z.shape[0] % 2 else images


@hookimpl
def ganpipe_generators():
    return {"index_only": IndexOnlyGenerator, "batch_dependent": BatchDependentGenerator}
