"""Report stage: the one page a person opens first.

``report.html`` is self-contained (images embedded as data URIs, charts as inline SVG) so it can
be mailed, attached to a ticket or opened straight from a bucket. Per style it shows real
exemplars beside kept samples and rejected samples with their reasons, then the loss curves and
the metrics table. The figures also go to ``metrics.json`` for machines.
"""

from __future__ import annotations

import base64
import html
import posixpath
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from ganpipe import layout
from ganpipe import metrics as m
from ganpipe.config import Config
from ganpipe.dataset import to_pixels
from ganpipe.filter import batch_context
from ganpipe.images import encode
from ganpipe.plugins import Registry, load_registry
from ganpipe.store import RunStore

SHOW = 8  # images per row


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
    registry = registry or load_registry(config)
    out = out or store
    manifest, meta, ctx = batch_context(config, store, batch_folder, model, registry, out)
    table, images, styles_idx = ctx.table, ctx.images, ctx.styles

    # Figures.
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
    training = _read_optional_json(model.store, posixpath.join(model.folder, "training.json"))
    curves = _read_metrics(model.store, model.folder)
    styles_quality = _styles_quality(store, meta, table.encoder)
    figures.update({f"styles_{k}": v for k, v in styles_quality.items()})
    if training:
        figures["train_steps"] = float(training["steps_done"])
        figures["train_images_per_second"] = float(training["images_per_second"])
    out.write_json(f"{batch_folder}/metrics.json", figures)

    # Page.
    fake_px = to_pixels(images)
    sections = []
    for s, name in enumerate(table.names):
        ex = list(ctx.dataset.load_pixels(ctx.dataset.rows_for(table.exemplars[s][:SHOW])))
        mine = manifest.index[manifest["style"] == name].to_numpy()
        kept_rows = [i for i in mine if manifest.at[i, "kept"]][:SHOW]
        rej_rows = [i for i in mine if not manifest.at[i, "kept"]][:SHOW]
        sections.append(
            _style_section(
                name,
                table.sizes[s],
                len(mine),
                len([i for i in mine if manifest.at[i, "kept"]]),
                [(px, "") for px in ex],
                [(fake_px[i], f"seed {manifest.at[i, 'seed']}") for i in kept_rows],
                [(fake_px[i], str(manifest.at[i, "reject_reason"])) for i in rej_rows],
            )
        )
    page = _page(
        title=f"ganpipe batch {posixpath.basename(batch_folder)}",
        subtitle=f"model {meta['model']}/{meta['version']} · dataset "
        f"{config.dataset.name}/{meta['dataset_fingerprint']} · "
        f"{int(figures['kept'])} of {int(figures['candidates'])} samples kept",
        sections="".join(sections),
        chart=_loss_chart(curves),
        table=_metrics_table(figures, training),
    )
    uri = out.write_text(f"{batch_folder}/report.html", page)
    return ReportResult(uri, figures)


def _read_optional_json(store: RunStore, rel: str) -> dict | None:
    return store.read_json(rel) if store.exists(rel) else None


def _read_metrics(store: RunStore, folder: str):
    rel = posixpath.join(folder, "metrics.parquet")
    return store.read_parquet(rel) if store.exists(rel) else None


def _styles_quality(store: RunStore, meta: dict, encoder: str) -> dict[str, float]:
    rel = f"{layout.styles_dir(meta['dataset_fingerprint'], encoder)}/styles.json"
    data = _read_optional_json(store, rel)
    return dict(data["result"].get("quality", {})) if data else {}


def _img(px: np.ndarray, caption: str) -> str:
    data = base64.b64encode(encode(px)).decode()
    cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    alt = html.escape(caption or "image")
    return f'<figure><img src="data:image/png;base64,{data}" alt="{alt}">{cap}</figure>'


def _row(label: str, items: list[tuple[np.ndarray, str]], empty: str) -> str:
    body = "".join(_img(px, cap) for px, cap in items) or f'<p class="empty">{empty}</p>'
    return f'<div class="row"><h3>{label}</h3><div class="imgs">{body}</div></div>'


def _style_section(name, real_count, asked, kept, exemplars, kept_items, rejected) -> str:
    return (
        f'<section class="style"><h2>{html.escape(name)}'
        f"<span>{real_count} real images · {kept} of {asked} samples kept</span></h2>"
        + _row("Real exemplars", exemplars, "no exemplars")
        + _row("Generated, kept", kept_items, "none kept")
        + _row("Generated, rejected", rejected, "none rejected")
        + "</section>"
    )


def _loss_chart(curves) -> str:
    if curves is None or curves.empty:
        return "<p class='empty'>no training metrics recorded</p>"
    w, h, pad = 640, 220, 36
    x = curves["step"].to_numpy(float)
    series = [("loss_d", "#d9480f"), ("loss_g", "#1c7ed6")]
    ys = np.concatenate([curves[k].to_numpy(float) for k, _ in series])
    lo, hi = float(np.nanmin(ys)), float(np.nanmax(ys))
    hi = hi if hi > lo else lo + 1
    x0, x1 = float(x.min()), float(x.max()) if x.max() > x.min() else float(x.min()) + 1

    def pt(xv, yv):
        return (
            pad + (xv - x0) / (x1 - x0) * (w - 2 * pad),
            h - pad - (yv - lo) / (hi - lo) * (h - 2 * pad),
        )

    lines = []
    for key, colour in series:
        pts = " ".join(f"{a:.1f},{b:.1f}" for a, b in (pt(a, b) for a, b in zip(x, curves[key])))
        lines.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{pts}"/>')
    legend = "".join(
        f'<line x1="{w - 170}" y1="{16 + 16 * i}" x2="{w - 150}" y2="{16 + 16 * i}" '
        f'stroke="{c}" stroke-width="3"/><text x="{w - 144}" y="{20 + 16 * i}">{k}</text>'
        for i, (k, c) in enumerate(series)
    )
    axes = (
        f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="#999"/>'
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}" stroke="#999"/>'
        f'<text x="{pad}" y="{h - 10}">step {int(x0)}</text>'
        f'<text x="{w - pad - 60}" y="{h - 10}">step {int(x1)}</text>'
        f'<text x="4" y="{pad}">{hi:.2f}</text><text x="4" y="{h - pad}">{lo:.2f}</text>'
    )
    return (
        f'<svg viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" '
        f'aria-label="loss curves">{axes}{"".join(lines)}{legend}</svg>'
    )


METRIC_NOTES = {
    "candidates": "samples generated",
    "kept": "samples that passed the filters and the keep policy",
    "kept_fraction": "kept / candidates",
    "style_accuracy": "samples whose nearest style centroid is the style asked for",
    "style_accuracy_kept": "the same, among kept samples",
    "frechet_distance": "Fréchet distance of samples to real images (lower is better)",
    "diversity_fake": "mean distance between samples of one style, style-encoder space",
    "diversity_real": "the same between real images of one style, for comparison",
    "styles_nmi": "agreement of discovered styles with the data's labels (1 = identical)",
    "styles_purity": "share of images whose style's majority label is their own",
    "styles_silhouette": "separation of the discovered styles (-1..1)",
    "train_steps": "training steps the model received",
    "train_images_per_second": "training throughput",
}


def _metrics_table(figures: dict[str, float], training: dict | None) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{v:.4g}</td>"
        f"<td>{html.escape(METRIC_NOTES.get(k, ''))}</td></tr>"
        for k, v in figures.items()
    )
    note = ""
    if training and training["steps_done"] < training["steps_target"]:
        note = "<p>Training stopped at its time budget before train.steps.</p>"
    return f"<table><tr><th>metric</th><th>value</th><th></th></tr>{rows}</table>{note}"


def _page(title: str, subtitle: str, sections: str, chart: str, table: str) -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font: 15px/1.45 system-ui, sans-serif; margin: 0; background: #f6f7f9; color: #222; }}
header {{ background: #1f2933; color: #fff; padding: 20px 32px; }}
header h1 {{ margin: 0 0 4px; font-size: 22px; }} header p {{ margin: 0; opacity: .8; }}
main {{ padding: 16px 32px 48px; max-width: 1200px; }}
.style {{ background: #fff; border-radius: 8px; padding: 12px 18px; margin: 16px 0;
  box-shadow: 0 1px 3px rgba(0,0,0,.08); }}
.style h2 {{ margin: 4px 0 8px; font-size: 18px; }}
.style h2 span {{ font-weight: normal; font-size: 13px; color: #667; margin-left: 12px; }}
.row {{ display: flex; align-items: center; gap: 12px; margin: 6px 0; }}
.row h3 {{ width: 150px; flex: none; font-size: 13px; font-weight: 600; color: #445; margin: 0; }}
.imgs {{ display: flex; flex-wrap: wrap; gap: 6px; }}
figure {{ margin: 0; text-align: center; }}
figure img {{ width: 80px; height: 80px; image-rendering: pixelated; border-radius: 3px;
  display: block; }}
figcaption {{ font-size: 11px; color: #667; }}
.empty {{ color: #99a; font-style: italic; margin: 0; }}
table {{ border-collapse: collapse; background: #fff; }}
td, th {{ padding: 4px 12px; border-bottom: 1px solid #e3e6ea; text-align: left; }}
td:last-child {{ color: #667; font-size: 13px; }}
svg text {{ font-size: 12px; fill: #556; }}
</style></head>
<body><header><h1>{html.escape(title)}</h1><p>{html.escape(subtitle)}</p></header>
<main>
<h2>Styles: real exemplars and generated samples</h2>
{sections}
<h2>Training losses</h2>
{chart}
<h2>Metrics</h2>
{table}
</main></body></html>
"""
