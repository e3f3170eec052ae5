"""Quality at equal wall clock: ganpipe configs against an independent conditional DCGAN.

Every run trains the reference (benchmarks/_examples_dcgan.py, pytorch/examples-style) and
each ganpipe variant for the same wall-clock budget on the same data; ``train.steps`` is set far
beyond reach so only the clock ends a run. Samples are judged by classifiers trained on real
images only (benchmarks/_judge.py), per style then averaged:

- FD: Fréchet distance in the style classifier's features (lower is better);
- P / R: improved precision and recall, k = 3, in the same features: realism and coverage, so
  that noise cannot pass for variety;
- acc: style accuracy of the samples; div: diversity ratio (1 = as varied as the data; far
  above 1 is noise, far below is collapse);
- kept: share of a batch the default quality filters keep (ganpipe only);
- digits: modes hit of 1,000 and KL to uniform over confidently recognised samples.

    python benchmarks/quality_per_minute.py --datasets demo,photos,digits --minutes 6.5
    python benchmarks/quality_per_minute.py --datasets demo --minutes 3 \\
        --variant "no-regs:train.regularizers={}" --variant "default:"
    (a variant is NAME:key=value;key=value, ganpipe --set values separated by ;)

Sample grids of every run go to --out (one PNG per dataset and model) for a person to look at.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _examples_dcgan import ExamplesDCGAN
from _judge import DigitJudge, StyleJudge
from _quality_data import demo, digits, photos

from ganpipe.config import load_config
from ganpipe.data.dataset import load_dataset, to_pixels, to_tensor
from ganpipe.data.images import encode, grid
from ganpipe.registry import load_registry
from ganpipe.stages.ingest import ingest
from ganpipe.stages.styles import load_styles, styles
from ganpipe.store import RunStore
from ganpipe.store.checkpoints import load_network
from ganpipe.training.train import train

BUILDERS = {"demo": demo, "photos": photos, "digits": digits}


def prepare(name: str, data_root: Path, store_root: str, extra: list[str]):
    """Build the collection, ingest it and find its styles; returns what every run shares."""
    collection = BUILDERS[name](data_root)
    base = [f"store.root={store_root}", f"dataset.name={name}", *collection.overrides, *extra]
    cfg = load_config(None, base)
    store = RunStore.from_config(cfg)
    ingest(cfg, store)
    styles(cfg, store)
    dataset = load_dataset(store, cfg.dataset.name)
    table, assignments = load_styles(store, dataset.fingerprint, cfg.style.encoder)
    style_of = dict(zip(assignments["id"], assignments["style"]))
    manifest = dataset.manifest
    labels = torch.tensor([table.names.index(style_of[i]) for i in manifest["id"]])
    pixels = to_tensor(dataset.load_pixels(manifest))
    is_train = torch.from_numpy((manifest["split"] == "train").to_numpy().copy())
    return collection, base, store, table, pixels, labels, is_train


def run_ganpipe(base: list[str], store, variant: str, sets: list[str], minutes: float):
    overrides = [*base, f"model.name=bench-{variant}", "train.steps=100000000",
                 f"train.max_minutes={minutes}", "train.sample_every=null", "train.resume=never",
                 *sets]  # fmt: skip
    cfg = load_config(None, overrides)
    registry = load_registry(cfg)
    t0 = time.perf_counter()
    result = train(cfg, store, registry)
    seconds = time.perf_counter() - t0
    G, _ = load_network(store, f"models/{cfg.model_name}/{result.version}", "generator", registry)
    return cfg, result, seconds, G.eval()


@torch.inference_mode()
def render(G, num_styles: int, per_style: int, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(per_style * num_styles, G.z_dim, generator=gen)
    s = torch.arange(num_styles).repeat_interleave(per_style)
    out = torch.cat([G(z[i : i + 256], s[i : i + 256]) for i in range(0, len(z), 256)])
    return out.float().clamp(-1, 1), s


def kept_share(cfg, store, result) -> float:
    """Share of a default batch (the config's generate and filter settings) the filters keep."""
    from ganpipe.generation.models import ModelRef
    from ganpipe.stages.filter import filter_batch
    from ganpipe.stages.generate import generate
    from ganpipe.store import layout

    folder = layout.model_dir(cfg.model_name, result.version)
    model = ModelRef(RunStore(store.uri(folder), cfg.store.storage_options), "")
    registry = load_registry(cfg)
    batch = generate(cfg, store, model=model)
    filtered = filter_batch(cfg, store, layout.batch_dir(batch.batch_id), model, registry)
    rates = ", ".join(f"{k} {v:.0%}" for k, v in filtered.pass_rates.items())
    print(f"  (filters: pass rates {rates})")
    return filtered.kept / max(filtered.candidates, 1)


def save_grid(out: Path, name: str, images: torch.Tensor, styles_idx, num_styles, cols=12):
    rows = []
    for s in range(num_styles):
        rows.append(to_pixels(images[styles_idx == s][:cols]))
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.png").write_bytes(encode(grid(np.concatenate(rows), cols=cols, scale=2)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default="demo,photos,digits")
    parser.add_argument("--minutes", type=float, default=6.5, help="wall-clock per run")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="NAME:key=value;key=value (ganpipe --set values); default: default:",
    )
    parser.add_argument("--set", action="append", default=[], help="overrides for every run")
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument("--out", default="benchmarks/out/quality")
    parser.add_argument("--work", default=None, help="folder for data and stores (kept)")
    args = parser.parse_args()  # fmt: skip
    variants = [_variant(v) for v in (args.variant or ["default:"])]
    work = Path(args.work or tempfile.mkdtemp(prefix="ganpipe-quality-"))
    out = Path(args.out)
    print(f"# {time.strftime('%Y-%m-%d')} · {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"
          f" · {args.minutes} min per run\n")  # fmt: skip
    table = []
    for name in args.datasets.split(","):
        table += bench_dataset(name, work, variants, args, out)
    print_table(table)


def bench_dataset(name, work: Path, variants, args, out: Path) -> list[dict]:
    collection, base, store, styles_table, pixels, labels, is_train = prepare(
        name, work / "data", str(work / f"store-{name}"), args.set
    )
    num_styles = len(styles_table.names)
    per_style = max(200, int(np.bincount(labels.numpy()).max()))
    judge = StyleJudge(pixels[is_train], labels[is_train], num_styles)
    digit_judge = DigitJudge(pixels.shape[-1]) if name == "digits" else None
    print(f"## {name}: {len(pixels)} images, {num_styles} styles; style judge held-out "
          f"accuracy {judge.accuracy(pixels[~is_train], labels[~is_train]):.3f}"
          + (f"; digit judge {digit_judge.train_accuracy:.3f}" if digit_judge else ""))  # fmt: skip
    rows = [_row(name, "real (held-out)", judge, digit_judge, pixels[~is_train],
                 labels[~is_train], pixels[is_train], labels[is_train], None)]  # fmt: skip
    if not args.no_reference:
        ref = ExamplesDCGAN(pixels[is_train], labels[is_train], num_styles)
        t0 = time.perf_counter()
        ref.train(60 * args.minutes)
        z = torch.randn(per_style * num_styles, 100, generator=torch.Generator().manual_seed(1))
        s = torch.arange(num_styles).repeat_interleave(per_style)
        fakes = ref.sample(z, s).clamp(-1, 1)
        save_grid(out, f"{name}-reference", fakes, s, num_styles)
        rows.append(_row(name, f"reference cDCGAN ({ref.steps} steps, "
                         f"{time.perf_counter() - t0:.0f} s)", judge, digit_judge, fakes, s,
                         pixels, labels, None))  # fmt: skip
    for variant, sets in variants:
        cfg, result, seconds, G = run_ganpipe(base, store, variant, sets, args.minutes)
        fakes, s = render(G, num_styles, per_style)
        save_grid(out, f"{name}-{variant}", fakes, s, num_styles)
        kept = _kept(cfg, store, result)
        rows.append(_row(name, f"ganpipe {variant} ({result.steps_done} steps, {seconds:.0f} s)",
                         judge, digit_judge, fakes, s, pixels, labels, kept))  # fmt: skip
    return rows


def _kept(cfg, store, result) -> float | None:
    try:
        return kept_share(cfg, store, result)
    except Exception as exc:  # the filters are an extra column; never lose the table over it
        print(f"  (kept share not measured: {type(exc).__name__}: {exc})")
        return None


def _row(dataset, label, judge, digit_judge, fakes, s, reals, real_s, kept) -> dict:
    row = {"dataset": dataset, "run": label, **judge.judge(fakes, s, reals, real_s), "kept": kept}
    if digit_judge is not None:
        row.update(digit_judge.coverage(fakes))
    print("  " + _format(row))
    sys.stdout.flush()
    return row


def _format(r: dict) -> str:
    text = (f"{r['run']}: FD {r['fd']:.1f} · P {r['precision']:.2f} · R {r['recall']:.2f} "
            f"(worst style {r['worst_recall']:.2f}) · acc {r['accuracy']:.2f} · "
            f"div {r['diversity']:.2f}")  # fmt: skip
    if r.get("kept") is not None:
        text += f" · kept {r['kept']:.0%}"
    if "modes" in r:
        text += f" · modes {r['modes']}/1000 · KL {r['kl']:.2f} · sure {r['recognised']:.0%}"
    return text


def print_table(rows: list[dict]) -> None:
    print("\n| dataset | run | FD ↓ | P ↑ | R ↑ | acc ↑ | div →1 | kept ↑ | modes ↑ | KL ↓ |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        kept = f"{r['kept']:.0%}" if r.get("kept") is not None else "–"
        modes = f"{r['modes']}" if "modes" in r else "–"
        kl = f"{r['kl']:.2f}" if "kl" in r else "–"
        print(f"| {r['dataset']} | {r['run']} | {r['fd']:.1f} | {r['precision']:.2f} | "
              f"{r['recall']:.2f} | {r['accuracy']:.2f} | {r['diversity']:.2f} | {kept} | "
              f"{modes} | {kl} |")  # fmt: skip


def _variant(text: str) -> tuple[str, list[str]]:
    name, _, sets = text.partition(":")
    return name, [s for s in sets.split(";") if s]


if __name__ == "__main__":
    main()
