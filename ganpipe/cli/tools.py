"""Commands around the pipeline: ``plugins``, ``config``, ``demo-data``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ganpipe.cli.common import ConfigArg, SetOpt, guard, load, out


def plugins(config: Optional[Path] = ConfigArg, set_: list[str] = SetOpt) -> None:
    """List every registered component and the plugin that supplied it."""

    def body():
        from ganpipe.registry import load_registry

        return load_registry(load(config, set_)).all()

    components = guard(body)
    from rich.table import Table

    table = Table("kind", "name", "plugin", title="ganpipe components")
    for c in components:
        table.add_row(c.kind, c.name, c.plugin)
    out.print(table)


def show_config(config: Optional[Path] = ConfigArg, set_: list[str] = SetOpt) -> None:
    """Validate the config and print it fully resolved (defaults and overrides applied)."""
    cfg = guard(lambda: load(config, set_))
    out.print(cfg.to_yaml(), highlight=False, end="")


def demo_data(
    target: Path = typer.Argument(..., help="Folder to write the demo images into."),
    per_style: int = typer.Option(64, min=1, help="Images per style."),
) -> None:
    """Write the built-in demo dataset as PNG files, one sub-folder per style."""

    def body():
        from ganpipe.data.demo import STYLES, write_demo_dataset

        write_demo_dataset(target, per_style)
        return len(STYLES) * per_style

    n = guard(body)
    out.print(f"wrote {n} images to {target}")
