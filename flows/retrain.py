"""The ``retrain`` flow: what a schedule runs when new data may have landed.

ingest -> (stop if a model was already trained on exactly this data) -> styles -> train ->
evaluate -> promote the challenger only if it is not worse than the current model (champion)
beyond ``retrain.tolerance`` on the ``retrain.gate`` metrics. Wiring only: the gate
(evaluations, the rule, promotion, the record) is the plain function
``ganpipe.stages.gate.gate``. Stage records stay typed (``IngestResult``, ``TrainResult``,
``EvaluationResult``, ``Decision``) until ``_summary`` turns them into the flow's plain result.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from ganpipe.store import RunStore
from ganpipe_flows.caching import run_cached
from ganpipe_flows.pipeline import (
    IO_RETRIES,
    ingest_task,
    markers,
    open_run,
    secret_safe_flow,
    styles_task,
    train_task,
    validated_config,
)

if TYPE_CHECKING:
    from ganpipe.stages.evaluate import EvaluationResult
    from ganpipe.stages.gate import Decision
    from ganpipe.stages.report import ReportResult
    from ganpipe.stages.train import TrainResult


@task(name="find-trained-model", cache_policy=NO_CACHE, **IO_RETRIES)
def trained_model_task(config: dict[str, Any], fingerprint: str) -> str | None:
    from ganpipe.stages.gate import trained_version_for

    cfg, store, _ = open_run(config)
    return trained_version_for(store, cfg.model_name, fingerprint)


@task(name="evaluate", cache_policy=NO_CACHE, **IO_RETRIES)
def evaluate_task(config: dict[str, Any], model_uri: str | None = None) -> EvaluationResult:
    """Evaluate the model at ``model_uri`` (default: the current one)."""
    from ganpipe.domain.model_pointers import ModelRef
    from ganpipe.stages.evaluate import evaluate
    from ganpipe.store import RunStore

    cfg, store, registry = open_run(config)
    model = None
    if model_uri is not None:
        model = ModelRef(RunStore(model_uri, cfg.store.storage_options), "")
    return evaluate(cfg, store, model, registry)


@task(name="model-report", cache_policy=NO_CACHE, **IO_RETRIES)
def model_report_task(config: dict[str, Any], model_uri: str) -> ReportResult:
    from ganpipe.domain.model_pointers import ModelRef
    from ganpipe.stages.report import model_report
    from ganpipe.store import RunStore

    cfg, store, registry = open_run(config)
    model = ModelRef(RunStore(model_uri, cfg.store.storage_options), "")
    return model_report(cfg, store, model, registry)


@task(name="gate", cache_policy=NO_CACHE, **IO_RETRIES)
def gate_task(config: dict[str, Any], trained: TrainResult) -> Decision:
    """``ganpipe.stages.gate.gate``: evaluate challenger and champion alike, decide, promote
    the challenger if it won and record the decision beside it."""
    from ganpipe.stages.gate import gate

    cfg, store, registry = open_run(config)
    decision = gate(cfg, store, trained, registry)
    get_run_logger().info("%s %s: %s", decision.action, decision.challenger,
                          "; ".join(decision.reasons))  # fmt: skip
    return decision


@secret_safe_flow(name="ganpipe-retrain")
def retrain(config: dict[str, Any], force: bool = False) -> dict[str, Any]:
    """Retrain on new data and promote only a model that is not worse. Returns a summary with
    ``action`` (skipped, promoted or kept), the dataset fingerprint, the model URI and both
    sets of metrics. ``force`` trains even when a model for this data exists."""
    cfg = validated_config(config)  # fail before any work
    store = RunStore.from_config(cfg)
    config, cfg = _warm_start_from_champion(config, cfg, store)
    ingested = ingest_task(config)
    fingerprint = ingested.fingerprint
    summary: dict[str, Any] = {"dataset_fingerprint": fingerprint, "counts": dict(ingested.counts)}
    existing = None if force else trained_model_task(config, fingerprint)
    if existing is not None:
        reason = f"model version {existing} was already trained on this data"
        summary.update(action="skipped", model_version=existing, reason=reason)
        get_run_logger().info("nothing to do: %s", summary["reason"])
        _publish(summary)
        return summary
    done = markers(cfg, store, fingerprint)
    styled = run_cached(styles_task, store, done["styles"], config=config, ingested=ingested)
    trained = run_cached(train_task, store, done["train"], config=config, styled=styled,
                         promote=False)  # fmt: skip
    evaluate_task(config, trained.uri)  # the model's own evaluation.json, for its report
    decision = gate_task(config, trained)
    reported = model_report_task(config, trained.uri)
    summary.update(_summary(trained, decision, reported))
    _publish(summary)
    return summary


def _warm_start_from_champion(config: dict[str, Any], cfg, store: RunStore):
    """``train.init: auto`` becomes the champion here (when it has the same architecture): a
    retrain after a little new data continues from production's model rather than from
    scratch. Resolved once, before any stage, so every task trains the same version."""
    from ganpipe.training.warm_start import start_for_retrain

    start = start_for_retrain(cfg, store)
    if start == cfg.train.init:
        return config, cfg
    config = {**config, "train": {**config.get("train", {}), "init": start}}
    return config, validated_config(config)


def _summary(trained: TrainResult, decision: Decision, reported: ReportResult) -> dict[str, Any]:
    """The flow's result after a gate decision, as plain JSON for Prefect and ``ganpipe
    retrain``."""
    return {
        "action": decision.action,
        "model_version": trained.version,
        "model_uri": trained.uri,
        "champion": decision.champion,
        "reasons": list(decision.reasons),
        "challenger_metrics": dict(decision.challenger_metrics),
        "champion_metrics": dict(decision.champion_metrics),
        "space_hash": decision.space_hash,
        "evaluated_on": decision.dataset_fingerprint,
        "per_style": dict(decision.per_style),
        "report_uri": reported.uri,
    }


def _publish(summary: dict[str, Any]) -> None:
    """The decision and both sets of metrics, in the Prefect UI."""
    chal, champ = summary.get("challenger_metrics", {}), summary.get("champion_metrics", {})
    rows = [
        {"metric": k, "challenger": chal.get(k), "champion": champ.get(k)}
        for k in sorted(set(chal) | set(champ))
    ]
    rows.insert(0, {"metric": "action", "challenger": summary["action"],
                    "champion": summary.get("champion")})  # fmt: skip
    create_table_artifact(
        key="ganpipe-retrain-decision", table=rows, description="ganpipe retrain: decision"
    )
    lines = [f"# ganpipe retrain: {summary['action']}", "",
             f"- dataset fingerprint: `{summary['dataset_fingerprint']}`"]  # fmt: skip
    if "reason" in summary:
        lines.append(f"- {summary['reason']}")
    lines += [f"- {r}" for r in summary.get("reasons", [])]
    create_markdown_artifact(
        key="ganpipe-retrain-summary", markdown="\n".join(lines) + "\n",
        description="ganpipe retrain summary",
    )  # fmt: skip
