"""Quality curves at equal compute: ganpipe recipes against two independent references, judged
at snapshots along one run each, so that no recipe is judged before it has converged.

Protocol (what a GAN engineer would accept as fair):

1. **Budgets in compute.** A budget is N *reference-minutes*: before any run, each recipe's
   seconds per step is measured on the idle machine (a few dozen steps after a warm-up), and the
   budget becomes a step count per recipe. Training then runs to that count, so the results do
   not depend on what else the machine does while it trains, and ``--calibration FILE`` repeats
   a run exactly (the calibration is saved with the results).
2. **Curves, not points.** One run per recipe to the whole budget; the EMA generator is judged
   at ``--fractions`` of it (default 1/4, 1/2, 1). ganpipe's snapshots are real model versions
   (each run resumes the previous one's last checkpoint, which the resume contract makes
   bit-identical to one long run), so ``kept`` is measured by the real filter stage.
3. **Two references**, both written independently of ganpipe's networks: a plain conditional
   DCGAN the pytorch/examples way (``_examples_dcgan.py``) and the SNGAN/BigGAN-style recipe
   that reaches published CIFAR-10 figures with little data (``_strong_reference.py``).
4. **The whole table**, per style then averaged, by judges trained on real images only
   (``_judge.py``): FD, precision, recall and the lowest per-style recall, style accuracy,
   the diversity ratio, kept, and the artefact figures of ``ganpipe.stats.artefacts`` (worst
   style, relative to the real images: checkerboard energy, mean saturation, clipped share).
   Digits add modes of 1,000 and KL. Grids of every snapshot and a plot of FD and recall
   against minutes go to ``--out``; the rank correlation of kept with precision shows whether
   the filters judge the samples or the discriminator.

    python benchmarks/quality_curves.py --datasets demo,photos,digits --minutes 16
    python benchmarks/quality_curves.py --datasets photos --minutes 8 \\
        --recipe "default:" --recipe "sngan:model.generator=resnet;train.loss=hinge"
    (a recipe is NAME:key=value;key=value, ganpipe --set values separated by ;)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from _examples_dcgan import ExamplesDCGAN
from _judge import DigitJudge, StyleJudge
from _plot import line_panels
from _quality_data import demo, digits, photos
from _strong_reference import StrongReference

from ganpipe.config import load_config
from ganpipe.data.dataset import load_dataset, to_pixels, to_tensor
from ganpipe.data.images import encode, grid
from ganpipe.domain.style_table import load_styles
from ganpipe.registry import load_registry
from ganpipe.stages.ingest import ingest
from ganpipe.stages.styles import styles
from ganpipe.stages.train import train
from ganpipe.stats.artefacts import relative_artefacts
from ganpipe.store import RunStore, layout
from ganpipe.store.checkpoints import checkpoint_name, load_network

BUILDERS = {"demo": demo, "photos": photos, "digits": digits}
REFERENCES = {"plain": ExamplesDCGAN, "strong": StrongReference}


@dataclass
class Collection:
    """One collection, ingested and styled, with what every run shares."""

    name: str
    base: list[str]  # ganpipe overrides every run of this collection starts from
    store: RunStore
    pixels: torch.Tensor
    labels: torch.Tensor
    is_train: torch.Tensor
    num_styles: int


def prepare(name: str, work: Path, extra: list[str]) -> Collection:
    """Build the collection, ingest it and find its styles (both are reused on a rerun)."""
    built = BUILDERS[name](work / "data")
    base = [f"store.root={work / f'store-{name}'}", f"dataset.name={name}", *built.overrides,
            *extra]  # fmt: skip
    cfg = load_config(None, base)
    store = RunStore.from_config(cfg)
    ingest(cfg, store)
    styles(cfg, store)
    dataset = load_dataset(store, cfg.dataset.name)
    table, assignments = load_styles(store, dataset.fingerprint, cfg.style.encoder)
    style_of = dict(zip(assignments["id"], assignments["style"]))
    manifest = dataset.manifest
    labels = torch.tensor([table.names.index(style_of[i]) for i in manifest["id"]])
    is_train = torch.from_numpy((manifest["split"] == "train").to_numpy().copy())
    return Collection(name, base, store, to_tensor(dataset.load_pixels(manifest)), labels,
                      is_train, len(table.names))  # fmt: skip


# --- Recipes: calibrate, then train to each snapshot ------------------------------------------


def ganpipe_sets(recipe: str, sets: list[str], steps: int, resume: str) -> list[str]:
    return [f"model.name=curve-{recipe}", f"train.steps={steps}", "train.max_minutes=null",
            "train.sample_every=null", f"train.resume={resume}", *sets]  # fmt: skip


def calibrate_ganpipe(col: Collection, recipe: str, sets: list[str], steps: int, warmup: int):
    """Seconds per step of ganpipe's own loop on this recipe: the time between the metric rows
    of step ``warmup`` and the last one (every step is logged for this)."""
    overrides = [*col.base, *ganpipe_sets(f"calibrate-{recipe}", sets, warmup + steps, "never"),
                 "train.log_every=1", f"train.checkpoint_every={warmup + steps + 1}"]  # fmt: skip
    cfg = load_config(None, overrides)
    result = train(cfg, col.store, load_registry(cfg))
    folder = layout.model_dir(cfg.model_name, result.version)
    rows = col.store.read_parquet(layout.ModelFiles(folder).metrics).set_index("step")["seconds"]
    seconds = float(rows.loc[float(warmup + steps)] - rows.loc[float(warmup)])
    col.store.remove(folder)  # a calibration is not a model anyone should use
    return seconds / steps


def make_reference(col: Collection, kind: str, options: dict):
    train_x, train_s = col.pixels[col.is_train], col.labels[col.is_train]
    return REFERENCES[kind](train_x, train_s, col.num_styles, **options.get(kind, {}))


def calibrate_reference(col: Collection, kind: str, options: dict, steps: int, warmup: int):
    ref = make_reference(col, kind, options)
    ref.train_steps(warmup)
    t0 = time.perf_counter()
    ref.train_steps(steps)
    return (time.perf_counter() - t0) / steps


def run_ganpipe(col: Collection, recipe: str, sets: list[str], plan: list[int]):
    """Yields (steps, sampler, z_dim, kept share) at each snapshot of ``plan``; each snapshot is a
    model version that resumes the previous one's last checkpoint."""
    resume = "never"
    for steps in plan:
        cfg = load_config(None, [*col.base, *ganpipe_sets(recipe, sets, steps, resume)])
        registry = load_registry(cfg)
        result = train(cfg, col.store, registry)
        folder = layout.model_dir(cfg.model_name, result.version)
        G, _ = load_network(col.store, folder, "generator", registry)
        yield steps, G.eval(), G.z_dim, _kept(cfg, col.store, folder)
        resume = col.store.uri(f"{layout.ModelFiles(folder).checkpoints}/{checkpoint_name(steps)}")


def run_reference(col: Collection, kind: str, options: dict, plan: list[int]):
    ref = make_reference(col, kind, options)
    for steps in plan:
        ref.train_steps(steps - ref.steps)
        yield steps, ref.sample, ref.z_dim, None


def _kept(cfg, store: RunStore, folder: str) -> float | None:
    """Share of a default batch (the config's generate and filter settings) the filters keep."""
    from ganpipe.domain.model_pointers import ModelRef
    from ganpipe.stages.filter import filter_batch
    from ganpipe.stages.generate import generate

    try:
        model = ModelRef(RunStore(store.uri(folder), cfg.store.storage_options), "")
        batch = generate(cfg, store, model=model)
        filtered = filter_batch(cfg, store, layout.batch_dir(batch.batch_id), model,
                                load_registry(cfg))  # fmt: skip
        return filtered.kept / max(filtered.candidates, 1)
    except Exception as exc:  # the filters are one column; never lose the table over it
        print(f"  (kept share not measured: {type(exc).__name__}: {exc})")
        return None


# --- Judging ------------------------------------------------------------------------------------


@torch.inference_mode()
def render(sample, z_dim: int, num_styles: int, per_style: int, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(per_style * num_styles, z_dim, generator=gen)
    s = torch.arange(num_styles).repeat_interleave(per_style)
    out = torch.cat([sample(z[i : i + 256], s[i : i + 256]) for i in range(0, len(z), 256)])
    return out.float().clamp(-1, 1), s


def judge_row(judges, fakes, fake_styles, reals, real_styles, num_styles) -> dict:
    style_judge, digit_judge = judges
    row = style_judge.judge(fakes, fake_styles, reals, real_styles)
    ratios = relative_artefacts(fakes, fake_styles, reals, real_styles, num_styles)
    row["checkerboard"] = float(np.nanmax(ratios["checkerboard"]))
    row["clipped"] = float(np.nanmax(ratios["clipped"]))
    sat = np.asarray(ratios["saturation"])
    row["saturation"] = float(sat[np.nanargmax(np.abs(np.log(sat)))])  # furthest from 1
    if digit_judge is not None:
        row.update(digit_judge.coverage(fakes))
    return row


def save_grid(out: Path, name: str, images: torch.Tensor, styles_idx, num_styles, cols=12):
    rows = [to_pixels(images[styles_idx == s][:cols]) for s in range(num_styles)]
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.png").write_bytes(encode(grid(np.concatenate(rows), cols=cols, scale=2)))


# --- One collection -----------------------------------------------------------------------------


def bench_collection(name: str, args, recipes, calibration: dict, out: Path) -> list[dict]:
    col = prepare(name, Path(args.work), args.set)
    labels = {"plain": "plain cDCGAN (reference)",
              "strong": f"SNGAN-style ch {args.strong_ch} (reference)"}  # fmt: skip
    runs = [(labels[kind], kind, None) for kind in args.references]
    runs += [(f"ganpipe {r}", "ganpipe", (r, sets)) for r, sets in recipes]
    # 1. Calibrate every recipe on the idle machine (or take a saved calibration).
    for label, kind, recipe in runs:
        key = f"{name}/{label}"
        if key not in calibration:
            n = args.calibrate_steps
            calibration[key] = (calibrate_reference(col, kind, args.ref_options, n, 5)
                                if recipe is None
                                else calibrate_ganpipe(col, *recipe, n, 5))  # fmt: skip
        print(f"  {name}: calibration: {label}: {calibration[key] * 1000:.1f} ms/step")
    if args.calibrate_only:
        return []
    # 2. Judges trained on real images only; the real images' own row.
    train_x, train_s = col.pixels[col.is_train], col.labels[col.is_train]
    held_x, held_s = col.pixels[~col.is_train], col.labels[~col.is_train]
    judges = (StyleJudge(train_x, train_s, col.num_styles),
              DigitJudge(col.pixels.shape[-1]) if name == "digits" else None)  # fmt: skip
    print(f"## {name}: {len(col.pixels)} images, {col.num_styles} styles; style judge held-out "
          f"accuracy {judges[0].accuracy(held_x, held_s):.3f}")  # fmt: skip
    rows = [{"dataset": name, "run": "real (held-out vs training)", "minutes": None,
             "steps": None, **judge_row(judges, held_x, held_s, train_x, train_s,
                                        col.num_styles), "kept": None}]  # fmt: skip
    print("  " + _format(rows[0]))
    # 3. Each recipe runs once to the whole budget, judged at every snapshot.
    per_style = max(200, int(np.bincount(col.labels.numpy()).max()))
    for label, kind, recipe in runs:
        plan = [max(1, round(args.minutes * f * 60 / calibration[f"{name}/{label}"]))
                for f in args.fractions]  # fmt: skip
        snapshots = (run_reference(col, kind, args.ref_options, plan) if recipe is None
                     else run_ganpipe(col, *recipe, plan))  # fmt: skip
        for f, (steps, sample, z_dim, kept) in zip(args.fractions, snapshots):
            fakes, s = render(sample, z_dim, col.num_styles, per_style)
            minutes = args.minutes * f
            save_grid(out, f"{name}-{label.split(' (')[0].replace(' ', '-')}-{minutes:g}min",
                      fakes, s, col.num_styles)  # fmt: skip
            row = {"dataset": name, "run": label, "minutes": minutes, "steps": steps,
                   **judge_row(judges, fakes, s, col.pixels, col.labels, col.num_styles),
                   "kept": kept}  # fmt: skip
            rows.append(row)
            print("  " + _format(row))
            sys.stdout.flush()
    return rows


# --- Output -------------------------------------------------------------------------------------


def _format(r: dict) -> str:
    when = f" @ {r['minutes']:g} min ({r['steps']} steps)" if r["minutes"] is not None else ""
    text = (f"{r['run']}{when}: FD {r['fd']:.1f} · P {r['precision']:.2f} · R {r['recall']:.2f} "
            f"(worst style {r['worst_recall']:.2f}) · acc {r['accuracy']:.2f} · "
            f"div {r['diversity']:.2f} · checker {r['checkerboard']:.2f}x · "
            f"sat {r['saturation']:.2f}x · clip {r['clipped']:.2f}x")  # fmt: skip
    if r.get("kept") is not None:
        text += f" · kept {r['kept']:.0%}"
    if "modes" in r:
        text += f" · modes {r['modes']}/1000 · KL {r['kl']:.2f}"
    return text


def print_table(rows: list[dict]) -> None:
    print(
        "\n| dataset | run | min | steps | FD ↓ | P ↑ | R ↑ | worst R ↑ | acc ↑ | div →1 | "
        "checker →1 | sat →1 | clip →1 | kept ↑ | modes ↑ |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        kept = f"{r['kept']:.0%}" if r.get("kept") is not None else "–"
        when = f"{r['minutes']:g} | {r['steps']:,}" if r["minutes"] is not None else "– | –"
        print(f"| {r['dataset']} | {r['run']} | {when} | {r['fd']:.1f} | {r['precision']:.2f} | "
              f"{r['recall']:.2f} | {r['worst_recall']:.2f} | {r['accuracy']:.2f} | "
              f"{r['diversity']:.2f} | {r['checkerboard']:.2f} | {r['saturation']:.2f} | "
              f"{r['clipped']:.2f} | {kept} | {r.get('modes', '–')} |")  # fmt: skip


def spearman(a: list[float], b: list[float]) -> float:
    """Rank correlation (ties get their mean rank)."""
    import pandas as pd

    if len(a) < 3:
        return float("nan")
    return float(pd.Series(a).rank().corr(pd.Series(b).rank()))


def kept_against_precision(rows: list[dict]) -> None:
    """Whether the filters' verdict follows the judge's precision across recipes and snapshots
    (as it should) rather than how long the discriminator trained."""
    judged = [r for r in rows if r.get("kept") is not None]
    for name in sorted({r["dataset"] for r in judged}) + ["all"]:
        mine = [r for r in judged if name in ("all", r["dataset"])]
        rho = spearman([r["kept"] for r in mine], [r["precision"] for r in mine])
        rho_min = spearman([r["kept"] for r in mine], [r["minutes"] for r in mine])
        print(
            f"kept vs precision, {name}: Spearman {rho:.2f} over {len(mine)} snapshots "
            f"(kept vs minutes trained: {rho_min:.2f})"
        )


def plot(rows: list[dict], out: Path) -> None:
    for name in sorted({r["dataset"] for r in rows}):
        series: dict[str, dict[str, list]] = {}
        for r in rows:
            if r["dataset"] == name and r["minutes"] is not None:
                for fig in ("fd", "recall", "precision"):
                    series.setdefault(r["run"], {}).setdefault(fig, []).append(
                        (r["minutes"], r[fig])
                    )
        picture = line_panels(
            series,
            [("fd", True), ("recall", False), ("precision", False)],
            f"{name}: FD, recall and precision against reference-minutes",
        )
        picture.save(out / f"curves-{name}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default="demo,photos,digits")
    parser.add_argument("--minutes", type=float, default=16, help="budget, reference-minutes")
    parser.add_argument("--fractions", default="0.25,0.5,1", help="snapshots, shares of it")
    parser.add_argument(
        "--recipe",
        action="append",
        default=[],
        help="NAME:key=value;key=value (ganpipe --set values); default: default:; "
        "none: the references only",
    )
    parser.add_argument("--references", default="plain,strong", help="plain, strong, or none")
    parser.add_argument(
        "--strong-ch",
        type=int,
        default=16,
        help="width of the SNGAN-style reference (its ch: G 4ch, D 2ch)",
    )
    parser.add_argument("--set", action="append", default=[], help="overrides for every run")
    parser.add_argument("--calibration", default=None, help="JSON of an earlier run: same steps")
    parser.add_argument("--calibrate-steps", type=int, default=40)
    parser.add_argument(
        "--calibrate-only",
        action="store_true",
        help="measure every recipe's seconds per step (on an idle machine) and "
        "stop; later runs read it back with --calibration",
    )
    parser.add_argument("--out", default="benchmarks/out/curves")
    parser.add_argument("--work", default=None, help="folder for data and stores (kept)")
    parser.add_argument(
        "--merge",
        nargs="+",
        default=None,
        help="results.json files of runs made side by side (one recipe or reference each): "
        "one table, correlation and plot of them all, written to --out; nothing is trained",
    )
    args = parser.parse_args()  # fmt: skip
    if args.merge:
        merge(args.merge, Path(args.out))
        return
    args.fractions = [float(f) for f in args.fractions.split(",")]
    args.references = [r for r in args.references.split(",") if r in REFERENCES]
    args.ref_options = {"strong": {"ch": args.strong_ch}}
    args.work = args.work or tempfile.mkdtemp(prefix="ganpipe-curves-")
    recipes = [_recipe(r) for r in (args.recipe or ["default:"]) if r != "none"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    calibration = json.loads(Path(args.calibration).read_text())["seconds_per_step"] \
        if args.calibration else {}  # fmt: skip
    machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
               f"torch {torch.__version__}, {torch.get_num_threads()} threads")  # fmt: skip
    print(f"# {time.strftime('%Y-%m-%d')} · {machine} · budget {args.minutes:g} "
          f"reference-minutes, snapshots at {args.fractions}\n")  # fmt: skip
    rows: list[dict] = []
    for name in args.datasets.split(","):
        rows += bench_collection(name, args, recipes, calibration, out)
        _save(out, args, machine, calibration, rows)
    if rows:
        print_table(rows)
        kept_against_precision(rows)
        plot(rows, out)


def merge(files: list[str], out: Path) -> None:
    """One table of runs that were made side by side, each with its own results.json. Their
    calibrations must agree wherever they overlap: same steps, same budget."""
    rows: list[dict] = []
    calibration: dict[str, float] = {}
    for f in files:
        record = json.loads(Path(f).read_text())
        for key, value in record["seconds_per_step"].items():
            if calibration.setdefault(key, value) != value:
                raise SystemExit(f"{f}: calibration of {key!r} differs from an earlier file's")
        seen = {(r["dataset"], r["run"], r["minutes"]) for r in rows}
        kept_none = ("kept", "minutes", "steps")  # None means "not measured" there, not NaN
        rows += [
            {k: (math.nan if v is None and k not in kept_none else v) for k, v in r.items()}
            for r in record["rows"]
            if (r["dataset"], r["run"], r["minutes"]) not in seen
        ]
    rows.sort(key=lambda r: (r["dataset"], r["minutes"] is not None, r["run"],
                             r["minutes"] or 0))  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    (out / "merged.json").write_text(json.dumps({"files": files, "seconds_per_step": calibration,
                                                 "rows": record_rows(rows)}, indent=1))  # fmt: skip
    print_table(rows)
    kept_against_precision(rows)
    plot(rows, out)


def record_rows(rows: list[dict]) -> list[dict]:
    return [{k: (None if isinstance(v, float) and not math.isfinite(v) else v)
             for k, v in r.items()} for r in rows]  # fmt: skip


def _save(out: Path, args, machine: str, calibration: dict, rows: list[dict]) -> None:
    record = {"date": time.strftime("%Y-%m-%d"), "machine": machine, "minutes": args.minutes,
              "fractions": args.fractions, "seconds_per_step": calibration,
              "rows": record_rows(rows)}  # fmt: skip
    (out / "results.json").write_text(json.dumps(record, indent=1))


def _recipe(text: str) -> tuple[str, list[str]]:
    name, _, sets = text.partition(":")
    return name, [s for s in sets.split(";") if s]


if __name__ == "__main__":
    main()
