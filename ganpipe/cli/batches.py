"""Commands on a generated batch: ``filter`` and ``report`` (also a model's report)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ganpipe.cli.common import (
    BatchOpt,
    ConfigArg,
    SetOpt,
    load,
    model_at,
    out,
    print_record,
    with_progress,
)


def _on_planned_batch(
    config: Optional[Path], overrides: list[str], stage_name: str, batch: Optional[str] = None
):
    """Run the filter or report stage on the batch at ``batch``, or else on the one that
    ``generate`` made for this config; the stage's result."""

    def body():
        from ganpipe.registry import load_registry
        from ganpipe.stages.filter import filter_batch, open_batch
        from ganpipe.stages.generate import planned_batch
        from ganpipe.stages.report import report as report_stage
        from ganpipe.store import RunStore

        stage = {"filter": filter_batch, "report": report_stage}[stage_name]
        cfg = load(config, overrides)
        store, registry = RunStore.from_config(cfg), load_registry(cfg)
        if batch:
            model, target, folder = open_batch(batch, cfg.store.storage_options)
            return stage(cfg, store, folder, model, registry, out=target)
        model, folder = planned_batch(cfg, store, registry)
        return stage(cfg, store, folder, model, registry)

    return with_progress(body)


def filter_(
    config: Optional[Path] = ConfigArg, set_: list[str] = SetOpt, batch: Optional[str] = BatchOpt
) -> None:
    """Score a generated batch with the quality filters and mark what is kept."""
    print_record("filtered", _on_planned_batch(config, set_, "filter", batch).to_dict())


def report(
    config: Optional[Path] = ConfigArg,
    set_: list[str] = SetOpt,
    batch: Optional[str] = BatchOpt,
    model: Optional[str] = typer.Option(
        None,
        "--model",
        help="Report on a model version instead of a batch: a model folder URI, or 'current'.",
    ),
) -> None:
    """Write report.html for a generated batch (or, with --model, for a trained model) and
    print its path."""
    if model is None:
        result = _on_planned_batch(config, set_, "report", batch)
    else:

        def body():
            from ganpipe.domain.model_pointers import current_model
            from ganpipe.stages.report import model_report
            from ganpipe.store import RunStore

            cfg = load(config, set_)
            store = RunStore.from_config(cfg)
            ref = current_model(cfg, store) if model == "current" else model_at(model, cfg)
            return model_report(cfg, store, ref)

        result = with_progress(body)
    out.print(f"report: {result.uri}", highlight=False, soft_wrap=True)
