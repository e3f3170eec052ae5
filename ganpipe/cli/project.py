"""``ganpipe project``: the codes that make a model reproduce real images."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ganpipe.cli.common import SetOpt, load, model_at, print_record, with_progress


def project(
    images: list[str] = typer.Argument(..., help="Image files (paths or URIs) to project."),
    config: Optional[Path] = typer.Option(
        None, "--config", help="YAML config file; default: the built-in demo config."
    ),
    set_: list[str] = SetOpt,
    model: Optional[str] = typer.Option(
        None, "--model", help="current (default), or a model version URI."
    ),
    steps: Optional[int] = typer.Option(
        None, "--steps", min=1, help="Optimisation steps per image (project.steps)."
    ),
    out_uri: Optional[str] = typer.Option(
        None, "--out", help="Store URI for the results; default: the run store."
    ),
) -> None:
    """Find the code that reproduces each image; writes code.npz (for generate --around),
    the reconstruction, a side-by-side picture and the PSNR."""

    def body():
        from ganpipe.stages.project import project as stage
        from ganpipe.store import RunStore

        overrides = list(set_) + ([f"project.steps={steps}"] if steps is not None else [])
        cfg = load(config, overrides)
        store = RunStore.from_config(cfg)
        ref = None if model in (None, "current") else model_at(model, cfg)
        target = RunStore(out_uri, cfg.store.storage_options, origin="--out") if out_uri else None
        return stage(cfg, store, list(images), model=ref, out=target)

    results = with_progress(body)
    print_record("projected", {"projections": [r.to_dict() for r in results]})
