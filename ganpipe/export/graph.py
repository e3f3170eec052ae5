"""The module an export traces: latents, style weights and truncation in, images out.

It renders what ganpipe's ``Renderer`` renders for the same inputs (``tests/test_export.py``
checks pixels against ``ganpipe generate``): a one-hot style row is a plain style, any other
row a blend; truncation pulls ``z`` toward 0 on generators without a mapping network and
``w`` toward the blend of the styles' mean codes on those with one. The mean codes are a
constant of the graph (``render.style_means``), so callers never compute them.
"""

from __future__ import annotations

import torch
from torch import nn

from ganpipe.contracts import ConditionalGenerator, MappedGenerator, style_embedding_dim, supports
from ganpipe.errors import ConfigError
from ganpipe.generation.render import style_means

INPUTS = ("z", "style", "truncation")  # plus "style_embedding" where the generator takes one


def check_exportable(generator: nn.Module, name: str) -> None:
    """A generator without ``condition`` and ``render`` cannot take weights over the styles:
    a clear error naming it, before any tracing."""
    if not supports(generator, ConditionalGenerator):
        raise ConfigError(
            f"generator {name!r} cannot be exported: it has no condition() and render() "
            "(the ConditionalGenerator methods an export calls)",
            where="--model",
            fix="add condition(style, style_embedding=None) and render(z, cond) to the plugin "
            "(README, 'Writing a plugin'), or export a dcgan, resnet or stylegan model",
        )


class GeneratorGraph(nn.Module):
    """``forward(z, style, truncation[, style_embedding])`` -> images.

    ``z`` (N, z_dim) latents; ``style`` (N, S) weights over the styles (one-hot: one style);
    ``truncation`` (N,) psi per row (1: off); ``style_embedding`` (N, D), only on generators
    built with one: a row of zeros means none. ``output`` is ``float`` (N, 3, H, W) in
    [-1, 1] or ``uint8`` (N, H, W, 3), rounded exactly as ganpipe writes pixels.
    """

    def __init__(self, generator: nn.Module, num_styles: int, output: str = "float"):
        super().__init__()
        self.g = generator.eval()
        self.output = output
        self.mapped = supports(generator, MappedGenerator)
        self.embedding_dim = style_embedding_dim(generator)
        means = style_means(generator, num_styles) if self.mapped else torch.zeros(num_styles, 1)
        self.register_buffer("w_avg", means)

    def input_names(self) -> list[str]:
        return list(INPUTS) + (["style_embedding"] if self.embedding_dim else [])

    def _condition(self, style: torch.Tensor, embedding: torch.Tensor | None) -> torch.Tensor:
        cond = self.g.condition(style)
        if embedding is None:
            return cond
        given = embedding.abs().sum(dim=1, keepdim=True) > 0
        return torch.where(given, self.g.condition(style, embedding), cond)

    def forward(
        self,
        z: torch.Tensor,
        style: torch.Tensor,
        truncation: torch.Tensor,
        style_embedding: torch.Tensor | None = None,
    ) -> torch.Tensor:
        psi = truncation[:, None]
        cond = self._condition(style, style_embedding)
        if self.mapped:
            w = self.g.map_latent(z, cond)
            images = self.g.synthesis(torch.lerp(style @ self.w_avg, w, psi))
        else:
            images = self.g.render(z * psi, cond)
        if self.output == "uint8":
            pixels = ((images.clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
            return pixels.permute(0, 2, 3, 1)
        return images

    def example_inputs(self, n: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
        """Inputs that exercise every path: plain styles, blends, truncation on and off."""
        gen = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.g.z_dim, generator=gen)
        num_styles = self.w_avg.shape[0]
        style = torch.softmax(torch.randn(n, num_styles, generator=gen) * 3, dim=1)
        style[::2] = nn.functional.one_hot(torch.arange(0, n, 2) % num_styles, num_styles).float()
        truncation = torch.rand(n, generator=gen) * 0.5 + 0.5
        truncation[::3] = 1.0
        inputs = [z, style, truncation]
        if self.embedding_dim:
            embedding = torch.randn(n, self.embedding_dim, generator=gen)
            embedding[::2] = 0.0
            inputs.append(embedding)
        return tuple(inputs)
