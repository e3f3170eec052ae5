"""A batch's plan: one job per image, in manifest order, and the chunks they fall into.

The plan is computed from the config and the model's description alone, so every worker of a
chunked run arrives at the same one. Rendering (``render``) turns jobs into pixels; ``chunks``
writes them. Both read the plan; the plan imports neither.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

from ganpipe.store import layout

if TYPE_CHECKING:
    from ganpipe.domain.latent_codes import ProjectedCode
    from ganpipe.domain.model_pointers import ModelRef
    from ganpipe.domain.style_table import StyleTable
    from ganpipe.generation.request import BatchRequest


class LatentFrom(Enum):
    """Where one end of a job's latent comes from."""

    SEED = "seed"  # the latent of seed ``seed``
    PROJECTED = "projected"  # the projected code (generate.around)


class StyleFrom(Enum):
    """Where one end of a job's conditioning comes from."""

    STYLE = "style"  # one of the model's styles, by index
    REFERENCE = "reference"  # the reference images' style code (generate.reference)
    PROJECTED = "projected"  # the projected code's weights over the styles (generate.around)


@dataclass(frozen=True)
class LatentEnd:
    source: LatentFrom
    seed: int | None = None  # SEED only

    @classmethod
    def of(cls, seed: int) -> LatentEnd:
        return cls(LatentFrom.SEED, seed)


@dataclass(frozen=True)
class StyleEnd:
    source: StyleFrom
    index: int | None = None  # STYLE only

    @classmethod
    def of(cls, index: int) -> StyleEnd:
        return cls(StyleFrom.STYLE, index)


PROJECTED_LATENT = LatentEnd(LatentFrom.PROJECTED)
REFERENCE_STYLE = StyleEnd(StyleFrom.REFERENCE)
PROJECTED_STYLE = StyleEnd(StyleFrom.PROJECTED)


@dataclass
class StyleCode:
    """A reference's style: soft weights over the model's styles and its embedding."""

    weights: list[float]
    embedding: list[float]
    nearest: str


@dataclass(frozen=True)
class Job:
    """One image. Its latent is the slerp from ``latent_from`` to ``latent_to`` at ``t``, its
    conditioning the blend from ``style_from`` to ``style_to``; the manifest records ``style``
    and ``seed``."""

    path: str  # relative to the batch folder
    style: str
    seed: int
    latent_from: LatentEnd
    latent_to: LatentEnd
    style_from: StyleEnd
    style_to: StyleEnd
    t: float = 0.0

    @classmethod
    def plain(cls, path: str, style: str, seed: int, conditioning: StyleEnd) -> Job:
        """Seed ``seed``'s latent, one conditioning: no blend."""
        z = LatentEnd.of(seed)
        return cls(path, style, seed, z, z, conditioning, conditioning)

    @property
    def one_style(self) -> int | None:
        """The style index when the job is conditioned on one of the model's styles alone."""
        same = self.style_from == self.style_to and self.style_from.source is StyleFrom.STYLE
        return self.style_from.index if same else None


@dataclass
class BatchPlan:
    """What a batch is made of, computed from the config and the model's description alone,
    so every worker of a chunked run arrives at the same plan."""

    model: ModelRef
    meta: dict
    table: StyleTable
    request: BatchRequest
    batch_id: str
    folder: str
    jobs: list[Job]
    chunk_size: int
    reference: StyleCode | None = field(default=None, repr=False)
    projected: ProjectedCode | None = field(default=None, repr=False)  # generate.around

    @property
    def files(self) -> layout.BatchFiles:
        return layout.BatchFiles(self.folder)

    @property
    def model_label(self) -> str:
        return f"{self.meta['model']}/{self.meta['version']}"

    @property
    def num_chunks(self) -> int:
        return -(-len(self.jobs) // self.chunk_size)

    def chunk(self, index: int) -> list[Job]:
        return self.jobs[index * self.chunk_size : (index + 1) * self.chunk_size]

    def chunk_manifest(self, index: int) -> str:
        start = index * self.chunk_size
        return self.files.chunk(start, min(start + self.chunk_size, len(self.jobs)))


def jobs_for(request: BatchRequest, table: StyleTable, code: StyleCode | None) -> list[Job]:
    """The images of a request, in manifest order, by its mode: each style's samples, the
    samples in the reference's style, the frames of an interpolation, or variations of (or
    frames from) a projected code."""
    from ganpipe.generation.request import Around, FromReference, Interpolation, Samples

    mode = request.mode
    if isinstance(mode, Around):
        return _around_jobs(request, mode, table)
    if isinstance(mode, Interpolation):
        return _interpolation_jobs(request, mode, table)
    if isinstance(mode, FromReference):
        return [
            Job.plain(f"images/reference/{s:08d}.{request.format}", code.nearest, s,
                      REFERENCE_STYLE)
            for s in request.seeds_for(request.per_style)
        ]  # fmt: skip
    assert isinstance(mode, Samples)
    return [
        Job.plain(f"images/{name}/{s:08d}.{request.format}", name, s,
                  StyleEnd.of(table.names.index(name)))
        for name in request.styles
        for s in request.seeds_for(request.count(name))
    ]  # fmt: skip


def _interpolation_jobs(request: BatchRequest, spec, table: StyleTable) -> list[Job]:
    """Frames from (style, seed) to (style, seed); the manifest names the nearer end."""
    (a, b), (sa, sb), n = spec.styles, spec.seeds, spec.frames
    ends = StyleEnd.of(table.names.index(a)), StyleEnd.of(table.names.index(b))
    jobs = []
    for i in range(n):
        t = i / (n - 1)
        style, seed = (a, sa) if t < 0.5 else (b, sb)
        jobs.append(Job(f"images/frames/{i:04d}.{request.format}", style, seed,
                        LatentEnd.of(sa), LatentEnd.of(sb), *ends, t))  # fmt: skip
    return jobs


def _around_jobs(request: BatchRequest, mode, table: StyleTable) -> list[Job]:
    """A projected code's variations (seed ``s``: ``spread`` of the way from the code to
    ``s``'s sample in the code's styles), or frames from the code to a style and seed."""
    fmt, nearest = request.format, request.styles[0]
    if mode.frames is not None:
        end, seed, n = mode.frames.styles[1], mode.frames.seeds[1], mode.frames.frames
        target = StyleEnd.of(table.names.index(end))
        return [
            Job(f"images/frames/{i:04d}.{fmt}", nearest if i / (n - 1) < 0.5 else end, seed,
                PROJECTED_LATENT, LatentEnd.of(seed), PROJECTED_STYLE, target, i / (n - 1))
            for i in range(n)
        ]  # fmt: skip
    spread = float(mode.spread or 0.0)
    return [
        Job(f"images/around/{s:08d}.{fmt}", nearest, s, PROJECTED_LATENT, LatentEnd.of(s),
            PROJECTED_STYLE, PROJECTED_STYLE, spread)
        for s in request.seeds_for(request.per_style)
    ]  # fmt: skip
