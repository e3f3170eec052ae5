"""Rendering for the server: the images ``ganpipe generate`` would write for a request, without
writing a batch, through the render queue shared by concurrent callers when the request has
nothing of its own beyond the model and truncation."""

from __future__ import annotations

from ganpipe.config import Config
from ganpipe.domain.model_pointers import ModelRef
from ganpipe.errors import ConfigError
from ganpipe.serve.render_queue import RenderQueue
from ganpipe.store import RunStore


def render_request(config: Config, store: RunStore, model: ModelRef,
                   renders: RenderQueue | None = None) -> tuple[list[str], list]:  # fmt: skip
    """The images ``ganpipe generate`` would write for this config, as (names, encoded bytes),
    without writing a batch; through ``renders`` (shared with concurrent callers) if given."""
    from ganpipe.data.images import encode
    from ganpipe.stages.generate import plan_batch

    plan = plan_batch(config, store, model=model)
    if len(plan.jobs) > config.serve.max_count:
        raise ConfigError(
            f"the request asks for {len(plan.jobs)} images, more than serve.max_count "
            f"({config.serve.max_count})",
            where="count",
            fix="ask for fewer images per request, or run 'ganpipe generate' for a batch",
        )
    pixels = render_jobs(plan, config, plan.jobs, renders)
    r = plan.request
    return [j.path for j in plan.jobs], [encode(p, r.format, r.quality, r.png_level)
                                         for p in pixels]  # fmt: skip


def render_one(config: Config, store: RunStore, model: ModelRef, t: float,
               renders: RenderQueue | None = None) -> bytes:  # fmt: skip
    """One image: the plan's first job, or with an interpolation the frame at ``t``."""
    from dataclasses import replace

    from ganpipe.data.images import encode
    from ganpipe.stages.generate import plan_batch

    plan = plan_batch(config, store, model=model)
    job = plan.jobs[0] if plan.request.interpolation is None else replace(plan.jobs[0], t=t)
    (pixels,) = render_jobs(plan, config, [job], renders)
    return encode(pixels, "png", plan.request.quality, plan.request.png_level)


def render_jobs(plan, config: Config, jobs: list, renders: RenderQueue | None):
    """Pixels of ``jobs``: through the shared queue when the request has nothing of its own
    beyond the model and truncation (a reference image's code is per request)."""
    from ganpipe.generation.chunks import lazy_renderer
    from ganpipe.registry import load_registry

    def make():  # the plugins load only when no kept renderer fits (they cost a few ms)
        return lazy_renderer(plan, load_registry(config))()

    if renders is None or plan.reference is not None or plan.request.mixing is not None:
        return make().render(jobs)
    key = (plan.model.uri, plan.meta.get("version"), float(plan.request.truncation))
    return renders.render(key, make, jobs)
