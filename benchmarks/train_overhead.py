"""Training overhead benchmark (issue 5, figure 1): ganpipe's training img/s against a plain
PyTorch loop training the same conditional DCGAN on the same tensors (no logging, no
checkpoints, no EMA, no augmentation or regularisers on either side), in one run.

    python benchmarks/train_overhead.py [--steps 300] [--batch 64] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile

import torch
from _reference import plain_loop

from ganpipe.config import load_config
from ganpipe.data.dataset import load_dataset
from ganpipe.domain.style_table import load_styles
from ganpipe.stages.ingest import ingest
from ganpipe.stages.styles import styles
from ganpipe.stages.train import train
from ganpipe.store import RunStore


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="ganpipe-bench-train-")
    overrides = [
        f"store.root={root}", f"train.steps={args.steps}", f"train.batch_size={args.batch}",
        "train.regularizers={}", "train.augmentations={}", "train.ema_decay=0",
        "train.log_every=1000000", f"train.checkpoint_every={args.steps + 1}",
        "train.max_minutes=null", "style.num_styles=6",
    ]  # fmt: skip
    cfg = load_config(None, overrides)
    store = RunStore.from_config(cfg)
    ingest(cfg, store)
    styles(cfg, store)
    dataset = load_dataset(store, "demo")
    table, assignments = load_styles(store, dataset.fingerprint, "texture")
    rows = dataset.manifest[dataset.manifest["split"] == "train"]
    style_of = dict(zip(assignments["id"], assignments["style"]))
    labels = torch.tensor([table.names.index(style_of[i]) for i in rows["id"]])
    pixels = torch.from_numpy(dataset.load_pixels(rows)).permute(0, 3, 1, 2).float() / 127.5 - 1

    print(
        f"cores: {os.cpu_count()}, torch threads: {torch.get_num_threads()}, "
        f"python {sys.version.split()[0]}"
    )
    print(f"{len(rows)} demo images at 32 px, batch {args.batch}, {args.steps} steps each\n")
    # Alternate the two, several rounds, and compare medians: a shared machine's noise would
    # otherwise decide the ratio. Each round trains a new model version (another seed).
    plain, ours = [], []
    for r in range(args.rounds):
        plain.append(plain_loop(pixels, labels, args.steps, args.batch, len(table.names)))
        seeded = load_config(None, [*overrides, f"train.seed={r}"])
        ours.append(train(seeded, store).images_per_second)
        print(f"round {r + 1}: plain {plain[-1]:7.1f} img/s, ganpipe {ours[-1]:7.1f} img/s")
    p, o = statistics.median(plain), statistics.median(ours)
    print(f"\nplain PyTorch loop: {p:8.1f} img/s (median)")
    print(f"ganpipe train:      {o:8.1f} img/s (median)")
    print(f"ratio:              {o / p:8.3f}  (target >= 0.95)")


if __name__ == "__main__":
    main()
