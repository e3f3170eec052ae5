"""The ``pipeline`` flow: ingest -> styles -> train -> generate -> filter -> report.

Wiring only: each task wraps one stage function from ``ganpipe`` and passes its small record
(the stage's result dataclass: URIs, fingerprints, counts) onward, never tensors. Records stay
typed through the flow; Prefect pickles them when it caches a task, and the flow's summary
(``_summary``) is where they become plain data. Tasks that touch the store retry on failure;
the stages themselves are idempotent, so a retry redoes only what is missing. Styles and
training retry only when the store could not be reached (training resumes from its last
checkpoint).

The flow's parameters are stored by Prefect (API, UI, events) with secrets masked; the run itself
gets the real values when called in-process (``ganpipe run``). A run started from a deployment
receives the stored, masked values, so configs used there name secrets as ``${ENV_VAR}``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from prefect import Flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from ganpipe.config import Config, masked_secrets, redact, validate_config
from ganpipe.errors import ConfigError, GanpipeError
from ganpipe.registry import load_registry
from ganpipe.store import RunStore
from ganpipe_flows.caching import CACHED, content_key, run_cached
from ganpipe_flows.progress_artifacts import progress_artifacts

if TYPE_CHECKING:
    from ganpipe.stages.filter import FilterResult
    from ganpipe.stages.generate import GenerateResult
    from ganpipe.stages.ingest import IngestResult
    from ganpipe.stages.report import ReportResult
    from ganpipe.stages.styles import StylesResult
    from ganpipe.stages.train import TrainResult


def _transient(task, task_run, state) -> bool:
    """Retry I/O failures, never user errors: a missing folder fails the same way each time.
    An unreachable store (``StoreUnavailable``) is an I/O failure, though a ``GanpipeError``."""
    error = getattr(state, "data", None)
    return getattr(error, "transient", False) or not isinstance(error, GanpipeError)


def _outage(task, task_run, state) -> bool:
    """Retry only when the store could not be reached: for stages too costly to redo on a bug."""
    return bool(getattr(getattr(state, "data", None), "transient", False))


IO_RETRIES = dict(retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=_transient)
OUTAGE_RETRIES = dict(retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=_outage)


class SecretSafeFlow(Flow):
    """A flow whose parameters reach Prefect's API with secret-looking values masked (the same
    rule as saved configs: ``secret``, ``key``, ``token``... except ``${ENV_VAR}``)."""

    def serialize_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        return super().serialize_parameters(redact(parameters))


def secret_safe_flow(**options: Any):
    """``@flow(...)`` for flows that take a config: Prefect stores their parameters masked."""
    return lambda fn: SecretSafeFlow(fn=fn, **options)


class _UserErrorsWithoutTraceback(logging.Filter):
    """A GanpipeError already says what, where and how to fix; a traceback through Prefect's
    engine only buries that message, so run logs keep the message and drop the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], GanpipeError):
            record.exc_info, record.exc_text = None, None
        return True


for _name in ("prefect.task_runs", "prefect.flow_runs"):
    logging.getLogger(_name).addFilter(_UserErrorsWithoutTraceback())


def open_run(config: dict[str, Any]) -> tuple[Config, RunStore, Any]:
    """What every task starts from: the validated config, its run store, its plugins."""
    cfg = validated_config(config)
    return cfg, RunStore.from_config(cfg), load_registry(cfg)


def validated_config(config: dict[str, Any]) -> Config:
    """The flow's config; a secret that arrives masked (a run started from a deployment or the
    UI gets the parameters as Prefect stored them) is a clear error, not a failed login."""
    masked = masked_secrets(config)
    if masked:
        raise ConfigError(
            f"{', '.join(masked)} arrived masked ('***'): Prefect never stores literal secrets, "
            "so a run started from a deployment or the UI cannot receive them",
            where="flow parameter 'config'",
            fix="name secrets as ${ENV_VAR} in the config and set the variable where the flow "
            "runs (or use the AWS_* environment)",
        )
    return validate_config(config, "flow parameter 'config'")


@task(name="ingest", cache_policy=NO_CACHE, **IO_RETRIES)
def ingest_task(config: dict[str, Any]) -> IngestResult:
    from ganpipe.stages.ingest import ingest

    with progress_artifacts():
        result = ingest(*open_run(config))
    get_run_logger().info(
        "dataset %s/%s: %d accepted, %d rejected",
        result.name,
        result.fingerprint,
        result.counts["accepted"],
        result.counts["rejected"],
    )
    return result


@task(name="styles", cache_key_fn=content_key, **CACHED, **OUTAGE_RETRIES)
def styles_task(config: dict[str, Any], ingested: IngestResult) -> StylesResult:
    from ganpipe.stages.styles import styles

    with progress_artifacts():
        result = styles(*open_run(config))
    get_run_logger().info("%d styles: %s", len(result.names), ", ".join(result.names))
    return result


@task(name="train", cache_key_fn=content_key, **CACHED, **OUTAGE_RETRIES)
def train_task(config: dict[str, Any], styled: StylesResult, promote: bool = True) -> TrainResult:
    """Train (or reuse) the model version; ``promote`` makes it production's current one."""
    from ganpipe.domain.model_pointers import promote as make_current
    from ganpipe.stages.train import train

    cfg, store, registry = open_run(config)
    with progress_artifacts():
        result = train(cfg, store, registry)
    if promote:
        make_current(store, result.model, result.version)
    get_run_logger().info(
        "model %s/%s: %d steps, %.0f img/s%s",
        result.model,
        result.version,
        result.steps_done,
        result.images_per_second,
        "; promoted to current" if promote else "",
    )
    return result


def _trained_model(store: RunStore, trained: TrainResult):
    """The version this run trained (not whatever ``current`` names by now: another run may
    have promoted its own meanwhile)."""
    from ganpipe.domain.model_pointers import ModelRef
    from ganpipe.store import layout

    return ModelRef(store, layout.model_dir(trained.model, trained.version))


@task(name="generate", cache_key_fn=content_key, **CACHED, **IO_RETRIES)
def generate_task(config: dict[str, Any], trained: TrainResult) -> GenerateResult:
    from ganpipe.stages.generate import generate

    cfg, store, registry = open_run(config)
    with progress_artifacts():
        return generate(cfg, store, registry, model=_trained_model(store, trained))


@task(name="filter", cache_key_fn=content_key, **CACHED, **IO_RETRIES)
def filter_task(
    config: dict[str, Any], trained: TrainResult, generated: GenerateResult
) -> FilterResult:
    from ganpipe.stages.filter import filter_batch
    from ganpipe.store import layout

    cfg, store, registry = open_run(config)
    folder = layout.batch_dir(generated.batch_id)
    with progress_artifacts():
        return filter_batch(cfg, store, folder, _trained_model(store, trained), registry)


@task(name="report", cache_key_fn=content_key, **CACHED, **IO_RETRIES)
def report_task(
    config: dict[str, Any], trained: TrainResult, filtered: FilterResult
) -> ReportResult:
    from ganpipe.stages.report import report
    from ganpipe.store import layout

    cfg, store, registry = open_run(config)
    folder = layout.batch_dir(filtered.batch_id)
    return report(cfg, store, folder, _trained_model(store, trained), registry)


def markers(cfg: Config, store: RunStore, fingerprint: str) -> dict[str, str | None]:
    """What the styles and train stages write last, for this config and data: a cached task
    result is trusted only while its marker is in the store."""
    from ganpipe.stages.train import planned_version
    from ganpipe.store import layout

    version = planned_version(cfg, store, fingerprint)
    styles = layout.StyleFiles(layout.styles_dir(fingerprint, cfg.style.encoder))
    model = layout.ModelFiles(layout.model_dir(cfg.model_name, version)) if version else None
    return {"styles": styles.table_json, "train": model.training if model else None}


def batch_markers(cfg: Config, store: RunStore, trained: TrainResult) -> dict[str, str | None]:
    """The same for the batch stages, once the model is known."""
    from ganpipe.errors import GanpipeError
    from ganpipe.stages.generate import plan_batch
    from ganpipe.store import layout

    try:
        folder = plan_batch(cfg, store, model=_trained_model(store, trained)).folder
    except GanpipeError:
        return dict.fromkeys(("generate", "filter", "report"))
    files = layout.BatchFiles(folder)
    return {"generate": files.manifest, "filter": files.filter, "report": files.report}


@secret_safe_flow(name="ganpipe-pipeline")
def pipeline(config: dict[str, Any]) -> dict[str, Any]:
    """Run every stage on one config (a dict of the YAML sections) and return the summary:
    ``dataset_fingerprint``, ``model_uri``, ``batch_uri``, ``report_uri``, ``metrics``,
    ``counts``. A stage whose inputs and config are unchanged since a finished run is not run
    again (see flows/caching.py); ingestion always looks for new data."""
    cfg = validated_config(config)  # fail before any work
    store = RunStore.from_config(cfg)
    ingested = ingest_task(config)
    done = markers(cfg, store, ingested.fingerprint)
    styled = run_cached(styles_task, store, done["styles"], config=config, ingested=ingested)
    trained = run_cached(train_task, store, done["train"], config=config, styled=styled)
    done = batch_markers(cfg, store, trained)
    generated = run_cached(generate_task, store, done["generate"], config=config, trained=trained)
    filtered = run_cached(filter_task, store, done["filter"], config=config, trained=trained,
                          generated=generated)  # fmt: skip
    reported = run_cached(report_task, store, done["report"], config=config, trained=trained,
                          filtered=filtered)  # fmt: skip
    summary = _summary(ingested, styled, trained, generated, filtered, reported)
    _publish(summary, filtered)
    return summary


def _summary(
    ingested: IngestResult,
    styled: StylesResult,
    trained: TrainResult,
    generated: GenerateResult,
    filtered: FilterResult,
    reported: ReportResult,
) -> dict[str, Any]:
    """The flow's return value: the stage records as plain JSON, for Prefect to store and for
    callers (``ganpipe run``) to print."""
    return {
        "dataset_fingerprint": ingested.fingerprint,
        "model_uri": trained.uri,
        "batch_uri": generated.uri,
        "report_uri": reported.uri,
        "metrics": dict(reported.metrics),
        # how long training took here: what a caller needs to plan a longer run on this machine
        "train": {"seconds": trained.seconds, "images_per_second": trained.images_per_second},
        "counts": {
            "inputs": ingested.counts["inputs"],
            "accepted": ingested.counts["accepted"],
            "rejected": ingested.counts["rejected"],
            "styles": len(styled.names),
            "train_steps": trained.steps_done,
            "generated": generated.count,
            "kept": filtered.kept,
        },
    }


def _publish(summary: dict[str, Any], filtered: FilterResult) -> None:
    """Figures of the run in the Prefect UI."""
    create_table_artifact(
        key="ganpipe-run-figures",
        table=[
            {"figure": k, "value": v}
            for k, v in {**summary["counts"], **summary["metrics"]}.items()
        ],
        description="ganpipe pipeline: counts and metrics",
    )
    reasons = ", ".join(f"{k}: {v}" for k, v in filtered.rejected_by_reason.items()) or "none"
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
