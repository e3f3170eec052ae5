"""Rendering for concurrent callers: requests that wait together are rendered together.

A request for one image costs one generator pass of ``RENDER_ROWS`` rows whatever it asks for,
so eight callers rendered one by one cost eight passes. Here each request's jobs go on a queue;
one worker thread takes what is waiting (for at most ``window`` seconds after the first, or until
``max_jobs``), renders the jobs of compatible requests in shared passes, and hands each caller
its own images. The renderer renders every job independently of its pass-mates (fixed-size
passes, see ``generation.render``), so an image is byte-identical however requests were grouped.

Renderers (the loaded generator and its per-style mean codes) are kept per model version and
truncation, so a request does not load the network again.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

KEPT_RENDERERS = 8  # model version x truncation combinations kept loaded


@dataclass
class _Ask:
    key: tuple
    make: Callable[[], object]  # builds the Renderer for ``key`` when none is kept
    jobs: list
    done: Future = field(default_factory=Future)


class RenderQueue:
    def __init__(self, window: float = 0.01, max_jobs: int = 256, threads: int | None = None):
        """``threads``: torch threads for rendering (process-wide, so only a process that
        does nothing else should set it: ``ganpipe serve`` gives all cores but one)."""
        self.window, self.max_jobs, self.threads = window, max_jobs, threads
        self.asks: queue.Queue[_Ask] = queue.Queue()
        self.renderers: OrderedDict[tuple, object] = OrderedDict()
        self.passes = 0  # render calls made (what batching saves), for tests and benchmarks
        self.worker = threading.Thread(target=self._run, name="ganpipe-render", daemon=True)
        self.worker.start()

    def render(self, key: tuple, make: Callable[[], object], jobs: list) -> np.ndarray:
        """The pixels of ``jobs`` (N, H, W, 3), rendered with whatever else is waiting."""
        ask = _Ask(key, make, jobs)
        self.asks.put(ask)
        return ask.done.result()

    def _run(self) -> None:
        import torch

        if self.threads:
            torch.set_num_threads(self.threads)
        while True:
            waiting = [self.asks.get()]
            deadline = time.monotonic() + self.window
            while sum(len(a.jobs) for a in waiting) < self.max_jobs:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    waiting.append(self.asks.get(timeout=left))
                except queue.Empty:
                    break
            groups: dict[tuple, list[_Ask]] = {}
            for ask in waiting:
                groups.setdefault(ask.key, []).append(ask)
            for key, asks in groups.items():
                self._render_group(key, asks)

    def _render_group(self, key: tuple, asks: list[_Ask]) -> None:
        try:
            renderer = self._renderer(key, asks[0].make)
            pixels = renderer.render([j for a in asks for j in a.jobs])
            self.passes += 1
        except BaseException as exc:  # every caller hears of the failure, none waits forever
            for ask in asks:
                ask.done.set_exception(exc)
            return
        start = 0
        for ask in asks:
            ask.done.set_result(pixels[start : start + len(ask.jobs)])
            start += len(ask.jobs)

    def _renderer(self, key: tuple, make: Callable[[], object]):
        if key in self.renderers:
            self.renderers.move_to_end(key)
        else:
            self.renderers[key] = make()
            while len(self.renderers) > KEPT_RENDERERS:
                self.renderers.popitem(last=False)
        return self.renderers[key]
