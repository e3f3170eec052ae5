"""Quality filter throughput (issue 6): candidates per second and seconds per 1,000 candidates of
each built-in filter and of all five, on the demo dataset (32 px) with a small model trained here
with a short budget, in a temporary store.

Each filter alone is timed on a fresh context, so it pays for what it needs (the discriminator
pass, the embeddings, the scan of the training set); "all five" shares one context, as the stage
does; the stage line adds decoding the batch's PNG files, loading the model and sampling the real
images, and writing the manifest. Each figure is the best of ``--rounds`` runs: on a shared
machine the fastest run is the one least disturbed by other work, and medians drift with it.

    python benchmarks/filter_throughput.py [--per-style 170] [--rounds 5] [--steps 150]
                                           [--demo-per-style 64]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import torch

from ganpipe.config import DEFAULT_FILTERS, load_config
from ganpipe.data.dataset import load_dataset
from ganpipe.domain.model_pointers import promote
from ganpipe.registry import load_registry
from ganpipe.stages.filter import batch_context, filter_batch
from ganpipe.stages.generate import generate, planned_batch
from ganpipe.stages.ingest import ingest
from ganpipe.stages.styles import styles
from ganpipe.stages.train import train
from ganpipe.store import RunStore


def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-style", type=int, default=170, help="candidates per style")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=150, help="training steps of the model")
    parser.add_argument("--demo-per-style", type=int, default=64, help="real images per style")
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="ganpipe-bench-filter-")
    cfg = load_config(None, [
        f"store.root={root}", "style.num_styles=6", f"train.steps={args.steps}",
        "train.max_minutes=1.5", "train.batch_size=32", "train.sample_every=null",
        f"generate.per_style={args.per_style}", f"dataset.demo_per_style={args.demo_per_style}",
    ])  # fmt: skip
    store = RunStore.from_config(cfg)
    registry = load_registry(cfg)

    # Data, styles and a small model.
    ingest(cfg, store)
    styles(cfg, store)
    trained = train(cfg, store)
    promote(store, trained.model, trained.version)
    generate(cfg, store, registry)
    model, folder = planned_batch(cfg, store, registry)
    dataset = load_dataset(store, cfg.dataset.name)
    train_images = int((dataset.manifest["split"] == "train").sum())

    def context():
        return batch_context(cfg, store, folder, model, registry, store)[2]

    def run(names, ctx) -> None:
        for name in names:
            options = cfg.filter.options.get(name, {})
            registry.create("quality_filter", name, **options).score(ctx)

    n = len(context().images)
    print(
        f"cores: {os.cpu_count()}, torch threads: {torch.get_num_threads()}, "
        f"python {sys.version.split()[0]}"
    )
    print(
        f"{n} candidates at {cfg.dataset.image_size} px in {len(context().table.names)} styles; "
        f"{len(dataset.manifest)} real images ({train_images} train); "
        f"model trained {trained.steps_done} steps; best of {args.rounds} rounds\n"
    )
    rows: list[tuple[str, float]] = []
    for name in DEFAULT_FILTERS:
        times = []
        for _ in range(args.rounds):
            ctx = context()  # fresh: nothing cached from another filter
            times.append(timed(run, [name], ctx))
        rows.append((name, min(times)))
    shared = []
    for _ in range(args.rounds):
        ctx = context()
        shared.append(timed(run, DEFAULT_FILTERS, ctx))
    rows.append(("all five, one context", min(shared)))
    rows.append(("context (decode, model, real sample)",
                 min(timed(context) for _ in range(args.rounds))))  # fmt: skip
    stage = [timed(filter_batch, cfg, store, folder, model, registry) for _ in range(args.rounds)]
    rows.append(("filter stage, all five, end to end", min(stage)))

    print(f"{'filter':38} {'seconds':>8} {'cand/s':>9} {'s / 1,000':>10}")
    for name, seconds in rows:
        print(f"{name:38} {seconds:8.3f} {n / seconds:9.0f} {1000 * seconds / n:10.3f}")
    verdict = filter_batch(cfg, store, folder, model, registry)
    print(f"\npass rates on this batch: {verdict.pass_rates}; kept {verdict.kept} of {n}")


if __name__ == "__main__":
    main()
