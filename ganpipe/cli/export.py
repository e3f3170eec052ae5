"""``ganpipe export``: a model's generator as one file that runs without ganpipe."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ganpipe.cli.common import ConfigArg, SetOpt, load, model_at, print_record, with_progress


def export(
    config: Optional[Path] = ConfigArg,
    set_: list[str] = SetOpt,
    model: Optional[str] = typer.Option(
        None, "--model", help="current (default), or a model version URI."
    ),
    format_: str = typer.Option(
        "onnx", "--format", help="onnx (onnxruntime, engines, browsers) or torchscript (C++)."
    ),
    output: str = typer.Option(
        "float", "--output", help="float: NCHW in [-1, 1]; uint8: NHWC pixels."
    ),
    out_uri: Optional[str] = typer.Option(
        None,
        "--out",
        help="Folder (path or URI) for the file and model-card.json; "
        "default: export/<format> inside the model version.",
    ),  # fmt: skip
    licence: Optional[str] = typer.Option(
        None, "--licence", help="Licence written into model-card.json (e.g. CC-BY-4.0)."
    ),
) -> None:
    """Export the generator (ONNX or TorchScript) with a model card; the file is run on a
    fresh batch and checked against the generator before it is written."""

    def body():
        from ganpipe.domain.model_pointers import current_model
        from ganpipe.export import export_model
        from ganpipe.registry import load_registry
        from ganpipe.store import RunStore

        cfg = load(config, set_)
        target = RunStore(out_uri, cfg.store.storage_options, origin="--out") if out_uri else None
        ref = None if model in (None, "current") else model_at(model, cfg)
        ref = ref or current_model(cfg, RunStore.from_config(cfg))
        return export_model(ref, load_registry(cfg), format_, output, target, licence)

    print_record("exported", with_progress(body).to_dict())
