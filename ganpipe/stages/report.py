"""Report stage: the one page a person opens first.

``report.html`` is self-contained (images embedded as data URIs, charts as inline SVG) so it can
be mailed, attached to a ticket or opened straight from a bucket. A batch's report shows, per
style, real exemplars beside kept samples and rejected samples with their reasons, then
interpolation strips between styles, the loss curves, the batch's figures and the model's
evaluation. A model's report (``models/<name>/<version>/report.html``) shows what the model makes
of each style, interpolation strips, the sample grids taken during training, the loss curves and
its evaluation. The figures also go to ``metrics.json`` for machines.
Drawing (figures, charts, the template environment) is ``report_pages``.

This module gathers the data; the pages are jinja2 templates (``ganpipe/templates``), so a team
can restyle or reword them without forking (``report.templates``). Templates receive plain
values only (names, numbers, data URIs) and autoescape them, so nothing in the data can add
markup or run; the templates themselves are code and run as such.
"""

from __future__ import annotations

import posixpath
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from ganpipe.config import Config
from ganpipe.contracts import ConditionalGenerator, supports
from ganpipe.data.dataset import load_dataset, to_pixels
from ganpipe.domain.style_table import StyleTable
from ganpipe.generation.render import latent
from ganpipe.registry import Registry, load_registry
from ganpipe.stages.filter import batch_context
from ganpipe.stages.report_pages import (
    Figure,
    Strips,
    figure,
    loss_chart,
    png_figure,
    render_page,
    template_environment,
)
from ganpipe.stats import metrics as m
from ganpipe.store import RunStore, layout
from ganpipe.store.checkpoints import load_network

SHOW = 8  # images per row
FRAMES = 8  # frames of an interpolation strip


@dataclass
class ReportResult:
    uri: str
    metrics: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def report(
    config: Config,
    store: RunStore,
    batch_folder: str,
    model,
    registry: Registry | None = None,
    out: RunStore | None = None,
) -> ReportResult:
    """``report.html`` and ``metrics.json`` in the batch's folder (``out``, when the batch is
    written elsewhere than the store it reads from)."""
    env = template_environment(config)  # a bad template folder fails before any work
    registry = registry or load_registry(config)
    out = out or store
    files = layout.BatchFiles(batch_folder)
    manifest, meta, ctx = batch_context(config, store, batch_folder, model, registry, out)
    training = _read_optional_json(model.store, layout.ModelFiles(model.folder).training)
    figures = _batch_figures(manifest, ctx, store, meta, training)
    out.write_json(files.metrics, figures)

    strip = None
    if out.exists(files.strip):  # an interpolation batch
        strip = png_figure(out.read_bytes(files.strip), "interpolation strip")
    generator, _ = load_network(model.store, model.folder, "generator", registry)
    page = render_page(
        env,
        "batch_report.html.j2",
        batch_id=posixpath.basename(batch_folder),
        model=meta["model"],
        version=meta["version"],
        dataset=config.dataset.name,
        fingerprint=meta["dataset_fingerprint"],
        kept=int(figures["kept"]),
        candidates=int(figures["candidates"]),
        styles=_batch_styles(manifest, ctx),
        reasons=_reasons(manifest),
        strip=strip,
        strips=_strips(generator, ctx.table),
        losses=loss_chart(_read_metrics(model.store, model.folder)),
        figures=figures,
        stopped_early=_stopped_early(training),
        evaluation=_evaluation(model),
    )
    return ReportResult(out.write_text(files.report, page), figures)


def _batch_figures(manifest, ctx, store: RunStore, meta: dict, training: dict | None) -> dict:
    """The batch's numbers, for ``metrics.json`` and the page."""
    table, styles_idx = ctx.table, ctx.styles
    fake_e, real_e = ctx.fake_embeddings(), ctx.real_embeddings()
    kept = torch.tensor(manifest["kept"].to_numpy(dtype=bool))
    figures: dict[str, float] = {
        "candidates": float(len(manifest)),
        "kept": float(kept.sum()),
        "kept_fraction": float(kept.float().mean()),
        "style_accuracy": m.style_accuracy(fake_e, styles_idx, table.centroids),
        "frechet_distance": m.frechet_distance(real_e, fake_e) if len(fake_e) > 1 else float("nan"),
        "diversity_fake": m.diversity(fake_e, styles_idx),
        "diversity_real": m.diversity(real_e, ctx.real_styles),
    }
    if kept.any():
        figures["style_accuracy_kept"] = m.style_accuracy(
            fake_e[kept], styles_idx[kept], table.centroids
        )
    styles_quality = _styles_quality(store, meta, table.encoder)
    figures.update({f"styles_{k}": v for k, v in styles_quality.items()})
    figures.update(_training_figures(training))
    return figures


def _training_figures(training: dict | None) -> dict[str, float]:
    if not training:
        return {}
    return {
        "train_steps": float(training["steps_done"]),
        "train_images_per_second": float(training["images_per_second"]),
    }


def _batch_styles(manifest, ctx) -> list[dict[str, Any]]:
    """Per style: real exemplars, then up to SHOW kept and SHOW rejected samples."""
    fake_px = to_pixels(ctx.images)
    table, sections = ctx.table, []
    for s, name in enumerate(table.names):
        ex = ctx.dataset.load_pixels(ctx.dataset.rows_for(table.exemplars[s][:SHOW]))
        mine = manifest.index[manifest["style"] == name].to_numpy()
        kept = [i for i in mine if manifest.at[i, "kept"]]
        rejected = [i for i in mine if not manifest.at[i, "kept"]][:SHOW]
        sections.append(
            {
                "name": name,
                "real_count": table.sizes[s],
                "asked": len(mine),
                "kept": len(kept),
                "exemplars": [figure(px) for px in ex],
                "kept_samples": [
                    figure(fake_px[i], f"seed {manifest.at[i, 'seed']}") for i in kept[:SHOW]
                ],
                "rejected_samples": [
                    figure(fake_px[i], str(manifest.at[i, "reject_reason"])) for i in rejected
                ],
            }
        )
    return sections


def _reasons(manifest) -> list[dict[str, Any]]:
    total = len(manifest)
    return [
        {
            "reason": str(k),
            "count": int(v),
            "share": v / total,
        }
        for k, v in manifest["reject_reason"].value_counts().items()
    ]


def model_report(
    config: Config, store: RunStore, model, registry: Registry | None = None
) -> ReportResult:
    """``report.html`` in the model's folder: what the model makes of each style (seeds 0 to
    7, the same latents in every style), interpolation strips, training progress and its
    evaluation (``ganpipe evaluate`` writes it; the page says so when it is missing)."""
    env = template_environment(config)
    registry = registry or load_registry(config)
    files = layout.ModelFiles(model.folder)
    generator, meta = load_network(model.store, model.folder, "generator", registry)
    table = StyleTable.from_json(meta["styles"])
    dataset = load_dataset(store, config.dataset.name, meta["dataset_fingerprint"])
    training = _read_optional_json(model.store, files.training)
    figures = _training_figures(training)
    page = render_page(
        env,
        "model_report.html.j2",
        model=meta["model"],
        version=meta["version"],
        dataset=config.dataset.name,
        fingerprint=meta["dataset_fingerprint"],
        style_count=len(table.names),
        steps=meta.get("steps", "?"),
        styles=_model_styles(generator, table, dataset),
        strips=_strips(generator, table),
        grids=_training_grids(model),
        losses=loss_chart(_read_metrics(model.store, model.folder)),
        figures=figures,
        stopped_early=_stopped_early(training),
        evaluation=_evaluation(model),
    )
    return ReportResult(model.store.write_text(files.report, page), figures)


@torch.inference_mode()
def _model_styles(generator, table: StyleTable, dataset) -> list[dict[str, Any]]:
    """Per style: real exemplars, and seeds 0 to SHOW-1 rendered in that style."""
    z = torch.stack([latent(seed, generator.z_dim) for seed in range(SHOW)])
    sections = []
    for s, name in enumerate(table.names):
        ex = dataset.load_pixels(dataset.rows_for(table.exemplars[s][:SHOW]))
        px = to_pixels(generator(z, torch.full((SHOW,), s)))
        sections.append(
            {
                "name": name,
                "real_count": table.sizes[s],
                "exemplars": [figure(p) for p in ex],
                "generated": [figure(p, f"seed {i}") for i, p in enumerate(px)],
            }
        )
    return sections


def _training_grids(model) -> list[Figure]:
    """The last four sample grids taken during training (``samples/step-XXXXXXXX.png``)."""
    # layout names each grid (ModelFiles.step_samples) but not their folder; it is that
    # file's folder.
    folder = posixpath.dirname(layout.ModelFiles(model.folder).step_samples(0))
    names = sorted(model.store.listdir(folder))
    return [
        png_figure(
            model.store.read_bytes(posixpath.join(folder, n)),
            n.removesuffix(".png").replace("-", " "),
        )
        for n in names[-4:]
    ]


@torch.inference_mode()
def _strips(generator, table: StyleTable) -> Strips:
    """One strip per pair of neighbouring styles: a fixed latent while the conditioning moves
    from one style to the next (what a style blend looks like for this model)."""
    n = len(table.names)
    if n < 2:
        return Strips([], "one_style")
    if not supports(generator, ConditionalGenerator):
        return Strips([], "cannot_blend")
    z = latent(0, generator.z_dim).expand(FRAMES, -1)
    t = torch.linspace(0, 1, FRAMES)[:, None]
    rows = []
    pairs = [(a, (a + 1) % n) for a in range(n if n > 2 else 1)]  # two styles: one strip
    onehot = torch.eye(n)
    for a, b in pairs:
        cond = generator.condition(torch.lerp(onehot[a].expand(FRAMES, -1),
                                              onehot[b].expand(FRAMES, -1), t))  # fmt: skip
        px = to_pixels(generator.render(z, cond))
        label = f"{table.names[a]} → {table.names[b]}"
        rows.append((label, [figure(p) for p in px]))
    return Strips(rows)


def _evaluation(model) -> dict[str, Any]:
    """``evaluation.json`` as table rows; ``missing`` when ``ganpipe evaluate`` has not run."""
    found = _read_optional_json(model.store, layout.ModelFiles(model.folder).evaluation)
    if not found:
        return {"missing": True, "model_uri": model.uri}
    spaces = found["spaces"]
    artefacts = found.get("artefacts", {})  # evaluations written before artefacts have none
    per_style = {
        name: {**values, **{f"{k} (x real)": v for k, v in artefacts.get(name, {}).items()}}
        for name, values in spaces[found["features"]]["per_style"].items()
    }
    columns = list(next(iter(per_style.values()))) if per_style else []
    return {
        "missing": False,
        "samples": found["samples"],
        "real_images": found["real_images"],
        "spaces": list(spaces),
        "metrics": [
            {
                "name": k,
                "cells": [spaces[s]["metrics"].get(k, float("nan")) for s in spaces],
            }
            for k in found["metrics"]
        ],
        "features": found["features"],
        "columns": columns,
        "per_style": [
            {"name": name, "cells": [values.get(c) for c in columns]}
            for name, values in per_style.items()
        ],
    }


def _stopped_early(training: dict | None) -> bool:
    return bool(training and training["steps_done"] < training["steps_target"])


def _read_optional_json(store: RunStore, rel: str) -> dict | None:
    return store.read_json(rel) if store.exists(rel) else None


def _read_metrics(store: RunStore, folder: str):
    rel = layout.ModelFiles(folder).metrics
    return store.read_parquet(rel) if store.exists(rel) else None


def _styles_quality(store: RunStore, meta: dict, encoder: str) -> dict[str, float]:
    folder = layout.styles_dir(meta["dataset_fingerprint"], encoder)
    data = _read_optional_json(store, layout.StyleFiles(folder).table_json)
    return dict(data["result"].get("quality", {})) if data else {}
