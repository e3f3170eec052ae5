"""Report stage: the one page a person opens first.

``report.html`` is self-contained (images embedded as data URIs, charts as inline SVG) so it can
be mailed, attached to a ticket or opened straight from a bucket. A batch's report shows, per
style, real exemplars beside kept samples and rejected samples with their reasons, then
interpolation strips between styles, the loss curves, the batch's figures and the model's
evaluation. A model's report (``models/<name>/<version>/report.html``) shows what the model makes
of each style, interpolation strips, the sample grids taken during training, the loss curves and
its evaluation. The figures also go to ``metrics.json`` for machines.
"""

from __future__ import annotations

import base64
import html
import posixpath
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from ganpipe.config import Config
from ganpipe.data.dataset import load_dataset, to_pixels
from ganpipe.data.images import encode
from ganpipe.registry import Registry, load_registry
from ganpipe.stages.filter import batch_context
from ganpipe.stages.generate import latent
from ganpipe.stages.styles import StyleTable
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
    reasons = manifest["reject_reason"].value_counts()
    parts = [
        ("Styles: real exemplars and generated samples", "".join(sections)),
        ("Why samples were rejected", _reasons_table(reasons, len(manifest))),
    ]
    if out.exists(f"{batch_folder}/strip.png"):  # an interpolation batch
        strip = out.read_bytes(f"{batch_folder}/strip.png")
        parts.append(("This batch's interpolation", _raw_img(strip, "interpolation strip")))
    generator, _ = load_network(model.store, model.folder, "generator", registry)
    parts += [
        ("Interpolation between styles", _strips(generator, table)),
        ("Training losses", _loss_chart(curves)),
        ("Batch figures", _metrics_table(figures, training)),
        ("Model evaluation", _evaluation(model)),
    ]
    page = _page(
        title=f"ganpipe batch {posixpath.basename(batch_folder)}",
        subtitle=f"model {meta['model']}/{meta['version']} · dataset "
        f"{config.dataset.name}/{meta['dataset_fingerprint']} · "
        f"{int(figures['kept'])} of {int(figures['candidates'])} samples kept",
        parts=parts,
    )
    uri = out.write_text(f"{batch_folder}/report.html", page)
    return ReportResult(uri, figures)


def model_report(
    config: Config, store: RunStore, model, registry: Registry | None = None
) -> ReportResult:
    """``report.html`` in the model's folder: what the model makes of each style (seeds 0 to
    7, the same latents in every style), interpolation strips, training progress and its
    evaluation (``ganpipe evaluate`` writes it; the page says so when it is missing)."""
    registry = registry or load_registry(config)
    generator, meta = load_network(model.store, model.folder, "generator", registry)
    table = StyleTable.from_json(meta["styles"])
    dataset = load_dataset(store, config.dataset.name, meta["dataset_fingerprint"])
    z = torch.stack([latent(seed, generator.z_dim) for seed in range(SHOW)])
    sections = []
    for s, name in enumerate(table.names):
        ex = dataset.load_pixels(dataset.rows_for(table.exemplars[s][:SHOW]))
        with torch.inference_mode():
            px = to_pixels(generator(z, torch.full((SHOW,), s)))
        sections.append(
            f'<section class="style"><h2>{html.escape(name)}'
            f"<span>{table.sizes[s]} real images</span></h2>"
            + _row("Real exemplars", [(p, "") for p in ex], "no exemplars")
            + _row("Generated", [(p, f"seed {i}") for i, p in enumerate(px)], "")
            + "</section>"
        )
    training = _read_optional_json(model.store, posixpath.join(model.folder, "training.json"))
    grids = sorted(n for n in model.store.listdir(posixpath.join(model.folder, "samples")))
    progress = "".join(
        _raw_img(model.store.read_bytes(posixpath.join(model.folder, "samples", n)),
                 n.removesuffix(".png").replace("-", " "))
        for n in grids[-4:]
    ) or "<p class='empty'>no sample grids were taken during training</p>"  # fmt: skip
    figures = {}
    if training:
        figures = {
            "train_steps": float(training["steps_done"]),
            "train_images_per_second": float(training["images_per_second"]),
        }
    parts = [
        ("Styles: real exemplars and what the model makes of them", "".join(sections)),
        ("Interpolation between styles", _strips(generator, table)),
        ("Samples during training (one row per style)", f'<div class="grids">{progress}</div>'),
        ("Training losses", _loss_chart(_read_metrics(model.store, model.folder))),
        ("Training", _metrics_table(figures, training)),
        ("Evaluation", _evaluation(model)),
    ]
    page = _page(
        title=f"ganpipe model {meta['model']}/{meta['version']}",
        subtitle=f"dataset {config.dataset.name}/{meta['dataset_fingerprint']} · "
        f"{len(table.names)} styles · {meta.get('steps', '?')} training steps",
        parts=parts,
    )
    uri = model.store.write_text(posixpath.join(model.folder, "report.html"), page)
    return ReportResult(uri, figures)


@torch.inference_mode()
def _strips(generator, table: StyleTable) -> str:
    """One strip per pair of neighbouring styles: a fixed latent while the conditioning moves
    from one style to the next (what a style blend looks like for this model)."""
    n = len(table.names)
    if n < 2:
        return "<p class='empty'>one style: nothing to interpolate</p>"
    if not all(callable(getattr(generator, a, None)) for a in ("condition", "render")):
        return "<p class='empty'>this generator cannot blend styles</p>"
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
        rows.append(_row(html.escape(label), [(p, "") for p in px], ""))
    return "".join(rows)


def _evaluation(model) -> str:
    found = _read_optional_json(model.store, posixpath.join(model.folder, "evaluation.json"))
    if not found:
        return (
            "<p class='empty'>not evaluated yet: run <code>ganpipe evaluate --model "
            f"{html.escape(model.uri)}</code></p>"
        )
    spaces = found["spaces"]
    head = "".join(f"<th>{html.escape(s)} features</th>" for s in spaces)
    keys = list(found["metrics"])
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td>"
        + "".join(f"<td>{spaces[s]['metrics'].get(k, float('nan')):.4g}</td>" for s in spaces)
        + f"<td>{html.escape(EVALUATION_NOTES.get(k, ''))}</td></tr>"
        for k in keys
    )
    per_style = spaces[found["features"]]["per_style"]
    columns = list(next(iter(per_style.values()))) if per_style else []
    style_rows = "".join(
        f"<tr><td>{html.escape(name)}</td>"
        + "".join(f"<td>{_num(values.get(c))}</td>" for c in columns)
        + "</tr>"
        for name, values in per_style.items()
    )
    return (
        f"<p>{found['samples']} samples against {found['real_images']} real images.</p>"
        f"<table><tr><th>metric</th>{head}<th></th></tr>{rows}</table>"
        f"<h3>Per style ({html.escape(found['features'])} features)</h3>"
        "<table><tr><th>style</th>"
        + "".join(f"<th>{html.escape(c)}</th>" for c in columns)
        + f"</tr>{style_rows}</table>"
    )


def _num(value) -> str:
    return "-" if value is None else f"{value:.3g}"


def _reasons_table(reasons, total: int) -> str:
    if reasons.empty:
        return "<p class='empty'>no sample was rejected</p>"
    rows = "".join(
        f"<tr><td>{html.escape(str(k))}</td><td>{int(v)}</td><td>{v / total:.0%}</td>"
        f"<td>{html.escape(REASON_NOTES.get(str(k), ''))}</td></tr>"
        for k, v in reasons.items()
    )
    return f"<table><tr><th>reason</th><th>samples</th><th>share</th><th></th></tr>{rows}</table>"


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


def _raw_img(png: bytes, caption: str) -> str:
    """An already encoded picture (a grid, a strip), shown at its own size."""
    data = base64.b64encode(png).decode()
    cap = html.escape(caption)
    return (
        f'<figure class="wide"><img src="data:image/png;base64,{data}" alt="{cap}">'
        f"<figcaption>{cap}</figcaption></figure>"
    )


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


EVALUATION_NOTES = {
    "fd": "Fréchet distance to real images (lower is better)",
    "kid": "kernel inception-style distance, unbiased (lower is better; ~0 = indistinguishable)",
    "precision": "share of samples that look like some real image",
    "recall": "share of real images some sample looks like",
    "density": "how tightly samples sit among real images (~1 for a perfect model)",
    "coverage": "share of real images with a sample close by",
    "style_accuracy": "samples nearest the style they were asked for",
    "diversity_ratio": "spread of samples within a style over that of real images",
}

REASON_NOTES = {
    "realism": "the discriminator found it less real than almost every real image",
    "style_match": "further from its style than almost every real image of that style",
    "sharpness": "blurrier than almost every real image of its style",
    "near_duplicate": "nearly identical to an earlier sample of this batch",
    "memorisation": "a near copy of a training image",
    "top_k": "passed, but not among the best k of its style",
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


def _page(title: str, subtitle: str, parts: list[tuple[str, str]]) -> str:
    body = "\n".join(f"<h2>{html.escape(h)}</h2>\n{content}" for h, content in parts)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<link rel="icon" href="data:,">
<style>
body {{ font: 15px/1.45 system-ui, sans-serif; margin: 0; background: #f6f7f9; color: #222; }}
header {{ background: #1f2933; color: #fff; padding: 20px 32px; }}
header h1 {{ margin: 0 0 4px; font-size: 22px; }} header p {{ margin: 0; opacity: .8; }}
main {{ padding: 16px 32px 48px; max-width: 1200px; }}
main > h2 {{ margin-top: 28px; }}
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
figure.wide img {{ width: auto; height: auto; max-width: 100%; }}
.grids {{ display: flex; flex-wrap: wrap; gap: 16px; }}
figcaption {{ font-size: 11px; color: #667; }}
.empty {{ color: #99a; font-style: italic; margin: 0; }}
table {{ border-collapse: collapse; background: #fff; margin: 6px 0 12px; }}
td, th {{ padding: 4px 12px; border-bottom: 1px solid #e3e6ea; text-align: left; }}
td:last-child {{ color: #667; font-size: 13px; }}
svg text {{ font-size: 12px; fill: #556; }}
</style></head>
<body><header><h1>{html.escape(title)}</h1><p>{html.escape(subtitle)}</p></header>
<main>
{body}
</main></body></html>
"""
