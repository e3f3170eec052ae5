"""The ``generate_batch`` flow: a production batch from a trained model.

generate (one task per chunk of ``generate.chunk_size`` images, so 100,000 images are a few
dozen tasks) -> assemble the manifest -> filter -> report. Chunk tasks run on the configured task
runner: Prefect's thread pool, or a Dask cluster (``orchestration.task_runner: dask``). Every
chunk writes only what is missing, so a rerun of an interrupted batch finishes it. Stage records
stay typed (``ChunkResult``, ``GenerateResult``, ``FilterResult``, ``ReportResult``) until
``_summary`` turns them into the flow's plain result.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prefect import get_run_logger, task, unmapped
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from ganpipe.config import Config, validate_config
from ganpipe_flows.pipeline import IO_RETRIES, open_run, secret_safe_flow, validated_config

if TYPE_CHECKING:
    from ganpipe.generation.chunks import ChunkResult
    from ganpipe.stages.filter import FilterResult
    from ganpipe.stages.generate import GenerateResult
    from ganpipe.stages.report import ReportResult


def _model_and_out(cfg: Config, store, model: str, out: str | None):
    from ganpipe.domain.model_pointers import ModelRef, current_model
    from ganpipe.store import RunStore

    ref = current_model(cfg, store) if model == "current" else ModelRef(
        RunStore(model, cfg.store.storage_options), ""
    )  # fmt: skip
    target = RunStore(out, cfg.store.storage_options) if out else store
    return ref, target


@task(name="generate-chunk", cache_policy=NO_CACHE, **IO_RETRIES)
def generate_chunk_task(
    config: dict[str, Any], index: int, model: str, out: str | None
) -> ChunkResult:
    from ganpipe.stages.generate import generate_chunk

    cfg, store, registry = open_run(config)
    ref, target = _model_and_out(cfg, store, model, out)
    return generate_chunk(cfg, store, index, registry, model=ref, out=target)


@task(name="assemble-batch", cache_policy=NO_CACHE, **IO_RETRIES)
def assemble_task(
    config: dict[str, Any], model: str, out: str | None, written: int
) -> GenerateResult:
    from ganpipe.stages.generate import assemble_batch

    cfg, store, registry = open_run(config)
    ref, target = _model_and_out(cfg, store, model, out)
    return assemble_batch(cfg, store, registry, model=ref, out=target, written=written)


@task(name="filter-batch", cache_policy=NO_CACHE, **IO_RETRIES)
def filter_batch_task(
    config: dict[str, Any], model: str, out: str | None, batch_id: str
) -> FilterResult:
    """One task per batch: near-duplicates and top-k compare across the whole batch."""
    from ganpipe.stages.filter import filter_batch
    from ganpipe.store import layout

    cfg, store, registry = open_run(config)
    ref, target = _model_and_out(cfg, store, model, out)
    folder = layout.batch_dir(batch_id)
    return filter_batch(cfg, store, folder, ref, registry, out=target)


@task(name="report-batch", cache_policy=NO_CACHE, **IO_RETRIES)
def report_batch_task(
    config: dict[str, Any], model: str, out: str | None, batch_id: str
) -> ReportResult:
    from ganpipe.stages.report import report
    from ganpipe.store import layout

    cfg, store, registry = open_run(config)
    ref, target = _model_and_out(cfg, store, model, out)
    return report(cfg, store, layout.batch_dir(batch_id), ref, registry, out=target)


def task_runner(cfg: Config):
    """The runner the config names, built only when asked for (prefect-dask is optional)."""
    o = cfg.orchestration
    if o.task_runner == "threads":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner()
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError:
        from ganpipe.errors import ConfigError

        raise ConfigError(
            "orchestration.task_runner is dask but prefect-dask is not installed",
            where="orchestration.task_runner",
            fix="pip install 'ganpipe[dask]', or use threads",
        ) from None
    if o.dask_address:
        return DaskTaskRunner(address=o.dask_address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": o.dask_workers, "threads_per_worker": 1})


@secret_safe_flow(name="ganpipe-generate-chunks")
def generate_chunks(config: dict[str, Any], chunks: int, model: str, out: str | None) -> int:
    """Every chunk as its own task, on whichever runner this subflow was given; returns the
    number of images written now."""
    futures = generate_chunk_task.map(
        unmapped(config), list(range(chunks)), unmapped(model), unmapped(out)
    )
    return sum(f.result().written for f in futures)


@secret_safe_flow(name="ganpipe-generate-batch")
def generate_batch(
    config: dict[str, Any],
    model: str = "current",
    counts: dict[str, int] | None = None,
    filters: list[str] | None = None,
    out: str | None = None,
) -> dict[str, Any]:
    """Generate, filter and report one batch. ``model``: ``current`` (the promoted version of
    ``model.name``) or a model folder URI; ``counts``: images per style (others get
    ``generate.per_style``; give a style 0 to leave it out); ``filters``: quality filters
    (default ``filter.filters``); ``out``: store URI for the batch (default: the run store).
    Returns the batch's id, URI, counts and report URI."""
    cfg = validated_config(config)
    params = cfg.model_dump(mode="json")
    if counts is not None:
        params["generate"]["counts"] = {**params["generate"]["counts"], **counts}
    if filters is not None:
        params["filter"]["filters"] = list(filters)
    cfg = validate_config(params, "flow parameters")

    from ganpipe.stages.generate import plan_batch
    from ganpipe.store import RunStore

    store = RunStore.from_config(cfg)
    ref, _ = _model_and_out(cfg, store, model, out)
    plan = plan_batch(cfg, store, model=ref)
    get_run_logger().info("batch %s: %d images in %d chunks", plan.batch_id, len(plan.jobs),
                          plan.num_chunks)  # fmt: skip
    written = generate_chunks.with_options(task_runner=task_runner(cfg))(
        params, plan.num_chunks, model, out
    )
    generated = assemble_task(params, model, out, written)
    filtered = filter_batch_task(params, model, out, generated.batch_id)
    reported = report_batch_task(params, model, out, generated.batch_id)
    summary = _summary(generated, filtered, reported, plan.num_chunks, written)
    _publish(summary)
    return summary


def _summary(
    generated: GenerateResult, filtered: FilterResult, reported: ReportResult, chunks: int,
    written: int,
) -> dict[str, Any]:  # fmt: skip
    """The flow's return value: the batch's records as plain JSON, for Prefect to store and for
    callers to read."""
    return {
        "batch_id": generated.batch_id,
        "batch_uri": generated.uri,
        "report_uri": reported.uri,
        "model": generated.model,
        "chunks": chunks,
        "counts": {
            "generated": generated.count,
            "written": written,
            "kept": filtered.kept,
            "rejected": filtered.candidates - filtered.kept,
        },
        "rejected_by_reason": dict(filtered.rejected_by_reason),
    }


def _publish(summary: dict[str, Any]) -> None:
    """The batch's figures in the Prefect UI."""
    create_table_artifact(
        key="ganpipe-batch-figures",
        table=[{"figure": k, "value": v} for k, v in summary["counts"].items()]
        + [
            {"figure": f"rejected: {k}", "value": v}
            for k, v in summary["rejected_by_reason"].items()
        ],  # fmt: skip
        description=f"ganpipe batch {summary['batch_id']}",
    )
