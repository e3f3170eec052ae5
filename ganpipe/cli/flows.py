"""Commands that run Prefect flows or register them: ``run``, ``retrain``, ``deploy``."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from ganpipe.cli.common import (
    ConfigArg,
    SetOpt,
    console,
    guard,
    load,
    out,
    prefect_defaults,
    with_progress,
    write_summary,
)


def run(
    config: Optional[Path] = ConfigArg,
    set_: list[str] = SetOpt,
    summary_json: Optional[Path] = typer.Option(
        None, "--summary-json", help="Also write a machine-readable summary of the run here."
    ),
) -> None:
    """Run the whole pipeline as a Prefect flow and print where the report is."""

    def body():
        cfg = load(config, set_)
        prefect_defaults()
        from ganpipe_flows.pipeline import pipeline

        return pipeline(config=cfg.model_dump(mode="json"))

    summary = with_progress(body, show_logs=False)
    write_summary(summary_json, summary)
    c = summary["counts"]
    out.print(
        f"[bold green]done[/]: {c['accepted']} images in {c['styles']} styles, "
        f"{c['train_steps']} training steps, kept {c['kept']} of {c['generated']} samples."
    )
    out.print(f"report: {summary['report_uri']}", highlight=False, soft_wrap=True)


def retrain(
    config: Optional[Path] = ConfigArg,
    set_: list[str] = SetOpt,
    force: bool = typer.Option(False, "--force", help="Train even if this data has a model."),
    summary_json: Optional[Path] = typer.Option(
        None, "--summary-json", help="Also write the decision (`action`, metrics) here."
    ),
) -> None:
    """Retrain on new data: skip if a model exists for it, else train, evaluate, and promote
    the new model only if it is not worse than the current one (retrain.gate)."""

    def body():
        cfg = load(config, set_)
        prefect_defaults()
        from ganpipe_flows.retrain import retrain as retrain_flow

        return retrain_flow(config=cfg.model_dump(mode="json"), force=force)

    summary = with_progress(body, show_logs=False)
    write_summary(summary_json, summary)
    colour = {"promoted": "green", "kept": "yellow", "skipped": "cyan"}[summary["action"]]
    out.print(f"[bold {colour}]{summary['action']}[/]: model version {summary['model_version']}")
    for line in [summary.get("reason"), *summary.get("reasons", [])]:
        if line:
            out.print(f"  {line}", highlight=False)


class PoolType(str, Enum):
    process = "process"
    kubernetes = "kubernetes"


def deploy(
    prefect_file: Path = typer.Option(
        Path("deploy/prefect.yaml"), "--prefect-file", help="The Prefect deployments file."
    ),
    pool_type: PoolType = typer.Option(
        PoolType.process,
        "--pool-type",
        help="Run them on the local process pool or the Kubernetes GPU pool (its work_pools "
        "entry in the Prefect file).",
    ),
    name: list[str] = typer.Option(
        [], "--name", "-n", help="Register only this deployment; repeat for several."
    ),
) -> None:
    """Create the work pool if missing and register the Prefect deployments (pipeline,
    scheduled retrains, generate-batch) with the server PREFECT_API_URL names."""

    def body():
        from ganpipe_flows.deploy import deploy as register

        def say(line: str) -> None:
            console.print(line, highlight=False)

        prefect_defaults()
        return register(prefect_file, pool_type.value, name, progress=say)

    result = guard(body)
    from rich.table import Table

    verb = "created" if result.pool_created else "exists"
    table = Table("deployment", "work pool", "schedule", title=f"registered with {result.api_url}")
    for d in result.deployments:
        table.add_row(d.full_name, d.work_pool, ", ".join(d.schedules) or "on demand")
    out.print(table)
    out.print(f"work pool {result.work_pool}: {verb}", highlight=False)
    if pool_type is PoolType.process:
        hint = f"GANPIPE_HOME=$PWD prefect worker start --pool {result.work_pool}"
    else:
        hint = (
            "pip install prefect-kubernetes, then where kubectl reaches the cluster: "
            f"prefect worker start --pool {result.work_pool} --type kubernetes"
        )
    out.print(f"start a worker: {hint}", highlight=False, soft_wrap=True)
