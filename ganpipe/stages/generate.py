"""Generate stage: samples per style from the promoted model, reproducibly from seeds, with
controls (truncation, style mixing, interpolation, reference images), in resumable chunks.

The stage puts together the pieces in ``ganpipe.generation``: the config becomes a typed
``BatchRequest`` (``request``), the request a plan of jobs and chunks (``chunks``), jobs pixels
(``render``). The batch id is a hash of the model version and the request. ``plan_batch``,
``generate_chunk`` and ``assemble_batch`` are the pieces a task runner spreads over workers;
``generate`` runs them in one process, encoding and writing on a thread pool while the next
pass renders. The batch ``manifest.parquet`` is assembled from the chunk manifests last, so its
presence means every image it lists is there.
"""

from __future__ import annotations

import io
import posixpath
from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd
from PIL import Image

from ganpipe.config import Config
from ganpipe.data.images import animation, encode, grid
from ganpipe.domain.model_pointers import ModelRef, current_model, generator_meta
from ganpipe.domain.style_table import StyleTable
from ganpipe.errors import ConfigError, StoreError
from ganpipe.generation.chunks import ChunkResult, existing_images, lazy_renderer, produce
from ganpipe.generation.plan import BatchPlan, jobs_for
from ganpipe.generation.render import reference_code
from ganpipe.generation.request import (
    Around,
    BatchRequest,
    FromReference,
    Interpolation,
    RequestInputs,
)
from ganpipe.progress import step
from ganpipe.registry import Registry, load_registry
from ganpipe.store import RunStore, layout

BATCH_COLUMNS = ["path", "style", "seed", "model", "kept", "reject_reason"]  # the manifest's

__all__ = [
    "BATCH_COLUMNS",
    "ChunkResult",
    "GenerateResult",
    "assemble_batch",
    "generate",
    "generate_chunk",
    "plan_batch",
    "planned_batch",
]


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


# Planning -------------------------------------------------------------------------------------


def planned_batch(config: Config, store: RunStore, registry: Registry) -> tuple[ModelRef, str]:
    """The model and batch folder that ``generate`` makes for this config, so the filter and
    report stages can run alone on the same store."""
    model = current_model(config, store)
    meta = generator_meta(model)
    table = StyleTable.from_json(meta["styles"])
    folder = layout.batch_dir(BatchRequest.from_config(config.generate, table).batch_id(meta))
    if not store.exists(layout.BatchFiles(folder).manifest):
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
    # 1. The model and its styles
    model = model or current_model(config, store)
    meta = generator_meta(model)
    table = StyleTable.from_json(meta["styles"])
    # 2. The request (the files it names read once, here), the reference images' style code
    # or the projected code if it has one
    inputs = RequestInputs.read(config.generate)
    request = BatchRequest.from_config(config.generate, table, styles, inputs)
    code = projected = None
    if isinstance(request.mode, FromReference):
        registry = registry or load_registry(config)
        code = reference_code(config, store, registry, meta, table, inputs.reference)
    if isinstance(request.mode, Around):
        projected = projected_code(inputs.around, meta, table)
    # 3. The images, one job each
    jobs = jobs_for(request, table, code)
    if not jobs:
        raise ConfigError(
            "the request asks for no images (every style's count is 0)",
            where="generate.counts",
            fix="give at least one style a count above 0",
        )
    batch_id = request.batch_id(meta)
    folder = layout.batch_dir(batch_id)
    size = config.generate.chunk_size
    return BatchPlan(model, meta, table, request, batch_id, folder, jobs, size, code, projected)


def projected_code(data: bytes, meta: dict, table: StyleTable):
    """The code ``generate.around`` names (its bytes), checked against the model it is to be
    used with."""
    from ganpipe.domain.latent_codes import ProjectedCode, check_fits

    code = ProjectedCode.from_bytes(data, "generate.around")
    check_fits(code, meta, len(table.names), "generate.around")
    return code


@dataclass
class _Run:
    """What every entry point works with: the plugins, the store written to, the plan."""

    registry: Registry
    out: RunStore
    plan: BatchPlan


def _prepare(
    config: Config,
    store: RunStore,
    registry: Registry | None,
    model: ModelRef | None,
    styles: list[str] | None,
    out: RunStore | None,
    plan: BatchPlan | None = None,
) -> _Run:
    """The defaults of ``generate``'s arguments filled in, and the batch planned."""
    registry = registry or load_registry(config)
    plan = plan or plan_batch(config, store, registry, model, styles)
    return _Run(registry, out or store, plan)


# The stage ------------------------------------------------------------------------------------


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
    # 1. Plan the batch
    run = _prepare(config, store, registry, model, styles, out)
    plan = run.plan
    # 2. Find the images already written (a rerun writes only what is missing)
    existing = existing_images(run.out, plan.folder, plan.jobs)
    # 3. Render and write every chunk, each followed by its manifest
    renderer = lazy_renderer(plan, run.registry)
    indices = list(range(plan.num_chunks))
    with step(f"generate {plan.batch_id}", total=len(plan.jobs), unit=("img", 1)) as advance:
        chunks = produce(plan, renderer, run.out, config.generate, indices, existing, advance)
    # 4. Assemble the batch manifest
    written = sum(c.written for c in chunks)
    return assemble_batch(config, store, run.registry, out=run.out, written=written, plan=plan)


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
    run = _prepare(config, store, registry, model, styles, out)
    plan = run.plan
    if not 0 <= index < plan.num_chunks:
        raise ConfigError(
            f"chunk {index} does not exist; this batch has {plan.num_chunks} chunks",
            where="chunk index",
            fix=f"use 0 to {plan.num_chunks - 1}",
        )
    jobs = plan.chunk(index)
    existing = existing_images(run.out, plan.folder, jobs)
    renderer = lazy_renderer(plan, run.registry)
    with step(f"generate {plan.batch_id} chunk {index}", total=len(jobs)) as advance:
        return produce(plan, renderer, run.out, config.generate, [index], existing, advance)[0]


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
    run = _prepare(config, store, registry, model, styles, out, plan)
    plan, out = run.plan, run.out
    files = plan.files
    manifest = _chunk_manifests(out, plan)
    result = GenerateResult(
        batch_id=plan.batch_id,
        uri=out.uri(plan.folder),
        model=plan.model_label,
        count=len(manifest),
        written=written,
        chunks=plan.num_chunks,
    )
    if plan.request.interpolation is not None:
        result.strip, result.animation = out.uri(files.strip), out.uri(files.animation)
        if written or not out.exists(files.animation):
            _write_strip_and_animation(
                out, plan.folder, manifest["path"], plan.request.interpolation
            )
    same = (
        not written
        and out.exists(files.manifest)
        and list(out.read_parquet(files.manifest)["path"]) == list(manifest["path"])
    )
    if not same:  # a rerun of a complete batch keeps its manifest, so the filter's verdicts too
        _write_batch_files(config, out, plan, manifest)
    run.registry.notify("ganpipe_batch_generated", batch=result.to_dict())
    return result


def _chunk_manifests(out: RunStore, plan: BatchPlan) -> pd.DataFrame:
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
    return pd.concat(parts, ignore_index=True)


def _write_batch_files(
    config: Config, out: RunStore, plan: BatchPlan, manifest: pd.DataFrame
) -> None:
    """The request (with the styles the images have), the config, and the manifest last."""
    files = plan.files
    manifest["kept"] = True  # until the filter stage scores them
    manifest["reject_reason"] = pd.Series([None] * len(manifest), dtype="string")
    described = replace(plan.request, styles=tuple(dict.fromkeys(manifest["style"])))
    weights = None
    if plan.reference is not None:
        weights = dict(zip(plan.table.names, plan.reference.weights))
    out.write_json(files.request, described.to_json(plan.model.uri, weights))
    out.write_text(files.config, config.to_yaml())
    out.write_parquet(files.manifest, manifest)


def _write_strip_and_animation(out: RunStore, folder: str, paths, spec: Interpolation) -> None:
    files = layout.BatchFiles(folder)
    frames = []
    for p in paths:
        with Image.open(io.BytesIO(out.read_bytes(posixpath.join(folder, p)))) as img:
            frames.append(np.asarray(img.convert("RGB")))
    pixels = np.stack(frames)
    scale = max(1, 128 // pixels.shape[1])  # small models: big enough to see
    out.write_bytes(files.strip, encode(grid(pixels, cols=len(pixels), scale=scale)))
    out.write_bytes(files.animation, animation(pixels, spec.frame_ms, scale))
