"""What every command shares: the consoles, the CONFIG and --set arguments, error handling
and progress bars.

Only typer and rich load here; whatever a command needs beyond them loads inside it, so
``ganpipe --help`` answers at once. Every failure a user can cause ends with one paragraph
saying what, where and how to fix it, and a non-zero exit code.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer
from rich.console import Console

if TYPE_CHECKING:
    from ganpipe.config import Config

console = Console(stderr=True)  # progress, logs and errors
out = Console()  # results

ConfigArg = typer.Argument(None, help="YAML config file; omit it to use the built-in demo config.")
SetOpt = typer.Option(
    [], "--set", "-s", help="Override a config key, e.g. --set train.steps=2000 (value is YAML)."
)
BatchOpt = typer.Option(
    None,
    "--batch",
    help="A batch folder to work on, local or s3:// (e.g. OUT/batches/<id> after "
    "'generate --out OUT'); default: the batch 'generate' makes from this config.",
)
ModelOpt = typer.Option(
    None, "--model", help="Model version URI (a folder with generator.json); default: current."
)
debug = {"on": False}  # --debug or GANPIPE_DEBUG=1: tracebacks instead of one paragraph


def load(config: Optional[Path], overrides: list[str]) -> Config:
    from ganpipe.config import load_config

    return load_config(config, overrides)


def prefect_defaults() -> None:
    """Run offline out of the box: no telemetry, and time for a cold ephemeral API to start."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "ganpipe")


def guard(fn: Callable[[], Any]) -> Any:
    """Run a command body; user errors become one paragraph and exit code 1."""
    from ganpipe.errors import GanpipeError

    try:
        return fn()
    except GanpipeError as exc:
        if debug["on"]:
            raise
        console.print(f"[bold red]error:[/] {exc.message}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: rerun the same command to resume.")
        raise typer.Exit(130) from None
    except Exception as exc:
        if debug["on"]:
            raise
        console.print(
            f"[bold red]internal error:[/] {type(exc).__name__}: {exc}. This is a ganpipe bug, "
            "not something in your config: rerun with --debug for the traceback and report it.",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(3) from None


def with_progress(fn: Callable[[], Any], show_logs: bool = True) -> Any:
    """Run a command body with progress bars; ``show_logs`` prints ganpipe's log lines too
    (off under Prefect, whose own handler already prints them)."""
    import logging

    from rich.logging import RichHandler

    from ganpipe import progress
    from ganpipe.cli.progress_bars import RichReporter

    reporter = RichReporter(console)
    progress.set_reporter(reporter)
    logger = logging.getLogger("ganpipe")
    handler = RichHandler(console=console, show_path=False, show_time=False)
    if show_logs:
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        return guard(fn)
    finally:
        reporter.stop()
        progress.set_reporter(None)
        logger.removeHandler(handler)


def print_record(title: str, record: dict) -> None:
    """A stage's result as JSON, under a title (what scripts read from stdout)."""
    out.print(f"[bold green]{title}[/]")
    out.print_json(json.dumps(record, default=str))


def write_summary(path: Optional[Path], summary: dict) -> None:
    """``--summary-json``: the flow's summary for machines, beside what people read."""
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(summary, indent=2, default=str))


def int_list(text: str, option: str) -> list[int]:
    """``3,17,42`` as whole numbers; anything else is an error naming ``option``."""
    from ganpipe.errors import ConfigError

    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(
            f"{option} {text!r} is not a list of whole numbers", where=option, fix="e.g. 3,17,42"
        ) from None


def model_at(uri: Optional[str], config: Config):
    """``--model URI`` as a model reference (None when not given: the current model)."""
    if not uri:
        return None
    from ganpipe.domain.model_pointers import ModelRef
    from ganpipe.store import RunStore

    return ModelRef(RunStore(uri, config.store.storage_options, origin="--model"), "")
