"""A batch's plan: one job per image, in manifest order, and the chunks they fall into.

The plan is computed from the config and the model's description alone, so every worker of a
chunked run arrives at the same one. Rendering (``render``) turns jobs into pixels; ``chunks``
writes them. Both read the plan; the plan imports neither.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ganpipe.store import layout

if TYPE_CHECKING:
    from ganpipe.domain.latent_codes import ProjectedCode
    from ganpipe.domain.model_pointers import ModelRef
    from ganpipe.domain.style_table import StyleTable
    from ganpipe.generation.request import BatchRequest

REFERENCE = -1  # style index of jobs conditioned on the reference images' style code
PROJECTED = -2  # latent and style index of jobs starting from a projected code (around)


@dataclass
class StyleCode:
    """A reference's style: soft weights over the model's styles and its embedding."""

    weights: list[float]
    embedding: list[float]
    nearest: str


@dataclass(frozen=True)
class Job:
    """One image. Its latent is the slerp from seed ``z_from``'s to ``z_to``'s at ``t``, its
    conditioning the blend from style ``s_from`` to ``s_to`` (``REFERENCE``: the reference's
    style code); the manifest records ``style`` and ``seed``."""

    path: str  # relative to the batch folder
    style: str
    seed: int
    z_from: int
    z_to: int
    s_from: int
    s_to: int
    t: float = 0.0

    @classmethod
    def plain(cls, path: str, style: str, seed: int, index: int) -> Job:
        return cls(path, style, seed, seed, seed, index, index)


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
    """The images of a request, in manifest order: the frames of an interpolation, the samples
    in the reference's style, variations of a projected code, or each style's samples."""
    fmt = request.format
    if request.around:
        return _around_jobs(request, table)
    if request.interpolate is not None:
        spec = request.interpolate
        (a, b), (sa, sb), n = spec.styles, spec.seeds, spec.frames
        ia, ib = table.names.index(a), table.names.index(b)
        jobs = []
        for i in range(n):
            t = i / (n - 1)
            style, seed = (a, sa) if t < 0.5 else (b, sb)  # the manifest names the nearer end
            jobs.append(Job(f"images/frames/{i:04d}.{fmt}", style, seed, sa, sb, ia, ib, t))
        return jobs
    if code is not None:
        return [
            Job.plain(f"images/reference/{s:08d}.{fmt}", code.nearest, s, REFERENCE)
            for s in request.seeds_for(request.per_style)
        ]
    return [
        Job.plain(f"images/{name}/{s:08d}.{fmt}", name, s, table.names.index(name))
        for name in request.styles
        for s in request.seeds_for(request.count(name))
    ]


def _around_jobs(request: BatchRequest, table: StyleTable) -> list[Job]:
    """A projected code's variations (seed ``s``: ``spread`` of the way from the code to
    ``s``'s sample in the code's styles), or frames from the code to a style and seed."""
    fmt, nearest = request.format, request.styles[0]
    if request.interpolate is not None:
        spec = request.interpolate
        end, seed, n = spec.styles[1], spec.seeds[1], spec.frames
        target = table.names.index(end)
        return [
            Job(f"images/frames/{i:04d}.{fmt}", nearest if i / (n - 1) < 0.5 else end, seed,
                PROJECTED, seed, PROJECTED, target, i / (n - 1))
            for i in range(n)
        ]  # fmt: skip
    spread = float(request.spread or 0.0)
    return [
        Job(f"images/around/{s:08d}.{fmt}", nearest, s, PROJECTED, s, PROJECTED, PROJECTED, spread)
        for s in request.seeds_for(request.per_style)
    ]
