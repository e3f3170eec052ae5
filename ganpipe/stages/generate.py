"""Generate stage: samples per style from the promoted model, reproducibly from seeds, with
controls (truncation, style mixing, interpolation, reference images), in resumable chunks.

Sample ``i`` of every style uses seed ``generate.seed + i`` (or ``generate.seeds[i]``) for its
own latent, so the same seed across styles shows one latent rendered in each style. Every forward
pass renders exactly ``RENDER_ROWS`` rows, the last one padded: CPU kernels choose their
arithmetic by tensor shape, so a fixed shape keeps an image's bytes independent of the batch size,
the chunk size, and of which other images a rerun happens to render beside it.

A request is split into chunks of ``generate.chunk_size`` images. A chunk writes its images, then
a small manifest (``chunks/<start>-<stop>.parquet``); the batch ``manifest.parquet`` is assembled
from the chunk manifests last. A rerun skips chunks whose manifest and images are there and
renders only missing images. ``plan_batch``, ``generate_chunk`` and ``assemble_batch`` are the
pieces a task runner spreads over workers; ``generate`` runs them in one process, encoding and
writing on a thread pool while the next pass renders. The batch id is a hash of the model version
and the request.
"""

from __future__ import annotations

import io
import os
import posixpath
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import pandas as pd
import torch
from PIL import Image

from ganpipe.config import Config, GenerateConfig
from ganpipe.data.dataset import load_dataset, to_pixels
from ganpipe.data.images import animation, encode, grid
from ganpipe.errors import ConfigError, StoreError
from ganpipe.hashing import sha256_bytes, stable_hash
from ganpipe.progress import step
from ganpipe.registry import Registry, load_registry
from ganpipe.stages.styles import StyleTable, embed, encoder_for
from ganpipe.store import RunStore, layout, read_uri
from ganpipe.store.checkpoints import load_network

BATCH_COLUMNS = ["path", "style", "seed", "model", "kept", "reject_reason"]
RENDER_ROWS = 32  # rows of every forward pass (a good size for CPU caches, too)
MEAN_W_SAMPLES = 2048  # latents averaged for a style's mean code (truncation)
MEAN_W_SEED = 12345  # ...drawn from this seed, so the mean is the same in every process
REFERENCE = -1  # style index of jobs conditioned on the reference images' style code
_MEAN_W: dict[tuple[str, str], dict[bytes, torch.Tensor]] = {}  # model -> condition -> mean w


@dataclass
class ModelRef:
    """Where an exported model lives: a store and a folder in it."""

    store: RunStore
    folder: str

    @property
    def uri(self) -> str:
        return self.store.uri(self.folder) if self.folder else self.store.uri()


@dataclass
class GenerateResult:
    batch_id: str
    uri: str
    model: str
    count: int
    written: int
    chunks: int = 1
    strip: str | None = None  # interpolations: all frames side by side (PNG)
    animation: str | None = None  # interpolations: the frames as an animated GIF

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ChunkResult:
    index: int
    count: int
    written: int
    skipped: bool  # its manifest and every image were already there

    def to_dict(self) -> dict:
        return asdict(self)


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
class StyleCode:
    """A reference's style: soft weights over the model's styles and its embedding."""

    weights: list[float]
    embedding: list[float]
    nearest: str


@dataclass
class BatchPlan:
    """What a batch is made of, computed from the config and the model's description alone,
    so every worker of a chunked run arrives at the same plan."""

    model: ModelRef
    meta: dict
    table: StyleTable
    request: dict
    batch_id: str
    folder: str
    jobs: list[Job]
    chunk_size: int
    reference: StyleCode | None = field(default=None, repr=False)

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
        stop = min(start + self.chunk_size, len(self.jobs))
        return f"{self.folder}/chunks/{start:08d}-{stop:08d}.parquet"


_ANY = "<any version>"  # promote's default: whatever is current now


def current_model(config: Config, store: RunStore) -> ModelRef:
    """The version ``models/<name>/current`` names (what production generation uses)."""
    pointer = layout.model_current(config.model_name)
    if not store.exists(pointer):
        raise StoreError(
            f"model {config.model_name!r} has no current version in {store.uri()}",
            where="model.name",
            fix="train it first ('ganpipe train' or 'ganpipe run'), or pass --model URI",
        )
    version = store.read_text(pointer).strip()
    return ModelRef(store, layout.model_dir(config.model_name, version))


def promote(store: RunStore, model_name: str, version: str, expected: str | None = _ANY) -> bool:
    """Make ``version`` the one production generation uses. Under the model's lock, so two
    runs promoting at once take turns; with ``expected`` (the version a decision was made
    against, None for "no current model yet") nothing is written, and False returned, if
    another run changed ``current`` meanwhile."""
    pointer = layout.model_current(model_name)
    with store.lock(f"models/{model_name}/.lock-current"):
        if expected is not _ANY:
            now = store.read_text(pointer).strip() if store.exists(pointer) else None
            if now != expected:
                return False
        store.write_text(pointer, version + "\n")
    return True


def latent(seed: int, z_dim: int) -> torch.Tensor:
    return torch.randn(z_dim, generator=torch.Generator().manual_seed(seed))


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


# The request ----------------------------------------------------------------------------------


def batch_request(config: Config, table: StyleTable, styles: list[str] | None = None) -> dict:
    """What a batch is made of; its hash names the batch. Keys of controls left at their
    defaults are absent, so plain requests keep the ids they always had."""
    g = config.generate
    where = "--style" if styles else "generate.styles"
    refs = styles or g.styles
    wanted = list(dict.fromkeys(_style_name(table, s, where) for s in refs)) or table.names
    request: dict = {
        "styles": wanted,
        "per_style": g.per_style,
        "seed": g.seed,
        "format": g.format,
        "quality": g.quality,
    }
    if g.format == "png" and g.png_level != 6:
        request["png_level"] = g.png_level
    if g.seeds is not None:
        request["seeds"] = list(g.seeds)
    if g.truncation != 1.0:
        request["truncation"] = g.truncation
    if g.mixing is not None:
        m = g.mixing
        if m.style is None and m.seed is None:
            raise ConfigError(
                "generate.mixing needs a style or a seed to take the fine levels from",
                where="generate.mixing",
                fix="set generate.mixing.style or generate.mixing.seed (or remove mixing)",
            )
        style = None if m.style is None else _style_name(table, m.style, "generate.mixing.style")
        request["mixing"] = {"style": style, "seed": m.seed, "crossover": m.crossover}
    if g.reference:
        if g.interpolate is not None:
            raise ConfigError(
                "generate.reference and generate.interpolate cannot be combined",
                where="generate.reference",
                fix="make one batch from the reference images and another interpolation",
            )
        request["styles"] = []  # the reference decides
        request["reference"] = [sha256_bytes(b) for b in _reference_bytes(g)]
        request["reference_temperature"] = g.reference_temperature
    elif g.interpolate is not None:
        request["interpolate"] = _interpolation(g, table, wanted[0])
        request["styles"] = list(dict.fromkeys(request["interpolate"]["styles"]))
    else:
        counts = {_style_name(table, k, "generate.counts"): n for k, n in g.counts.items()}
        if counts and g.seeds is not None:
            raise ConfigError(
                "generate.counts and generate.seeds are both set",
                where="generate.counts",
                fix="give explicit seeds (used for every style) or counts per style, not both",
            )
        if counts:
            request["counts"] = {name: counts[name] for name in wanted if name in counts}
    return request


def _style_name(table: StyleTable, ref: str | int, where: str) -> str:
    try:
        return table.names[table.index(ref)]
    except ConfigError as exc:
        raise ConfigError(exc.what, where=where, fix=exc.fix) from None


def _interpolation(g: GenerateConfig, table: StyleTable, held_style: str) -> dict:
    spec = g.interpolate
    names = [_style_name(table, s, "generate.interpolate.styles") for s in spec.styles]
    styles = (names or [held_style]) * (2 if len(names) < 2 else 1)
    seeds = list(spec.seeds) or [g.seeds[0] if g.seeds else g.seed]
    seeds = seeds * (2 if len(seeds) < 2 else 1)
    if styles[0] == styles[1] and seeds[0] == seeds[1]:
        raise ConfigError(
            "generate.interpolate has nothing to move between: one style and one seed",
            where="generate.interpolate",
            fix="give two styles (interpolate.styles: [a, b]) and/or two seeds ([s, t])",
        )
    return {"styles": styles, "seeds": seeds, "frames": spec.frames, "frame_ms": spec.frame_ms}


def _reference_bytes(g: GenerateConfig) -> list[bytes]:
    fix = "give the path or URI of an image file"
    what, where = "the reference image", "generate.reference"
    return [read_uri(uri, what=what, where=where, fix=fix) for uri in g.reference]


def _jobs(request: dict, table: StyleTable, code: StyleCode | None) -> list[Job]:
    fmt = request["format"]
    if "interpolate" in request:
        spec = request["interpolate"]
        (a, b), (sa, sb), n = spec["styles"], spec["seeds"], spec["frames"]
        ia, ib = table.names.index(a), table.names.index(b)
        jobs = []
        for i in range(n):
            t = i / (n - 1)
            style, seed = (a, sa) if t < 0.5 else (b, sb)  # the manifest names the nearer end
            jobs.append(Job(f"images/frames/{i:04d}.{fmt}", style, seed, sa, sb, ia, ib, t))
        return jobs

    def seeds(n: int) -> list[int]:
        return request.get("seeds") or list(range(request["seed"], request["seed"] + n))

    if code is not None:
        return [
            Job.plain(f"images/reference/{s:08d}.{fmt}", code.nearest, s, REFERENCE)
            for s in seeds(request["per_style"])
        ]
    counts = request.get("counts", {})
    return [
        Job.plain(f"images/{name}/{s:08d}.{fmt}", name, s, table.names.index(name))
        for name in request["styles"]
        for s in seeds(counts.get(name, request["per_style"]))
    ]


def batch_id_for(model_meta: dict, request: dict) -> str:
    return f"{model_meta['model']}-{model_meta['version']}-{stable_hash(request, length=8)}"


def _model_meta(model: ModelRef) -> dict:
    description = posixpath.join(model.folder, "generator.json")
    if not model.store.exists(description):
        raise StoreError(
            f"no exported generator in {model.uri}",
            where="model",
            fix="train the model first ('ganpipe train'), or point --model at a model version",
        )
    return model.store.read_json(description)


def planned_batch(config: Config, store: RunStore, registry: Registry) -> tuple[ModelRef, str]:
    """The model and batch folder that ``generate`` makes for this config, so the filter and
    report stages can run alone on the same store."""
    model = current_model(config, store)
    meta = _model_meta(model)
    table = StyleTable.from_json(meta["styles"])
    folder = layout.batch_dir(batch_id_for(meta, batch_request(config, table)))
    if not store.exists(f"{folder}/manifest.parquet"):
        raise StoreError(
            f"batch {folder} has not been generated yet",
            where=store.uri(folder),
            fix="run 'ganpipe generate' with this config first",
        )
    return model, folder


def plan_batch(
    config: Config,
    store: RunStore,
    registry: Registry | None = None,
    model: ModelRef | None = None,
    styles: list[str] | None = None,
) -> BatchPlan:
    """The batch this config asks of the model: its id, folder, images and chunks."""
    model = model or current_model(config, store)
    meta = _model_meta(model)
    table = StyleTable.from_json(meta["styles"])
    request = batch_request(config, table, styles)
    code = None
    if "reference" in request:
        code = reference_code(config, store, registry or load_registry(config), meta, table)
    jobs = _jobs(request, table, code)
    if not jobs:
        raise ConfigError(
            "the request asks for no images (every style's count is 0)",
            where="generate.counts",
            fix="give at least one style a count above 0",
        )
    batch_id = batch_id_for(meta, request)
    folder = layout.batch_dir(batch_id)
    size = config.generate.chunk_size
    return BatchPlan(model, meta, table, request, batch_id, folder, jobs, size, code)


def reference_code(
    config: Config, store: RunStore, registry: Registry, meta: dict, table: StyleTable
) -> StyleCode:
    """The style of the reference images, as the model's style encoder sees it: their mean
    embedding, and soft weights over the styles from its distances to the style centroids.
    Distances are measured in units of the mean distance between centroids, so the
    temperature means the same whatever the encoder's scale."""
    from ganpipe.data.decode import Rejected, decode_image
    from ganpipe.stages.ingest import decode_settings

    g = config.generate
    size = meta.get("options", {}).get("image_size", config.dataset.image_size)
    settings = replace(decode_settings(config), image_size=size)
    pixels = []
    for uri, data in zip(g.reference, _reference_bytes(g)):
        decoded = decode_image(data, settings)
        if isinstance(decoded, Rejected):
            raise ConfigError(
                f"the reference image {uri} cannot be used: {decoded.reason} ({decoded.detail})",
                where="generate.reference",
                fix="give a readable image file of at least dataset.min_size pixels",
            )
        pixels.append(decoded.pixels)
    dataset = load_dataset(store, config.dataset.name, meta["dataset_fingerprint"])
    encoder = encoder_for(registry, dataset, table.encoder, table.encoder_options, size)
    embedding = embed(encoder, np.stack(pixels)).mean(0)
    distances = (table.centroids - embedding).norm(dim=1)
    spread = torch.pdist(table.centroids).mean() if len(table.names) > 1 else torch.tensor(1.0)
    weights = torch.softmax(-distances / (spread * g.reference_temperature), dim=0)
    nearest = table.names[int(distances.argmin())]
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
        _check_support(generator, plan)
        # Channels-last convolutions are ~1.5x faster on CPU; outputs stay a function of the
        # inputs alone (checked across pass contents and thread counts).
        self.g = generator.eval().to(memory_format=torch.channels_last)
        self.conditioned = _has(generator, "condition", "render")
        self.mapped = _has(generator, "condition", "map_latent", "synthesis")
        self.num_styles = len(plan.table.names)
        self.psi = float(plan.request.get("truncation", 1.0))
        self.mix = plan.request.get("mixing")
        self.mix_style = (
            plan.table.names.index(self.mix["style"]) if self.mix and self.mix["style"] else None
        )
        self.code = plan.reference
        dim = getattr(generator, "style_embedding_dim", 0) or 0
        self.embedding = torch.tensor(self.code.embedding) if self.code and dim else None
        self.means = _MEAN_W.setdefault((plan.model.uri, plan.meta.get("version", "")), {})

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
        z_dim = self.g.z_dim
        z = torch.stack([self._latent(j, z_dim) for j in jobs])
        if not self.mapped and self.psi != 1.0:
            z = z * self.psi  # no mapping network: truncate toward the latent mean, 0
        if not self.conditioned:
            return self.g(z, torch.tensor([j.s_from for j in jobs]))
        cond = self._condition(jobs)
        if not self.mapped:
            return self.g.render(z, cond)
        w = self._truncate(self.g.map_latent(z, cond), cond)
        if self.mix:
            z2 = z if self.mix["seed"] is None else latent(self.mix["seed"], z_dim).expand_as(z)
            cond2 = cond
            if self.mix_style is not None:
                cond2 = self.g.condition(torch.full((len(jobs),), self.mix_style))
            w2 = self._truncate(self.g.map_latent(z2, cond2), cond2)
            cut = self.mix["crossover"]
            w = torch.stack([w if level < cut else w2 for level in range(self.g.num_levels)], 1)
        return self.g.synthesis(w)

    @staticmethod
    def _latent(job: Job, z_dim: int) -> torch.Tensor:
        if job.z_from == job.z_to:
            return latent(job.z_from, z_dim)
        return slerp(latent(job.z_from, z_dim), latent(job.z_to, z_dim), job.t)

    def _condition(self, jobs: list[Job]) -> torch.Tensor:
        if all(j.s_from == j.s_to >= 0 for j in jobs):  # one style each: by index
            return self.g.condition(torch.tensor([j.s_from for j in jobs]))

        def weights(index: int) -> torch.Tensor:
            if index == REFERENCE:
                return torch.tensor(self.code.weights)
            return torch.nn.functional.one_hot(torch.tensor(index), self.num_styles).float()

        blend = torch.stack([torch.lerp(weights(j.s_from), weights(j.s_to), j.t) for j in jobs])
        embedding = None if self.embedding is None else self.embedding.expand(len(jobs), -1)
        return self.g.condition(blend, embedding)

    def _truncate(self, w: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Pull ``w`` toward the mean code of its own conditioning (its style's mean)."""
        if self.psi == 1.0:
            return w
        keys = [row.numpy().tobytes() for row in cond]
        for key, row in zip(keys, cond):
            if key not in self.means:
                seeded = torch.Generator().manual_seed(MEAN_W_SEED)
                fixed = torch.randn(MEAN_W_SAMPLES, self.g.z_dim, generator=seeded)
                self.means[key] = self.g.map_latent(fixed, row.expand(len(fixed), -1)).mean(0)
        mean = torch.stack([self.means[k] for k in keys])
        return torch.lerp(mean, w, self.psi)


def _has(generator: torch.nn.Module, *methods: str) -> bool:
    return all(callable(getattr(generator, m, None)) for m in methods)


def _check_support(generator: torch.nn.Module, plan: BatchPlan) -> None:
    """A control the generator cannot do is a config error naming both, before any work."""
    name, request = plan.meta.get("name", type(generator).__name__), plan.request
    blends = plan.reference is not None or (
        "interpolate" in request and len(set(request["interpolate"]["styles"])) > 1
    )
    if blends and not _has(generator, "condition", "render"):
        option = "generate.reference" if plan.reference else "generate.interpolate.styles"
        raise ConfigError(
            f"generator {name!r} cannot blend styles (it has no condition() and render())",
            where=option,
            fix=f"remove {option}, or use a generator that has them (dcgan, stylegan)",
        )
    mixing = request.get("mixing")
    levels = getattr(generator, "num_levels", None)
    if mixing and not (_has(generator, "condition", "map_latent", "synthesis") and levels):
        raise ConfigError(
            f"generator {name!r} does not support style mixing (it has no mapping network "
            "with per-level codes)",
            where="generate.mixing",
            fix="remove generate.mixing, or use a generator that has one (stylegan)",
        )
    if mixing and mixing["crossover"] > levels:
        raise ConfigError(
            f"generate.mixing.crossover={mixing['crossover']} is beyond the {levels} levels "
            "of this generator",
            where="generate.mixing.crossover",
            fix=f"use 0 to {levels} (4x4 is level 0, 8x8 level 1, ...)",
        )
    dim = getattr(generator, "style_embedding_dim", 0) or 0
    if plan.reference is not None and dim and dim != len(plan.reference.embedding):
        raise ConfigError(
            f"the style encoder gives {len(plan.reference.embedding)}-dimensional embeddings "
            f"but generator {name!r} was built for {dim}",
            where="generate.reference",
            fix="use the style encoder the model was trained with",
        )


# Chunks ---------------------------------------------------------------------------------------


def _existing(out: RunStore, folder: str, jobs: list[Job]) -> set[str]:
    """Image paths of ``jobs`` already in the store: one listing per folder, not one request
    per image (which on S3 would cost more than rendering). The temporary files of writes a
    crash cut short are swept from those folders on the way."""
    out.sweep(folder)
    out.sweep(f"{folder}/chunks")
    found: set[str] = set()
    for sub in sorted({posixpath.dirname(j.path) for j in jobs}):
        out.sweep(f"{folder}/{sub}")
        found.update(f"{sub}/{name}" for name in out.listdir(folder, sub))
    return found


def _workers(g: GenerateConfig) -> int:
    # Writing waits on the disk or the network more than it computes: more threads than cores.
    return g.workers or min(32, (os.cpu_count() or 1) + 4)


_THREADS = {"lock": threading.Lock(), "users": 0, "before": 1}


@contextmanager
def _render_threads(g: GenerateConfig) -> Iterator[None]:
    """Torch threads for rendering, restored when the last generation in this process ends
    (chunk tasks may run side by side on threads). By default one core is left to encoding:
    small convolutions gain less from a second torch thread than the pipeline gains from
    encoding beside them, and pass outputs do not depend on the thread count."""
    with _THREADS["lock"]:
        if _THREADS["users"] == 0:
            _THREADS["before"] = torch.get_num_threads()
            torch.set_num_threads(g.threads or max(1, _THREADS["before"] - 1))
        _THREADS["users"] += 1
    try:
        yield
    finally:
        with _THREADS["lock"]:
            _THREADS["users"] -= 1
            if _THREADS["users"] == 0:
                torch.set_num_threads(_THREADS["before"])


def _write_image(out: RunStore, rel: str, pixels: np.ndarray, g: GenerateConfig) -> None:
    out.write_bytes(rel, encode(pixels, g.format, g.quality, g.png_level))


def _produce(
    plan: BatchPlan,
    renderer: Callable[[], Renderer],
    out: RunStore,
    g: GenerateConfig,
    indices: list[int],
    existing: set[str],
    advance: Callable[[int], None],
) -> list[ChunkResult]:
    """Render the missing images of the chunks ``indices`` on this thread while a pool encodes
    and writes the previous pass; each chunk's manifest follows once its images are written."""
    results: list[ChunkResult] = []
    waiting: list[tuple[int, list[Job], list[Future], int]] = []  # chunks being written
    pending: deque[Future] = deque()
    limit = 2 * max(g.batch_size, RENDER_ROWS)  # images rendered but not yet written

    def close_written(wait: bool) -> None:
        for item in list(waiting):
            index, jobs, futures, written = item
            if wait or all(f.done() for f in futures):
                for f in futures:
                    f.result()  # a failed write fails the run, before the manifest claims it
                _write_chunk_manifest(out, plan, index, jobs)
                results.append(ChunkResult(index, len(jobs), written, skipped=False))
                waiting.remove(item)

    def render_and_submit(jobs: list[Job], pool: ThreadPoolExecutor) -> list[Future]:
        futures = []
        for start in range(0, len(jobs), g.batch_size):
            part = jobs[start : start + g.batch_size]
            for job, px in zip(part, renderer().render(part)):
                rel = posixpath.join(plan.folder, job.path)
                futures.append(pool.submit(_write_image, out, rel, px, g))
            pending.extend(futures[-len(part) :])
            while pending and (pending[0].done() or len(pending) > limit):
                pending.popleft().result()
            advance(len(part))
            close_written(wait=False)
        return futures

    pool = ThreadPoolExecutor(_workers(g), thread_name_prefix="ganpipe-write")
    try:
        with _render_threads(g):
            for index in indices:
                jobs = plan.chunk(index)
                todo = [j for j in jobs if j.path not in existing]
                if not todo and out.exists(plan.chunk_manifest(index)):
                    results.append(ChunkResult(index, len(jobs), 0, skipped=True))
                else:
                    waiting.append((index, jobs, render_and_submit(todo, pool), len(todo)))
                advance(len(jobs) - len(todo))
            close_written(wait=True)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return sorted(results, key=lambda r: r.index)


def _write_chunk_manifest(out: RunStore, plan: BatchPlan, index: int, jobs: list[Job]) -> None:
    rows = pd.DataFrame(
        {
            "path": [j.path for j in jobs],
            "style": [j.style for j in jobs],
            "seed": pd.Series([j.seed for j in jobs], dtype="int64"),
            "model": plan.model_label,
        }
    )
    out.write_parquet(plan.chunk_manifest(index), rows)


def _lazy_renderer(plan: BatchPlan, registry: Registry) -> Callable[[], Renderer]:
    """The renderer, loading the generator on first use: a finished batch never loads it."""
    made: list[Renderer] = []

    def get() -> Renderer:
        if not made:
            generator, _ = load_network(plan.model.store, plan.model.folder, "generator", registry)
            made.append(Renderer(generator, plan))
        return made[0]

    return get


def generate_chunk(
    config: Config,
    store: RunStore,
    index: int,
    registry: Registry | None = None,
    model: ModelRef | None = None,
    styles: list[str] | None = None,
    out: RunStore | None = None,
) -> ChunkResult:
    """Generate chunk ``index`` of the batch this config asks for (one unit of a run spread over
    workers): its missing images, then its manifest. Arguments as for ``generate``."""
    registry = registry or load_registry(config)
    out = out or store
    plan = plan_batch(config, store, registry, model, styles)
    if not 0 <= index < plan.num_chunks:
        raise ConfigError(
            f"chunk {index} does not exist; this batch has {plan.num_chunks} chunks",
            where="chunk index",
            fix=f"use 0 to {plan.num_chunks - 1}",
        )
    existing = _existing(out, plan.folder, plan.chunk(index))
    renderer = _lazy_renderer(plan, registry)
    with step(f"generate {plan.batch_id} chunk {index}", total=len(plan.chunk(index))) as advance:
        return _produce(plan, renderer, out, config.generate, [index], existing, advance)[0]


def assemble_batch(
    config: Config,
    store: RunStore,
    registry: Registry | None = None,
    model: ModelRef | None = None,
    styles: list[str] | None = None,
    out: RunStore | None = None,
    written: int = 0,
    plan: BatchPlan | None = None,
) -> GenerateResult:
    """Write the batch manifest from the chunk manifests (and, for an interpolation, the strip
    and the animation), once every chunk is done. ``written``: images the chunks wrote now; when
    0 and the manifest already lists the same images, it is kept, with the filter's verdicts."""
    registry = registry or load_registry(config)
    out = out or store
    plan = plan or plan_batch(config, store, registry, model, styles)
    folder = plan.folder
    parts = []
    for index in range(plan.num_chunks):
        rel = plan.chunk_manifest(index)
        if not out.exists(rel):
            raise StoreError(
                f"chunk {index} of batch {plan.batch_id} has not been generated",
                where=out.uri(rel),
                fix="generate every chunk before assembling the batch (or run 'ganpipe generate')",
            )
        parts.append(out.read_parquet(rel))
    manifest = pd.concat(parts, ignore_index=True)
    result = GenerateResult(
        plan.batch_id, out.uri(folder), plan.model_label, len(manifest), written, plan.num_chunks
    )
    if "interpolate" in plan.request:
        result.strip = out.uri(f"{folder}/strip.png")
        result.animation = out.uri(f"{folder}/animation.gif")
        if written or not out.exists(f"{folder}/animation.gif"):
            _write_strip_and_animation(out, folder, manifest["path"], plan.request["interpolate"])

    previous = f"{folder}/manifest.parquet"
    same = (
        not written
        and out.exists(previous)
        and list(out.read_parquet(previous)["path"]) == list(manifest["path"])
    )
    if not same:  # a rerun of a complete batch keeps its manifest, so the filter's verdicts too
        manifest["kept"] = True  # until the filter stage scores them
        manifest["reject_reason"] = pd.Series([None] * len(manifest), dtype="string")
        described = {**plan.request, "styles": list(dict.fromkeys(manifest["style"]))}
        if plan.reference is not None:
            described["reference_weights"] = dict(zip(plan.table.names, plan.reference.weights))
        out.write_json(f"{folder}/request.json", {**described, "model": plan.model.uri})
        out.write_text(f"{folder}/config.yaml", config.to_yaml())
        out.write_parquet(previous, manifest)
    registry.notify("ganpipe_batch_generated", batch=result.to_dict())
    return result


def _write_strip_and_animation(out: RunStore, folder: str, paths, spec: dict) -> None:
    frames = []
    for p in paths:
        with Image.open(io.BytesIO(out.read_bytes(posixpath.join(folder, p)))) as img:
            frames.append(np.asarray(img.convert("RGB")))
    pixels = np.stack(frames)
    scale = max(1, 128 // pixels.shape[1])  # small models: big enough to see
    out.write_bytes(f"{folder}/strip.png", encode(grid(pixels, cols=len(pixels), scale=scale)))
    out.write_bytes(f"{folder}/animation.gif", animation(pixels, spec["frame_ms"], scale))


def generate(
    config: Config,
    store: RunStore,
    registry: Registry | None = None,
    model: ModelRef | None = None,
    styles: list[str] | None = None,
    out: RunStore | None = None,
) -> GenerateResult:
    """Generate the batch the config asks for (``generate.per_style`` samples of each style,
    or of ``styles``, with the configured controls) into ``batches/<batch-id>/`` of ``out``
    (default: the run store), writing only what is missing."""
    registry = registry or load_registry(config)
    out = out or store
    plan = plan_batch(config, store, registry, model, styles)
    existing = _existing(out, plan.folder, plan.jobs)
    renderer = _lazy_renderer(plan, registry)
    indices = list(range(plan.num_chunks))
    with step(f"generate {plan.batch_id}", total=len(plan.jobs), unit=("img", 1)) as advance:
        chunks = _produce(plan, renderer, out, config.generate, indices, existing, advance)
    written = sum(c.written for c in chunks)
    return assemble_batch(config, store, registry, out=out, written=written, plan=plan)
