"""The ``pipeline`` flow: ingest -> styles -> train -> generate -> filter -> report.

Wiring only: each task wraps one stage function from ``ganpipe`` and passes small records (URIs,
fingerprints, counts) onward, never tensors. Tasks that touch the store retry on failure; the
stages themselves are idempotent, so a retry redoes only what is missing.
"""

from __future__ import annotations

import logging
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from ganpipe.config import Config, validate_config
from ganpipe.errors import GanpipeError
from ganpipe.plugins import load_registry
from ganpipe.store import RunStore


def _transient(task, task_run, state) -> bool:
    """Retry I/O failures, never user errors: a missing folder fails the same way each time."""
    return not isinstance(getattr(state, "data", None), GanpipeError)


IO_RETRIES = dict(retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=_transient)


class _UserErrorsWithoutTraceback(logging.Filter):
    """A GanpipeError already says what, where and how to fix; a traceback through Prefect's
    engine only buries that message, so run logs keep the message and drop the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], GanpipeError):
            record.exc_info, record.exc_text = None, None
        return True


for _name in ("prefect.task_runs", "prefect.flow_runs"):
    logging.getLogger(_name).addFilter(_UserErrorsWithoutTraceback())


def _open(config: dict[str, Any]) -> tuple[Config, RunStore, Any]:
    cfg = validate_config(config, "flow parameter 'config'")
    return cfg, RunStore.from_config(cfg), load_registry(cfg)


@task(name="ingest", cache_policy=NO_CACHE, **IO_RETRIES)
def ingest_task(config: dict[str, Any]) -> dict[str, Any]:
    from ganpipe.ingest import ingest

    result = ingest(*_open(config)).to_dict()
    get_run_logger().info(
        "dataset %s/%s: %d accepted, %d rejected",
        result["name"],
        result["fingerprint"],
        result["counts"]["accepted"],
        result["counts"]["rejected"],
    )
    return result


@task(name="styles", cache_policy=NO_CACHE)
def styles_task(config: dict[str, Any]) -> dict[str, Any]:
    from ganpipe.styles import styles

    result = styles(*_open(config)).to_dict()
    get_run_logger().info("%d styles: %s", len(result["names"]), ", ".join(result["names"]))
    return result


@task(name="train", cache_policy=NO_CACHE)
def train_task(config: dict[str, Any]) -> dict[str, Any]:
    from ganpipe.generate import promote
    from ganpipe.train import train

    cfg, store, registry = _open(config)
    result = train(cfg, store, registry).to_dict()
    promote(store, result["model"], result["version"])
    get_run_logger().info(
        "model %s/%s: %d steps, %.0f img/s; promoted to current",
        result["model"],
        result["version"],
        result["steps_done"],
        result["images_per_second"],
    )
    return result


@task(name="generate", cache_policy=NO_CACHE, **IO_RETRIES)
def generate_task(config: dict[str, Any]) -> dict[str, Any]:
    from ganpipe.generate import generate

    return generate(*_open(config)).to_dict()


@task(name="filter", cache_policy=NO_CACHE, **IO_RETRIES)
def filter_task(config: dict[str, Any]) -> dict[str, Any]:
    from ganpipe.filter import filter_batch
    from ganpipe.generate import planned_batch

    cfg, store, registry = _open(config)
    model, folder = planned_batch(cfg, store, registry)
    return filter_batch(cfg, store, folder, model, registry).to_dict()


@task(name="report", cache_policy=NO_CACHE, **IO_RETRIES)
def report_task(config: dict[str, Any]) -> dict[str, Any]:
    from ganpipe.generate import planned_batch
    from ganpipe.report import report

    cfg, store, registry = _open(config)
    model, folder = planned_batch(cfg, store, registry)
    return report(cfg, store, folder, model, registry).to_dict()


@flow(name="ganpipe-pipeline")
def pipeline(config: dict[str, Any]) -> dict[str, Any]:
    """Run every stage on one config (a dict of the YAML sections) and return the summary:
    ``dataset_fingerprint``, ``model_uri``, ``batch_uri``, ``report_uri``, ``metrics``,
    ``counts``."""
    validate_config(config, "flow parameter 'config'")  # fail before any work
    ingested = ingest_task(config)
    styled = styles_task(config)
    trained = train_task(config)
    generated = generate_task(config)
    filtered = filter_task(config)
    reported = report_task(config)
    summary = {
        "dataset_fingerprint": ingested["fingerprint"],
        "model_uri": trained["uri"],
        "batch_uri": generated["uri"],
        "report_uri": reported["uri"],
        "metrics": reported["metrics"],
        "counts": {
            "inputs": ingested["counts"]["inputs"],
            "accepted": ingested["counts"]["accepted"],
            "rejected": ingested["counts"]["rejected"],
            "styles": len(styled["names"]),
            "train_steps": trained["steps_done"],
            "generated": generated["count"],
            "kept": filtered["kept"],
        },
    }
    _publish(summary, filtered)
    return summary


def _publish(summary: dict[str, Any], filtered: dict[str, Any]) -> None:
    """Figures of the run in the Prefect UI."""
    create_table_artifact(
        key="ganpipe-run-figures",
        table=[
            {"figure": k, "value": v}
            for k, v in {**summary["counts"], **summary["metrics"]}.items()
        ],
        description="ganpipe pipeline: counts and metrics",
    )
    reasons = ", ".join(f"{k}: {v}" for k, v in filtered["rejected_by_reason"].items()) or "none"
    create_markdown_artifact(
        key="ganpipe-run-summary",
        markdown=(
            "# ganpipe run\n\n"
            f"- dataset fingerprint: `{summary['dataset_fingerprint']}`\n"
            f"- model: `{summary['model_uri']}`\n"
            f"- batch: `{summary['batch_uri']}`\n"
            f"- report: `{summary['report_uri']}`\n"
            f"- kept {summary['counts']['kept']} of {summary['counts']['generated']} samples "
            f"(rejected by: {reasons})\n"
        ),
        description="ganpipe pipeline summary",
    )
