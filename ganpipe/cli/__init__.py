"""The ``ganpipe`` command line: ``app`` and ``main`` (the console script).

Commands live in modules by group (``flows``: Prefect flows; ``stages``: one stage each;
``generate``; ``batches``: filter and report; ``tools``); what they share is in ``common``.
Only typer and rich load at start-up; torch and prefect load inside the commands that need
them, so ``ganpipe --help`` answers at once.
"""

from __future__ import annotations

import os
import warnings

import typer

from ganpipe.cli import batches, flows, stages, tools
from ganpipe.cli.common import debug
from ganpipe.cli.export import export
from ganpipe.cli.generate import generate
from ganpipe.cli.project import project
from ganpipe.cli.serve import serve

app = typer.Typer(
    name="ganpipe",
    help="Style-diverse image generation with GANs: ingest, discover styles, train, generate, "
    "filter, report. With no CONFIG file every command runs the built-in demo.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _main(
    debug_: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
) -> None:
    debug["on"] = debug_ or os.environ.get("GANPIPE_DEBUG") == "1"


# In the order ``--help`` lists them: the pipeline first, then its stages, then the tools.
app.command()(flows.run)
app.command()(flows.retrain)
app.command()(stages.ingest)
app.command()(stages.styles)
app.command()(stages.train)
app.command()(generate)
app.command(name="filter")(batches.filter_)
app.command()(batches.report)
app.command()(stages.evaluate)
app.command()(export)
app.command()(project)
app.command()(serve)
app.command()(tools.plugins)
app.command()(flows.deploy)
app.command(name="config")(tools.show_config)
app.command(name="demo-data")(tools.demo_data)


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    """A warning as a person at a terminal reads it (a renamed option, say): the message,
    not the library frame that raised it."""
    return f"warning: {message}\n"


def main() -> None:
    # Typer prints usage errors itself (exit code 2); everything else is handled in guard().
    warnings.formatwarning = _one_line_warning
    app(prog_name="ganpipe")


__all__ = ["app", "main"]
