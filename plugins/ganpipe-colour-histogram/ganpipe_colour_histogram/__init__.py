"""A ganpipe plugin that adds ``colour_histogram``, a style encoder that sees palette only.

Each image becomes its soft joint RGB histogram: every pixel votes for nearby bins with Gaussian
weights, so the embedding is differentiable and a style-consistency loss can train through it.
Written only against ganpipe's public plugin API: a ``ganpipe_style_encoders`` hook returning a
factory that takes ``image_size`` plus its options and returns a ``torch.nn.Module`` with an
``embedding_dim``. Select it with ``style.encoder: colour_histogram``.
"""

from __future__ import annotations

from ganpipe import hookimpl


def _build(image_size: int, bins: int = 4, sharpness: float = 1.0):
    import torch
    from torch import nn

    if bins < 2 or sharpness <= 0:
        raise ValueError("colour_histogram needs bins >= 2 and sharpness > 0")

    class ColourHistogram(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding_dim = bins**3
            self.register_buffer("centres", torch.linspace(-1, 1, bins))
            self.width = sharpness * 2 / (bins - 1)

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            x = images.flatten(2)  # (N, 3, P)
            votes = torch.exp(-(((x[..., None] - self.centres) / self.width) ** 2))  # (N,3,P,B)
            votes = votes / votes.sum(-1, keepdim=True)
            r, g, b = votes.unbind(1)
            joint = torch.einsum("npi,npj,npk->nijk", r, g, b).flatten(1) / x.shape[-1]
            embedding = joint.clamp_min(0).sqrt()  # Hellinger: rare colours still count
            return embedding / embedding.norm(dim=1, keepdim=True).clamp_min(1e-8)

    return ColourHistogram()


@hookimpl
def ganpipe_style_encoders():
    return {"colour_histogram": _build}
