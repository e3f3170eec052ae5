"""The ``ganpipe`` command line.

Only typer and rich load at start-up; torch and prefect load inside the commands that need them,
so ``ganpipe --help`` answers at once. Every failure a user can cause ends with one paragraph
saying what, where and how to fix it, and a non-zero exit code.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

app = typer.Typer(
    name="ganpipe",
    help="Style-diverse image generation with GANs: ingest, discover styles, train, generate, "
    "filter, report. With no CONFIG file every command runs the built-in demo.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
out = Console()

ConfigArg = typer.Argument(None, help="YAML config file; omit it to use the built-in demo config.")
SetOpt = typer.Option(
    [], "--set", "-s", help="Override a config key, e.g. --set train.steps=2000 (value is YAML)."
)
_debug = {"on": False}


@app.callback()
def _main(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
) -> None:
    _debug["on"] = debug or os.environ.get("GANPIPE_DEBUG") == "1"


# Helpers -----------------------------------------------------------------------------------


def _prefect_defaults() -> None:
    """Run offline out of the box: no telemetry, and time for a cold ephemeral API to start."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "ganpipe")


def _guard(fn: Callable[[], Any]) -> Any:
    """Run a command body; user errors become one paragraph and exit code 1."""
    from ganpipe.errors import GanpipeError

    try:
        return fn()
    except GanpipeError as exc:
        if _debug["on"]:
            raise
        console.print(f"[bold red]error:[/] {exc.message}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: rerun the same command to resume.")
        raise typer.Exit(130) from None
    except Exception as exc:
        if _debug["on"]:
            raise
        console.print(
            f"[bold red]internal error:[/] {type(exc).__name__}: {exc}. This is a ganpipe bug, "
            "not something in your config: rerun with --debug for the traceback and report it.",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(3) from None


def _load(config: Optional[Path], overrides: list[str]):
    from ganpipe.config import load_config

    return load_config(config, overrides)


class _RichReporter:
    """Shows stage progress as rich progress bars, with a rate where a stage names its unit."""

    def __init__(self):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            ProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.text import Text

        class RateColumn(ProgressColumn):
            def render(self, task) -> Text:
                unit = task.fields.get("unit")
                if not unit or not task.speed:
                    return Text("")
                return Text(f"{task.speed * unit[1]:,.0f} {unit[0]}/s", style="progress.data.speed")

        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            RateColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.tasks: dict[str, Any] = {}

    def start(self, description: str, total: int | None, unit=None):
        if not self.progress.live.is_started:
            self.progress.start()
        task_id = self.progress.add_task(description, total=total, unit=unit)
        self.tasks[description] = task_id
        return lambda n=1: self.progress.advance(task_id, n)

    def finish(self, description: str) -> None:
        self.tasks.pop(description, None)

    def stop(self) -> None:
        if self.progress.live.is_started:
            self.progress.stop()


def _with_progress(fn: Callable[[], Any], show_logs: bool = True) -> Any:
    """Run a command body with progress bars; ``show_logs`` prints ganpipe's log lines too
    (off under Prefect, whose own handler already prints them)."""
    import logging

    from rich.logging import RichHandler

    from ganpipe import progress

    reporter = _RichReporter()
    progress.set_reporter(reporter)
    logger = logging.getLogger("ganpipe")
    handler = RichHandler(console=console, show_path=False, show_time=False)
    if show_logs:
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        return _guard(fn)
    finally:
        reporter.stop()
        progress.set_reporter(None)
        logger.removeHandler(handler)


def _print_record(title: str, record: dict) -> None:
    out.print(f"[bold green]{title}[/]")
    out.print_json(json.dumps(record, default=str))


# Commands ----------------------------------------------------------------------------------


@app.command()
def run(
    config: Optional[Path] = ConfigArg,
    set_: list[str] = SetOpt,
    summary_json: Optional[Path] = typer.Option(
        None, "--summary-json", help="Also write a machine-readable summary of the run here."
    ),
) -> None:
    """Run the whole pipeline as a Prefect flow and print where the report is."""

    def body():
        cfg = _load(config, set_)
        _prefect_defaults()
        from flows.pipeline import pipeline

        return pipeline(config=cfg.model_dump(mode="json"))

    summary = _with_progress(body, show_logs=False)
    if summary_json:
        summary_json.parent.mkdir(parents=True, exist_ok=True)
        summary_json.write_text(json.dumps(summary, indent=2, default=str))
    c = summary["counts"]
    out.print(
        f"[bold green]done[/]: {c['accepted']} images in {c['styles']} styles, "
        f"{c['train_steps']} training steps, kept {c['kept']} of {c['generated']} samples."
    )
    out.print(f"report: {summary['report_uri']}", highlight=False, soft_wrap=True)


@app.command()
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
        cfg = _load(config, set_)
        _prefect_defaults()
        from flows.retrain import retrain as retrain_flow

        return retrain_flow(config=cfg.model_dump(mode="json"), force=force)

    summary = _with_progress(body, show_logs=False)
    if summary_json:
        summary_json.parent.mkdir(parents=True, exist_ok=True)
        summary_json.write_text(json.dumps(summary, indent=2, default=str))
    colour = {"promoted": "green", "kept": "yellow", "skipped": "cyan"}[summary["action"]]
    out.print(f"[bold {colour}]{summary['action']}[/]: model version {summary['model_version']}")
    for line in [summary.get("reason"), *summary.get("reasons", [])]:
        if line:
            out.print(f"  {line}", highlight=False)


@app.command()
def ingest(config: Optional[Path] = ConfigArg, set_: list[str] = SetOpt) -> None:
    """Validate and normalise the dataset sources into the store; quarantine bad inputs."""

    def body():
        from ganpipe.stages.ingest import ingest as stage
        from ganpipe.store import RunStore

        cfg = _load(config, set_)
        return stage(cfg, RunStore.from_config(cfg)).to_dict()

    result = _with_progress(body)
    from rich.table import Table

    state = "unchanged, reused" if result["reused"] else "new version"
    table = Table("", "images", title=f"dataset {result['name']}/{result['fingerprint']} ({state})")
    table.add_row("inputs", str(result["counts"]["inputs"]))
    table.add_row("[green]accepted", str(result["counts"]["accepted"]))
    table.add_row("[red]rejected", str(result["counts"]["rejected"]))
    for reason, n in result["rejected_by_reason"].items():
        table.add_row(f"  {reason}", str(n))
    table.add_row("read and decoded now", str(result["decoded"]))
    table.add_row("known from earlier runs", str(result["reused_inputs"]))
    out.print(table)
    out.print(f"manifest: {result['uri']}/manifest.parquet", highlight=False, soft_wrap=True)
    if result["counts"]["rejected"]:
        out.print(f"rejects:  {result['uri']}/rejects.parquet", highlight=False, soft_wrap=True)


@app.command()
def styles(
    config: Optional[Path] = ConfigArg,
    set_: list[str] = SetOpt,
    reference: Optional[Path] = typer.Option(
        None, "--reference", help="Also map this image to its nearest style and embedding."
    ),
) -> None:
    """Embed the dataset with the style encoder and group it into styles; print the table."""

    def body():
        from ganpipe.stages.styles import match_reference
        from ganpipe.stages.styles import styles as stage
        from ganpipe.store import RunStore

        cfg = _load(config, set_)
        store = RunStore.from_config(cfg)
        result = stage(cfg, store).to_dict()
        if reference is not None:
            if not reference.is_file():
                from ganpipe.errors import ConfigError

                raise ConfigError(
                    f"reference image {reference} does not exist", where="--reference"
                )
            result["reference"] = match_reference(cfg, store, reference.read_bytes())
        return result

    result = _with_progress(body)
    from rich.table import Table

    table = Table(
        "style", "images", title=f"styles of {result['fingerprint']} ({result['encoder']})"
    )
    for name, size in zip(result["names"], result["sizes"]):
        table.add_row(name, str(size))
    out.print(table)
    for k, v in result["quality"].items():
        out.print(f"{k}: {v:.3f}")
    if "reference" in result:
        match = result["reference"]
        out.print(
            f"reference {reference}: nearest style [bold]{match['style']}[/] "
            f"(distance {match['distance']:.3f})"
        )
        out.print_json(json.dumps({"embedding": match["embedding"]}))


@app.command()
def train(config: Optional[Path] = ConfigArg, set_: list[str] = SetOpt) -> None:
    """Train the style-conditioned GAN (resuming if possible) and promote it to current.
    Under torchrun (e.g. torchrun --nproc_per_node=2 -m ganpipe train) it trains data-parallel."""

    def body():
        from ganpipe.stages.generate import promote
        from ganpipe.store import RunStore
        from ganpipe.training.train import train as stage

        cfg = _load(config, set_)
        store = RunStore.from_config(cfg)
        result = stage(cfg, store).to_dict()
        if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 alone writes
            promote(store, result["model"], result["version"])
        return result

    _print_record("trained", _with_progress(body))


@app.command()
def generate(
    config: Optional[Path] = ConfigArg,
    set_: list[str] = SetOpt,
    model: Optional[str] = typer.Option(
        None, "--model", help="Model version URI (a folder with generator.json); default: current."
    ),
    style: Optional[list[str]] = typer.Option(
        None, "--style", help="Style name or index; repeatable."
    ),
    count: Optional[int] = typer.Option(None, "--count", min=1, help="Samples per style."),
    seed: Optional[int] = typer.Option(None, "--seed", min=0, help="First seed."),
    seeds: Optional[str] = typer.Option(
        None, "--seeds", help="Explicit seeds for every style, comma-separated (e.g. 3,17,42)."
    ),
    truncation: Optional[float] = typer.Option(
        None, "--truncation", min=0.0, max=1.0, help="psi: 1 = off, lower = nearer style means."
    ),
    between_styles: Optional[tuple[str, str]] = typer.Option(
        None, "--between-styles", help="Interpolate from style A to style B (give A B)."
    ),
    between_seeds: Optional[tuple[int, int]] = typer.Option(
        None, "--between-seeds", help="Interpolate from one seed's latent to another's."
    ),
    frames: Optional[int] = typer.Option(None, "--frames", min=2, help="Interpolation frames."),
    reference: Optional[list[str]] = typer.Option(
        None, "--reference", help="Generate in the style of this image (path or URI); repeatable."
    ),
    temperature: Optional[float] = typer.Option(
        None, "--temperature", help="Reference blend: low = nearest style, high = a mix."
    ),
    mix_style: Optional[str] = typer.Option(
        None, "--mix-style", help="Style mixing: fine levels from this style."
    ),
    mix_seed: Optional[int] = typer.Option(
        None, "--mix-seed", min=0, help="Style mixing: fine levels from this seed's latent."
    ),
    crossover: Optional[int] = typer.Option(
        None, "--crossover", min=0, help="Style mixing: first level (4x4 = 0) mixed in."
    ),
    out_uri: Optional[str] = typer.Option(
        None, "--out", help="Store URI to write the batch to; default: the run store."
    ),
) -> None:
    """Generate samples per style from the current (or given) model into a batch; or an
    interpolation (frames, strip.png, animation.gif); or samples in a reference image's style."""

    def body():
        from ganpipe.stages.generate import ModelRef
        from ganpipe.stages.generate import generate as stage
        from ganpipe.store import RunStore

        values: dict[str, Any] = {
            "per_style": count,
            "seed": seed,
            "truncation": truncation,
            "reference_temperature": temperature,
            "interpolate.styles": list(between_styles) if between_styles else None,
            "interpolate.seeds": list(between_seeds) if between_seeds else None,
            "interpolate.frames": frames,
            "mixing.style": mix_style,
            "mixing.seed": mix_seed,
            "mixing.crossover": crossover,
        }
        if seeds is not None:
            values["seeds"] = _int_list(seeds, "--seeds")
        if reference:
            values["reference"] = list(reference)
        # JSON values are YAML that stays a string: a style called "on" or "1e3" keeps its name.
        overrides = list(set_) + [
            f"generate.{k}={json.dumps(v)}" for k, v in values.items() if v is not None
        ]
        cfg = _load(config, overrides)
        store = RunStore.from_config(cfg)
        ref = ModelRef(RunStore(model, cfg.store.storage_options), "") if model else None
        target = RunStore(out_uri, cfg.store.storage_options) if out_uri else None
        return stage(cfg, store, model=ref, styles=style, out=target).to_dict()

    _print_record("generated", _with_progress(body))


BatchOpt = typer.Option(
    None,
    "--batch",
    help="A batch folder to work on, local or s3:// (e.g. OUT/batches/<id> after "
    "'generate --out OUT'); default: the batch 'generate' makes from this config.",
)


def _int_list(text: str, option: str) -> list[int]:
    from ganpipe.errors import ConfigError

    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(
            f"{option} {text!r} is not a list of whole numbers", where=option, fix="e.g. 3,17,42"
        ) from None


def _on_planned_batch(
    config: Optional[Path], overrides: list[str], stage_name: str, batch: Optional[str] = None
) -> dict:
    """Run the filter or report stage on the batch at ``batch``, or else on the one that
    ``generate`` made for this config."""

    def body():
        from ganpipe.registry import load_registry
        from ganpipe.stages.filter import filter_batch, open_batch
        from ganpipe.stages.generate import planned_batch
        from ganpipe.stages.report import report as report_stage
        from ganpipe.store import RunStore

        stage = {"filter": filter_batch, "report": report_stage}[stage_name]
        cfg = _load(config, overrides)
        store, registry = RunStore.from_config(cfg), load_registry(cfg)
        if batch:
            model, target, folder = open_batch(batch, cfg.store.storage_options)
            return stage(cfg, store, folder, model, registry, out=target).to_dict()
        model, folder = planned_batch(cfg, store, registry)
        return stage(cfg, store, folder, model, registry).to_dict()

    return _with_progress(body)


@app.command(name="filter")
def filter_(
    config: Optional[Path] = ConfigArg, set_: list[str] = SetOpt, batch: Optional[str] = BatchOpt
) -> None:
    """Score a generated batch with the quality filters and mark what is kept."""
    _print_record("filtered", _on_planned_batch(config, set_, "filter", batch))


@app.command()
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
            from ganpipe.stages.generate import ModelRef, current_model
            from ganpipe.stages.report import model_report
            from ganpipe.store import RunStore

            cfg = _load(config, set_)
            store = RunStore.from_config(cfg)
            ref = (
                current_model(cfg, store)
                if model == "current"
                else ModelRef(RunStore(model, cfg.store.storage_options), "")
            )
            return model_report(cfg, store, ref).to_dict()

        result = _with_progress(body)
    out.print(f"report: {result['uri']}", highlight=False, soft_wrap=True)


@app.command()
def evaluate(
    config: Optional[Path] = ConfigArg,
    set_: list[str] = SetOpt,
    model: Optional[str] = typer.Option(
        None, "--model", help="Model version URI (a folder with generator.json); default: current."
    ),
    features: Optional[str] = typer.Option(
        None,
        "--features",
        help="Extra feature spaces, comma-separated style encoder names (e.g. contrastive); "
        "default: evaluate.features.",
    ),
) -> None:
    """Measure a model against its dataset (FD, KID, precision/recall, density/coverage, style
    accuracy, diversity) and write evaluation.json beside it."""

    def body():
        from ganpipe.stages.evaluate import evaluate as stage
        from ganpipe.stages.generate import ModelRef
        from ganpipe.store import RunStore

        overrides = list(set_)
        if features is not None:
            names = [n.strip() for n in features.split(",") if n.strip()]
            overrides.append(f"evaluate.features={json.dumps(names)}")
        cfg = _load(config, overrides)
        store = RunStore.from_config(cfg)
        ref = ModelRef(RunStore(model, cfg.store.storage_options), "") if model else None
        return stage(cfg, store, model=ref).to_dict()

    result = _with_progress(body)
    from rich.table import Table

    from ganpipe.stages.evaluate import HIGHER_IS_BETTER

    spaces = result["spaces"]
    table = Table("metric", "better", *spaces, title=f"evaluation of {result['model']}")
    for key in [*HIGHER_IS_BETTER, "kid_std"]:
        better = {True: "higher", False: "lower"}.get(HIGHER_IS_BETTER.get(key), "")
        cells = [spaces[s]["metrics"].get(key) for s in spaces]
        table.add_row(key, better, *("-" if v is None else f"{v:.4g}" for v in cells))
    out.print(table)
    primary = spaces[result["features"]]["per_style"]
    columns = next(iter(primary.values()))
    per_style = Table("style", *columns, title=f"per style ({result['features']} features)")
    for name, figures in primary.items():
        per_style.add_row(name, *("-" if v is None else f"{v:.3f}" for v in figures.values()))
    out.print(per_style)
    out.print(
        f"{result['samples']} samples vs {result['real_images']} real images; "
        f"written to {result['uri']}",
        highlight=False,
        soft_wrap=True,
    )


@app.command()
def plugins(config: Optional[Path] = ConfigArg, set_: list[str] = SetOpt) -> None:
    """List every registered component and the plugin that supplied it."""

    def body():
        from ganpipe.registry import load_registry

        return load_registry(_load(config, set_)).all()

    components = _guard(body)
    from rich.table import Table

    table = Table("kind", "name", "plugin", title="ganpipe components")
    for c in components:
        table.add_row(c.kind, c.name, c.plugin)
    out.print(table)


class PoolType(str, Enum):
    process = "process"
    kubernetes = "kubernetes"


@app.command()
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
        from flows.deploy import deploy as register

        def say(line: str) -> None:
            console.print(line, highlight=False)

        _prefect_defaults()
        return register(prefect_file, pool_type.value, name, progress=say)

    result = _guard(body)
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


@app.command(name="config")
def show_config(config: Optional[Path] = ConfigArg, set_: list[str] = SetOpt) -> None:
    """Validate the config and print it fully resolved (defaults and overrides applied)."""
    cfg = _guard(lambda: _load(config, set_))
    out.print(cfg.to_yaml(), highlight=False, end="")


@app.command(name="demo-data")
def demo_data(
    target: Path = typer.Argument(..., help="Folder to write the demo images into."),
    per_style: int = typer.Option(64, min=1, help="Images per style."),
) -> None:
    """Write the built-in demo dataset as PNG files, one sub-folder per style."""

    def body():
        from ganpipe.data.demo import STYLES, write_demo_dataset

        write_demo_dataset(target, per_style)
        return len(STYLES) * per_style

    n = _guard(body)
    out.print(f"wrote {n} images to {target}")


def main() -> None:
    # Typer prints usage errors itself (exit code 2); everything else is handled in _guard.
    app(prog_name="ganpipe")


if __name__ == "__main__":
    sys.exit(main())
