"""Rendering: jobs (a latent and a conditioning each) to pixels, with the request's controls.

Sample ``i`` of every style uses seed ``seed + i`` (or ``seeds[i]``) for its own latent, so the
same seed across styles shows one latent rendered in each style. Every forward pass renders
exactly ``RENDER_ROWS`` rows, the last one padded: CPU kernels choose their arithmetic by tensor
shape, so a fixed shape keeps an image's bytes independent of the batch size, the chunk size,
and of which other images a rerun happens to render beside it.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from ganpipe.config import Config
from ganpipe.data.dataset import load_dataset, to_pixels
from ganpipe.domain.style_table import StyleTable
from ganpipe.errors import ConfigError
from ganpipe.generation.plan import BatchPlan, Job, StyleCode, StyleEnd, StyleFrom
from ganpipe.registry import Registry
from ganpipe.store import RunStore
from ganpipe.style_encoders import embed, encoder_for

RENDER_ROWS = 32  # rows of every forward pass (a good size for CPU caches, too)
MEAN_W_SAMPLES = 2048  # latents averaged for a style's mean code (truncation)
MEAN_W_SEED = 12345  # ...drawn from this seed, so the mean is the same in every process
_MEAN_W: dict[tuple[str, str], torch.Tensor] = {}  # model -> per-style mean codes (S, w_dim)


def latent(seed: int, z_dim: int) -> torch.Tensor:
    """Seed ``seed``'s latent: the same in every process and whatever else is rendered."""
    return torch.randn(z_dim, generator=torch.Generator().manual_seed(seed))


def style_means(generator: torch.nn.Module, num_styles: int) -> torch.Tensor:
    """Each style's mean intermediate code (S, w_dim), the centre truncation pulls toward:
    ``map_latent`` of ``MEAN_W_SAMPLES`` fixed latents, averaged. A blend of styles is pulled
    toward the same blend of these means, so the table is all an exported model needs to
    truncate exactly as ganpipe does."""
    seeded = torch.Generator().manual_seed(MEAN_W_SEED)
    fixed = torch.randn(MEAN_W_SAMPLES, generator.z_dim, generator=seeded)
    rows = []
    with torch.no_grad():
        for s in range(num_styles):
            onehot = torch.nn.functional.one_hot(torch.tensor(s), num_styles).float()
            cond = generator.condition(onehot.expand(MEAN_W_SAMPLES, -1))
            rows.append(generator.map_latent(fixed, cond).mean(0))
    return torch.stack(rows)


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation: Gaussian latents live near a sphere, and a straight line
    between two of them passes through improbable, washed-out latents near its middle."""
    if t == 0.0:
        return a
    if t == 1.0:
        return b
    cos = torch.dot(a / a.norm(), b / b.norm()).clamp(-1.0, 1.0)
    omega = torch.arccos(cos)
    if float(torch.sin(omega)) < 1e-6:
        return torch.lerp(a, b, t)
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)


# Reference images -----------------------------------------------------------------------------


def decode_for_model(config: Config, meta: dict, uris: list[str], data: list[bytes],
                     where: str, what: str) -> np.ndarray:  # fmt: skip
    """Images as the model sees them (its image size, the dataset's decode settings):
    (N, H, W, 3) uint8. One that cannot be used is a config error naming it and ``where``."""
    from ganpipe.data.decode import Rejected, decode_image, decode_settings

    size = meta.get("options", {}).get("image_size", config.dataset.image_size)
    settings = replace(decode_settings(config), image_size=size)
    pixels = []
    for uri, raw in zip(uris, data):
        decoded = decode_image(raw, settings)
        if isinstance(decoded, Rejected):
            raise ConfigError(
                f"{what} {uri} cannot be used: {decoded.reason} ({decoded.detail})",
                where=where,
                fix="give a readable image file of at least dataset.min_size pixels",
            )
        pixels.append(decoded.pixels)
    return np.stack(pixels)


def model_encoder(
    config: Config, store: RunStore, registry: Registry, meta: dict, table: StyleTable
) -> torch.nn.Module:
    """The style encoder the model's styles were found with, with the weights it had."""
    size = meta.get("options", {}).get("image_size", config.dataset.image_size)
    dataset = load_dataset(store, config.dataset.name, meta["dataset_fingerprint"])
    return encoder_for(registry, dataset, table.encoder, table.encoder_options, size)


def centroid_spread(table: StyleTable) -> torch.Tensor:
    """The mean distance between style centroids: the unit distances in the encoder's space
    are measured in, so temperatures and weights mean the same whatever its scale."""
    return torch.pdist(table.centroids).mean() if len(table.names) > 1 else torch.tensor(1.0)


def soft_weights(table: StyleTable, embedding: torch.Tensor, temperature: float) -> torch.Tensor:
    """Weights over the styles (S,) from an embedding's distances to the style centroids."""
    distances = (table.centroids - embedding).norm(dim=1)
    return torch.softmax(-distances / (centroid_spread(table) * temperature), dim=0)


def reference_code(config: Config, store: RunStore, registry: Registry, meta: dict,
                   table: StyleTable, images: tuple[bytes, ...]) -> StyleCode:  # fmt: skip
    """The style of the reference images (``images``: the bytes of ``generate.reference``), as
    the model's style encoder sees it: their mean embedding, and soft weights over the styles
    from its distances to the style centroids (``soft_weights``)."""
    g = config.generate
    what, where = "the reference image", "generate.reference"
    pixels = decode_for_model(config, meta, g.reference, list(images), where, what)
    encoder = model_encoder(config, store, registry, meta, table)
    embedding = embed(encoder, pixels).mean(0)
    weights = soft_weights(table, embedding, g.reference_temperature)
    nearest = table.names[int(weights.argmax())]
    return StyleCode(weights.tolist(), embedding.tolist(), nearest)


# Rendering ------------------------------------------------------------------------------------


class Renderer:
    """Turns jobs into pixels with the request's controls, in passes of ``RENDER_ROWS``.

    Generators offer what they can: ``forward(z, style)`` alone gives styles by index and
    truncation of ``z``; ``condition(style, style_embedding)`` and ``render(z, cond)`` add
    blends of styles (interpolation, reference images); ``map_latent(z, cond)``,
    ``synthesis(w)`` and ``num_levels`` (a mapping network) add truncation toward a style's
    mean code and style mixing.
    """

    def __init__(self, generator: torch.nn.Module, plan: BatchPlan):
        check_support(generator, plan)
        # Channels-last convolutions are ~1.5x faster on CPU; outputs stay a function of the
        # inputs alone (checked across pass contents and thread counts).
        self.g = generator.eval().to(memory_format=torch.channels_last)
        self.conditioned = _has(generator, "condition", "render")
        self.mapped = _has(generator, "condition", "map_latent", "synthesis")
        self.num_styles = len(plan.table.names)
        self.psi = float(plan.request.truncation)
        self.mix = plan.request.mixing
        self.mix_style = (
            plan.table.names.index(self.mix.style) if self.mix and self.mix.style else None
        )
        self.code = plan.reference
        dim = getattr(generator, "style_embedding_dim", 0) or 0
        self.embedding = torch.tensor(self.code.embedding) if self.code and dim else None
        self.model_key = (plan.model.uri, plan.meta.get("version", ""))
        self.projected = _ProjectedTensors(plan.projected) if plan.projected else None

    @torch.inference_mode()
    def render(self, jobs: list[Job]) -> np.ndarray:
        """(N, H, W, 3) uint8 pixels of ``jobs``, in order."""
        out = []
        for start in range(0, len(jobs), RENDER_ROWS):
            part = jobs[start : start + RENDER_ROWS]
            padded = part + [part[-1]] * (RENDER_ROWS - len(part))
            out.append(to_pixels(self._images(padded))[: len(part)])
        return np.concatenate(out)

    def _images(self, jobs: list[Job]) -> torch.Tensor:
        if self.projected is not None:
            return self._from_projected(jobs)
        z_dim = self.g.z_dim
        z = torch.stack([self._latent(j, z_dim) for j in jobs])
        if not self.mapped and self.psi != 1.0:
            z = z * self.psi  # no mapping network: truncate toward the latent mean, 0
        if not self.conditioned:
            return self.g(z, torch.tensor([j.style_from.index for j in jobs]))
        weights = self._weights(jobs)
        cond = self._condition(jobs, weights)
        if not self.mapped:
            return self.g.render(z, cond)
        w = self._truncate(self.g.map_latent(z, cond), weights)
        if self.mix:
            w = self._mixed(w, z, cond, weights)
        return self.g.synthesis(w)

    def _mixed(
        self, w: torch.Tensor, z: torch.Tensor, cond: torch.Tensor, weights: torch.Tensor
    ) -> torch.Tensor:
        """Per-level codes: ``w`` below the crossover, the mixing code from it on."""
        mix = self.mix
        z2 = z if mix.seed is None else latent(mix.seed, self.g.z_dim).expand_as(z)
        cond2, weights2 = cond, weights
        if self.mix_style is not None:
            weights2 = self._onehot(torch.full((len(z),), self.mix_style))
            cond2 = self.g.condition(torch.full((len(z),), self.mix_style))
        w2 = self._truncate(self.g.map_latent(z2, cond2), weights2)
        cut = mix.crossover
        return torch.stack([w if level < cut else w2 for level in range(self.g.num_levels)], 1)

    def _from_projected(self, jobs: list[Job]) -> torch.Tensor:
        """Each job ``t`` of the way from the projected code to its ``latent_to`` seed's code
        conditioned on ``style_to`` (the code's own styles, or a style): slerp in z, or lerp of
        every level's w (the projection's noise fading out along the way)."""
        code, z_dim = self.projected, self.g.z_dim
        t = torch.tensor([j.t for j in jobs])
        ends = torch.stack([latent(j.latent_to.seed, z_dim) for j in jobs])
        if not self.mapped:
            z = torch.stack([slerp(code.z, end, j.t) for end, j in zip(ends, jobs)])
            z = z * self.psi if self.psi != 1.0 else z
            return self.g.render(z, self.g.condition(self._weights(jobs)))
        end_weights = self._weights([replace(j, style_from=j.style_to, t=0.0) for j in jobs])
        end_cond = self.g.condition(end_weights)
        w_end = self._truncate(self.g.map_latent(ends, end_cond), end_weights)
        levels = code.w.shape[0]
        w = torch.lerp(code.w.expand(len(jobs), -1, -1), w_end[:, None].expand(-1, levels, -1),
                       t[:, None, None])  # fmt: skip
        if self.mix:
            w2 = self._mixed(w_end, ends, end_cond, end_weights)[:, -1]
            w = torch.stack([w[:, i] if i < self.mix.crossover else w2 for i in range(levels)], 1)
        if not code.noise:
            return self.g.synthesis(w)
        fade = (1.0 - t)[:, None, None, None]
        return self.g.synthesis(w, [n[None, None] * fade for n in code.noise])

    @staticmethod
    def _latent(job: Job, z_dim: int) -> torch.Tensor:
        start, end = job.latent_from.seed, job.latent_to.seed
        if start == end:
            return latent(start, z_dim)
        return slerp(latent(start, z_dim), latent(end, z_dim), job.t)

    def _onehot(self, index: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(index, self.num_styles).float()

    def _weights(self, jobs: list[Job]) -> torch.Tensor:
        """Each job's weights over the styles (N, S): one-hot for a plain style."""

        def weights(end: StyleEnd) -> torch.Tensor:
            if end.source is StyleFrom.REFERENCE:
                return torch.tensor(self.code.weights)
            if end.source is StyleFrom.PROJECTED:
                return self.projected.style
            return self._onehot(torch.tensor(end.index))

        return torch.stack(
            [torch.lerp(weights(j.style_from), weights(j.style_to), j.t) for j in jobs]
        )

    def _condition(self, jobs: list[Job], weights: torch.Tensor) -> torch.Tensor:
        indices = [j.one_style for j in jobs]
        if None not in indices:  # one style each: by index
            return self.g.condition(torch.tensor(indices))
        embedding = None if self.embedding is None else self.embedding.expand(len(jobs), -1)
        return self.g.condition(weights, embedding)

    def _truncate(self, w: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Pull ``w`` toward the mean code of its styles (a blend: the blend of their means)."""
        if self.psi == 1.0:
            return w
        if self.model_key not in _MEAN_W:
            _MEAN_W[self.model_key] = style_means(self.g, self.num_styles)
        return torch.lerp(weights @ _MEAN_W[self.model_key], w, self.psi)


class _ProjectedTensors:
    """A projected code's arrays as tensors."""

    def __init__(self, code):
        self.kind = code.kind
        self.style = torch.from_numpy(code.style)
        self.z = None if code.z is None else torch.from_numpy(code.z)
        self.w = None if code.w is None else torch.from_numpy(code.w)
        self.noise = [torch.from_numpy(n) for n in code.noise]


# What a generator supports ---------------------------------------------------------------------


def _has(generator: torch.nn.Module, *methods: str) -> bool:
    return all(callable(getattr(generator, m, None)) for m in methods)


def check_support(generator: torch.nn.Module, plan: BatchPlan) -> None:
    """A control the generator cannot do is a config error naming both, before any work."""
    name = plan.meta.get("name", type(generator).__name__)
    _check_blending(generator, plan, name)
    _check_mixing(generator, plan, name)
    if plan.projected is not None:
        _check_projected(generator, plan.projected, name)
    dim = getattr(generator, "style_embedding_dim", 0) or 0
    if plan.reference is not None and dim and dim != len(plan.reference.embedding):
        raise ConfigError(
            f"the style encoder gives {len(plan.reference.embedding)}-dimensional embeddings "
            f"but generator {name!r} was built for {dim}",
            where="generate.reference",
            fix="use the style encoder the model was trained with",
        )


def _check_blending(generator: torch.nn.Module, plan: BatchPlan, name: str) -> None:
    spec = plan.request.interpolation
    blends = plan.reference is not None or (spec is not None and len(set(spec.styles)) > 1)
    if blends and not _has(generator, "condition", "render"):
        option = "generate.reference" if plan.reference else "generate.interpolate.styles"
        raise ConfigError(
            f"generator {name!r} cannot blend styles (it has no condition() and render())",
            where=option,
            fix=f"remove {option}, or use a generator that has them (dcgan, resnet, stylegan)",
        )


def _check_mixing(generator: torch.nn.Module, plan: BatchPlan, name: str) -> None:
    mixing = plan.request.mixing
    levels = getattr(generator, "num_levels", None)
    if mixing and not (_has(generator, "condition", "map_latent", "synthesis") and levels):
        raise ConfigError(
            f"generator {name!r} does not support style mixing (it has no mapping network "
            "with per-level codes)",
            where="generate.mixing",
            fix="remove generate.mixing, or use a generator that has one (stylegan)",
        )
    if mixing and mixing.crossover > levels:
        raise ConfigError(
            f"generate.mixing.crossover={mixing.crossover} is beyond the {levels} levels "
            "of this generator",
            where="generate.mixing.crossover",
            fix=f"use 0 to {levels} (4x4 is level 0, 8x8 level 1, ...)",
        )


def _check_projected(generator: torch.nn.Module, code, name: str) -> None:
    """A code of the wrong kind or shape for this generator is a config error naming both."""
    if code.kind == "w+":
        levels, width = getattr(generator, "num_levels", 0), getattr(generator, "w_dim", None)
        fits = _has(generator, "condition", "map_latent", "synthesis") and code.w is not None
        fits = fits and tuple(code.w.shape) == (levels, width or code.w.shape[1])
        shapes = getattr(generator, "noise_shapes", None)
        fits = fits and (
            not code.noise
            or (
                callable(shapes)
                and [tuple(n.shape) for n in code.noise] == list(map(tuple, shapes()))
            )
        )
    else:
        fits = _has(generator, "condition", "render") and code.z is not None
        fits = fits and tuple(code.z.shape) == (generator.z_dim,)
    if not fits:
        raise ConfigError(
            f"the projected code ({code.kind}) does not fit generator {name!r}",
            where="generate.around",
            fix="project the image again with this model ('ganpipe project')",
        )
