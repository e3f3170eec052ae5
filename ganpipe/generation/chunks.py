"""A batch as units of work: its jobs (one per image), chunks of them, and the producer that
renders a chunk's missing images while a thread pool encodes and writes the previous pass.

A request is split into chunks of ``generate.chunk_size`` images. A chunk writes its images,
then a small manifest (``chunks/<start>-<stop>.parquet``); a rerun skips chunks whose manifest
and images are there and renders only missing images. The plan is computed from the config and
the model's description alone, so every worker of a chunked run arrives at the same one.
"""

from __future__ import annotations

import os
import posixpath
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch

from ganpipe.config import GenerateConfig
from ganpipe.data.images import encode
from ganpipe.generation.plan import BatchPlan, Job
from ganpipe.generation.render import RENDER_ROWS, Renderer
from ganpipe.generation.request import BatchRequest
from ganpipe.registry import Registry
from ganpipe.store import RunStore, layout
from ganpipe.store.checkpoints import load_network


def existing_images(out: RunStore, folder: str, jobs: list[Job]) -> set[str]:
    """Image paths of ``jobs`` already in the store: one listing per folder, not one request
    per image (which on S3 would cost more than rendering). The temporary files of writes a
    crash cut short are swept from those folders on the way."""
    out.sweep(folder)
    out.sweep(layout.BatchFiles(folder).chunks)
    found: set[str] = set()
    for sub in sorted({posixpath.dirname(j.path) for j in jobs}):
        out.sweep(f"{folder}/{sub}")
        found.update(f"{sub}/{name}" for name in out.listdir(folder, sub))
    return found


def lazy_renderer(plan: BatchPlan, registry: Registry) -> Callable[[], Renderer]:
    """The renderer, loading the generator on first use: a finished batch never loads it."""
    made: list[Renderer] = []

    def get() -> Renderer:
        if not made:
            generator, _ = load_network(plan.model.store, plan.model.folder, "generator", registry)
            made.append(Renderer(generator, plan))
        return made[0]

    return get


def write_chunk_manifest(out: RunStore, plan: BatchPlan, index: int, jobs: list[Job]) -> None:
    rows = pd.DataFrame(
        {
            "path": [j.path for j in jobs],
            "style": [j.style for j in jobs],
            "seed": pd.Series([j.seed for j in jobs], dtype="int64"),
            "model": plan.model_label,
        }
    )
    out.write_parquet(plan.chunk_manifest(index), rows)


# Producing chunks ------------------------------------------------------------------------------


@dataclass
class ChunkResult:
    """What producing one chunk did."""

    index: int
    count: int
    written: int
    skipped: bool  # its manifest and every image were already there

    def to_dict(self) -> dict:
        return asdict(self)


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


def _write_image(out: RunStore, rel: str, pixels: np.ndarray, request: BatchRequest) -> None:
    out.write_bytes(rel, encode(pixels, request.format, request.quality, request.png_level))


class _Producer:
    """Renders on the calling thread while a pool encodes and writes the previous pass; a
    chunk's manifest follows once all its images are written, so a manifest never claims an
    image a failed write left out."""

    def __init__(
        self,
        plan: BatchPlan,
        renderer: Callable[[], Renderer],
        out: RunStore,
        g: GenerateConfig,
        advance: Callable[[int], None],
    ):
        self.plan, self.renderer, self.out, self.g, self.advance = plan, renderer, out, g, advance
        self.results: list[ChunkResult] = []
        self.waiting: list[tuple[int, list[Job], list[Future], int]] = []  # being written
        self.pending: deque[Future] = deque()
        self.limit = 2 * max(g.batch_size, RENDER_ROWS)  # images rendered but not yet written

    def run(self, indices: list[int], existing: set[str]) -> list[ChunkResult]:
        pool = ThreadPoolExecutor(_workers(self.g), thread_name_prefix="ganpipe-write")
        try:
            with _render_threads(self.g):
                for index in indices:
                    jobs = self.plan.chunk(index)
                    todo = [j for j in jobs if j.path not in existing]
                    if not todo and self.out.exists(self.plan.chunk_manifest(index)):
                        self.results.append(ChunkResult(index, len(jobs), 0, skipped=True))
                    else:
                        futures = self._render_and_submit(todo, pool)
                        self.waiting.append((index, jobs, futures, len(todo)))
                    self.advance(len(jobs) - len(todo))
                self._close_written(wait=True)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return sorted(self.results, key=lambda r: r.index)

    def _render_and_submit(self, jobs: list[Job], pool: ThreadPoolExecutor) -> list[Future]:
        futures, size, request = [], self.g.batch_size, self.plan.request
        for start in range(0, len(jobs), size):
            part = jobs[start : start + size]
            for job, px in zip(part, self.renderer().render(part)):
                rel = posixpath.join(self.plan.folder, job.path)
                futures.append(pool.submit(_write_image, self.out, rel, px, request))
            self.pending.extend(futures[-len(part) :])
            while self.pending and (self.pending[0].done() or len(self.pending) > self.limit):
                self.pending.popleft().result()
            self.advance(len(part))
            self._close_written(wait=False)
        return futures

    def _close_written(self, wait: bool) -> None:
        for item in list(self.waiting):
            index, jobs, futures, written = item
            if wait or all(f.done() for f in futures):
                for f in futures:
                    f.result()  # a failed write fails the run, before the manifest claims it
                write_chunk_manifest(self.out, self.plan, index, jobs)
                self.results.append(ChunkResult(index, len(jobs), written, skipped=False))
                self.waiting.remove(item)


def produce(
    plan: BatchPlan,
    renderer: Callable[[], Renderer],
    out: RunStore,
    g: GenerateConfig,
    indices: list[int],
    existing: set[str],
    advance: Callable[[int], None],
) -> list[ChunkResult]:
    """Render and write the missing images of the chunks ``indices``, then their manifests;
    ``g`` says how (pass size, writer threads, torch threads), ``advance`` counts images."""
    return _Producer(plan, renderer, out, g, advance).run(indices, existing)
