"""Commands that run one stage on the run store: ``ingest``, ``styles``, ``train``,
``evaluate``. Each prints the stage's result, read from its result object's attributes."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import typer

from ganpipe.cli.common import (
    ConfigArg,
    ModelOpt,
    SetOpt,
    load,
    model_at,
    out,
    print_record,
    with_progress,
)


def ingest(config: Optional[Path] = ConfigArg, set_: list[str] = SetOpt) -> None:
    """Validate and normalise the dataset sources into the store; quarantine bad inputs."""

    def body():
        from ganpipe.stages.ingest import ingest as stage
        from ganpipe.store import RunStore

        cfg = load(config, set_)
        return stage(cfg, RunStore.from_config(cfg))

    result = with_progress(body)
    from rich.table import Table

    from ganpipe.store import layout

    state = "unchanged, reused" if result.reused else "new version"
    table = Table("", "images", title=f"dataset {result.name}/{result.fingerprint} ({state})")
    table.add_row("inputs", str(result.counts["inputs"]))
    table.add_row("[green]accepted", str(result.counts["accepted"]))
    table.add_row("[red]rejected", str(result.counts["rejected"]))
    for reason, n in result.rejected_by_reason.items():
        table.add_row(f"  {reason}", str(n))
    table.add_row("read and decoded now", str(result.decoded))
    table.add_row("known from earlier runs", str(result.reused_inputs))
    out.print(table)
    files = layout.DatasetFiles(result.uri)
    out.print(f"manifest: {files.manifest}", highlight=False, soft_wrap=True)
    if result.counts["rejected"]:
        out.print(f"rejects:  {files.rejects}", highlight=False, soft_wrap=True)


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

        cfg = load(config, set_)
        store = RunStore.from_config(cfg)
        result = stage(cfg, store)
        if reference is None:
            return result, None
        if not reference.is_file():
            from ganpipe.errors import ConfigError

            raise ConfigError(f"reference image {reference} does not exist", where="--reference")
        return result, match_reference(cfg, store, reference.read_bytes())

    result, match = with_progress(body)
    from rich.table import Table

    table = Table("style", "id", "images",
                  title=f"styles of {result.fingerprint} ({result.encoder})")  # fmt: skip
    for name, style_id, size in zip(result.names, result.ids or result.names, result.sizes):
        table.add_row(name, style_id, str(size))
    out.print(table)
    if result.lineage:
        title = f"against the previous dataset version {result.previous}"
        lineage = Table("style", "status", "before", "after", "shift", "into", title=title)
        keys = ("style", "status", "size_before", "size_after", "shift", "into")
        for row in result.lineage:
            lineage.add_row(*("-" if row[k] is None else str(row[k]) for k in keys))
        out.print(lineage)
    for k, v in result.quality.items():
        out.print(f"{k}: {v:.3f}")
    if match is not None:
        out.print(
            f"reference {reference}: nearest style [bold]{match['style']}[/] "
            f"(distance {match['distance']:.3f})"
        )
        out.print_json(json.dumps({"embedding": match["embedding"]}))


def train(config: Optional[Path] = ConfigArg, set_: list[str] = SetOpt) -> None:
    """Train the style-conditioned GAN (resuming if possible) and promote it to current.
    Under torchrun (e.g. torchrun --nproc_per_node=2 -m ganpipe train) it trains data-parallel."""

    def body():
        from ganpipe.domain.model_pointers import promote
        from ganpipe.stages.train import train as stage
        from ganpipe.store import RunStore

        cfg = load(config, set_)
        store = RunStore.from_config(cfg)
        result = stage(cfg, store)
        if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 alone writes
            promote(store, result.model, result.version)
        return result

    print_record("trained", with_progress(body).to_dict())


def evaluate(
    config: Optional[Path] = ConfigArg,
    set_: list[str] = SetOpt,
    model: Optional[str] = ModelOpt,
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
        from ganpipe.store import RunStore

        overrides = list(set_)
        if features is not None:
            names = [n.strip() for n in features.split(",") if n.strip()]
            overrides.append(f"evaluate.features={json.dumps(names)}")
        cfg = load(config, overrides)
        return stage(cfg, RunStore.from_config(cfg), model=model_at(model, cfg))

    _print_evaluation(with_progress(body))


def _print_evaluation(result) -> None:
    """Every feature space's figures side by side, then the primary space's per style."""
    from rich.table import Table

    from ganpipe.stages.evaluate import HIGHER_IS_BETTER

    spaces = result.spaces
    table = Table("metric", "better", *spaces, title=f"evaluation of {result.model}")
    for key in [*HIGHER_IS_BETTER, "kid_std"]:
        better = {True: "higher", False: "lower"}.get(HIGHER_IS_BETTER.get(key), "")
        cells = [spaces[s]["metrics"].get(key) for s in spaces]
        table.add_row(key, better, *("-" if v is None else f"{v:.4g}" for v in cells))
    out.print(table)
    primary = spaces[result.features]["per_style"]
    columns = next(iter(primary.values()))
    per_style = Table("style", *columns, title=f"per style ({result.features} features)")
    for name, figures in primary.items():
        per_style.add_row(name, *("-" if v is None else f"{v:.3f}" for v in figures.values()))
    out.print(per_style)
    out.print(
        f"{result.samples} samples vs {result.real_images} real images; written to {result.uri}",
        highlight=False,
        soft_wrap=True,
    )
