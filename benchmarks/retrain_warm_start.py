"""Warm start against scratch after new data lands (the scheduled-retraining issue).

A champion is trained from scratch on five demo styles. Then the collection grows by 20% and a
sixth style appears; its styles are found again (the five keep their names). Two challengers
train on the grown data: one from scratch, one warm-started from the champion
(``train.init=champion``). Each is measured at several points of its training the way the
retrain gate measures: in the pinned feature space, on the grown data's held-out images, the
same seeds. The question is how many minutes of training each needs to reach the champion's
figures (FD, coverage and style accuracy within ``retrain.tolerance``).

Training minutes are the training loop's own seconds (``TrainResult.seconds``), summed over the
segments of a curve; a segment resumes the previous segment's last checkpoint.

    python benchmarks/retrain_warm_start.py [--champion-steps 600] [--out benchmarks/out/warm]
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from ganpipe.config import load_config
from ganpipe.data import demo
from ganpipe.domain.model_pointers import ModelRef, champion, promote
from ganpipe.stages.evaluate import evaluate
from ganpipe.stages.ingest import ingest
from ganpipe.stages.styles import styles
from ganpipe.stages.train import train
from ganpipe.store import RunStore, layout

GATED = ("fd", "coverage", "style_accuracy")


def write(folder: Path, names: list[str], per_style: int, start: int = 0) -> None:
    for name in names:
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(start, start + per_style):
            demo.render(name, i, size=64).save(folder / name / f"{i:03d}.png")


def reaches(figures: dict, target: dict, tolerance: float) -> bool:
    low, high = 1 - tolerance, 1 + tolerance
    return (figures["fd"] <= target["fd"] * high
            and figures["coverage"] >= target["coverage"] * low
            and figures["style_accuracy"] >= target["style_accuracy"] * low)  # fmt: skip


def curve(base: list[str], store: RunStore, points: list[int], init: str, fingerprint: str,
          extra: tuple[str, ...] = ()):  # fmt: skip
    """(minutes, figures) after each number of steps in ``points``, one resumed segment each."""
    rows, minutes, resume = [], 0.0, "never"
    for steps in points:
        cfg = load_config(None, [*base, f"train.steps={steps}", f"train.init={init}",
                                 f"train.resume={resume}", *extra])  # fmt: skip
        result = train(cfg, store)
        minutes += result.seconds / 60
        folder = layout.model_dir(cfg.model_name, result.version)
        figures = evaluate(cfg, store, ModelRef(store, folder), against=fingerprint,
                           write=False).metrics  # fmt: skip
        rows.append((steps, minutes, figures))
        print(
            f"  {init:<8} {steps:>5} steps {minutes:5.2f} min  "
            + "  ".join(f"{k} {figures[k]:.3f}" for k in GATED),
            flush=True,
        )
        resume = store.uri(f"{folder}/checkpoints/step-{steps:08d}.pt")
    return rows


def plot(curves: dict[str, list], target: float, path: Path) -> None:
    """FD against training minutes, both curves and the champion's FD as a line (PIL only)."""
    w, h, pad = 640, 360, 50
    img = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(img)
    xs = [m for rows in curves.values() for _, m, _ in rows]
    ys = [f["fd"] for rows in curves.values() for _, _, f in rows] + [target]
    x_max, y_max = max(xs) * 1.05, max(ys) * 1.1

    def at(x: float, y: float) -> tuple[float, float]:
        return pad + x / x_max * (w - 2 * pad), h - pad - y / y_max * (h - 2 * pad)

    draw.line([at(0, 0), at(x_max, 0)], fill="black")
    draw.line([at(0, 0), at(0, y_max)], fill="black")
    for i in range(5):  # tick labels
        x, y = x_max * i / 4, y_max * i / 4
        draw.text((at(x, 0)[0] - 10, h - pad + 3), f"{x:.2f}", fill="black")
        draw.text((5, at(0, y)[1] - 6), f"{y:.3f}", fill="black")
    draw.line([at(0, target), at(x_max, target)], fill="grey")
    draw.text(at(0.02 * x_max, target), "champion FD", fill="grey")
    for (name, rows), colour in zip(curves.items(), ["#c0392b", "#2471a3", "#7f8c8d"]):
        points = [at(m, f["fd"]) for _, m, f in rows]
        draw.line(points, fill=colour, width=2)
        for p in points:
            draw.ellipse([p[0] - 3, p[1] - 3, p[0] + 3, p[1] + 3], fill=colour)
        legend = 10 + 14 * list(curves).index(name)
        draw.line([(w - 200, legend + 6), (w - 180, legend + 6)], fill=colour, width=2)
        draw.text((w - 175, legend), name, fill=colour)
    draw.text((w / 2 - 60, h - pad + 22), "training minutes", fill="black")
    draw.text((5, 10), "FD (pinned texture space, held-out)", fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-style", type=int, default=60)
    parser.add_argument("--champion-steps", type=int, default=600)
    parser.add_argument("--scratch", default="150,300,450,600,800")
    parser.add_argument("--warm", default="25,50,100,150,200,300,400")
    parser.add_argument("--out", default="benchmarks/out/warm")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="ganpipe-bench-warm-"))
    torch.set_num_threads(torch.get_num_threads())
    print(f"# {time.strftime('%Y-%m-%d')} · {platform.machine()}, {torch.get_num_threads()} "
          f"threads, torch {torch.__version__}")  # fmt: skip
    images = root / "images"
    names = list(demo.STYLES)
    write(images, names[:5], args.per_style)
    base = [f"store.root={root / 'store'}", f"dataset.sources=[{images}]", "style.num_styles=auto",
            "train.max_minutes=null", "train.sample_every=null", "evaluate.per_style=48",
            "dataset.val_fraction=0.2"]  # fmt: skip
    cfg = load_config(None, [*base, f"train.steps={args.champion_steps}", "train.init=scratch"])
    store = RunStore.from_config(cfg)
    ingest(cfg, store)
    styles(cfg, store)
    first = train(cfg, store)
    promote(store, first.model, first.version)
    print(f"champion: {args.champion_steps} steps in {first.seconds / 60:.2f} min")

    write(images, names[:5], args.per_style // 5, start=args.per_style)  # +20%
    write(images, names[5:], args.per_style + args.per_style // 5)  # and a new style
    ingest(cfg, store)
    found = styles(cfg, store)
    print("lineage: " + ", ".join(f"{r['style']} {r['status']}" for r in found.lineage))
    judged = evaluate(cfg, store, champion(cfg, store), against=found.fingerprint, write=False)
    target = judged.metrics
    print(f"the champion lacks {judged.settings['missing_styles']}: its figures leave them out")
    print("champion on the grown data: " + "  ".join(f"{k} {target[k]:.3f}" for k in GATED))
    curves = {
        "scratch": curve(base, store, [int(x) for x in args.scratch.split(",")], "scratch",
                         found.fingerprint),
        "warm": curve(base, store, [int(x) for x in args.warm.split(",")], "champion",
                      found.fingerprint),
        # the same without the EMA warm-up a warm start gets by default
        "warm, no EMA ramp-up": curve(base, store, [int(x) for x in args.warm.split(",")],
                                      "champion", found.fingerprint, ("train.ema_rampup=false",)),
    }  # fmt: skip
    tolerance = cfg.retrain.tolerance
    header = f"reaches champion (±{tolerance:.0%})"
    print(f"\n| start | steps | training min | FD | coverage | style acc | {header} |")
    print("|---|---|---|---|---|---|---|")
    figures = " | ".join(f"{target[k]:.3f}" for k in GATED)
    print(
        f"| champion (its own styles) | {args.champion_steps} | {first.seconds / 60:.2f} | "
        f"{figures} | – |"
    )
    reached = {}
    for name, rows in curves.items():
        for steps, minutes, f in rows:
            ok = reaches(f, target, tolerance)
            if ok and name not in reached:
                reached[name] = minutes
            print(f"| {name} | {steps} | {minutes:.2f} | {f['fd']:.3f} | {f['coverage']:.3f} | "
                  f"{f['style_accuracy']:.3f} | {'yes' if ok else 'no'} |")  # fmt: skip
    if "scratch" in reached and "warm" in reached:
        print(
            f"\nwarm start reached the champion's figures in {reached['warm']:.2f} min, "
            f"scratch in {reached['scratch']:.2f} min: "
            f"{reached['warm'] / reached['scratch']:.0%} of the time"
        )
    else:
        print(f"\nreached the champion's figures: {reached or 'neither'} (minutes)")
    out = Path(args.out) / "warm_start_fd.png"
    plot(curves, target["fd"], out)
    print(f"curve: {out}")


if __name__ == "__main__":
    sys.exit(main())
