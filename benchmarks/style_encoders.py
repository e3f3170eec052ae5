"""Style encoder benchmark (issue 4), all figures from one run:

1. clustering agreement with the demo dataset's known styles (NMI, purity), per encoder, with
   the number of styles chosen automatically and fixed at the true 6;
2. embeddings per second of each encoder on CPU at 64x64, batch 256, against decoding the same
   images with PIL (extraction must not dominate ingestion).

    python benchmarks/style_encoders.py [--images 2048]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ganpipe.config import load_config
from ganpipe.data.dataset import load_dataset
from ganpipe.registry import load_registry
from ganpipe.stages.ingest import ingest
from ganpipe.stats.cluster import choose_k, kmeans, nmi, purity
from ganpipe.store import RunStore
from ganpipe.style_encoders import embed, embed_dataset, encoder_for

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _corpus import make_corpus  # noqa: E402

ENCODERS = ["texture", "contrastive", "colour_histogram"]


def agreement(work: Path) -> None:
    print("1. styles found vs the demo's 6 true styles (32 px, 64 images per style)")
    cfg = load_config(None, [f"store.root={work / 'agree'}"])
    store = RunStore.from_config(cfg)
    ingest(cfg, store)
    dataset = load_dataset(store, "demo")
    truth = dataset.manifest["label"].astype(str).to_numpy()
    registry = load_registry(cfg)
    print(
        f"   {'encoder':18} {'fit s':>6} {'auto k':>6} {'NMI':>6} {'purity':>6} "
        f"{'NMI@6':>6} {'purity@6':>8}"
    )
    for name in ENCODERS:
        start = time.perf_counter()
        encoder = encoder_for(registry, dataset, name, {}, 32, fit_if_missing=True)
        fit = time.perf_counter() - start
        e = embed_dataset(encoder, dataset)
        k, _ = choose_k(e, 12)
        auto, _ = kmeans(e, k)
        six, _ = kmeans(e, 6)
        a, s = auto.numpy(), six.numpy()
        print(
            f"   {name:18} {fit:6.1f} {k:6d} {nmi(truth, a):6.3f} {purity(truth, a):6.3f} "
            f"{nmi(truth, s):6.3f} {purity(truth, s):8.3f}"
        )


def throughput(work: Path, count: int) -> None:
    print(
        f"\n2. throughput at 64x64, batch 256 ({torch.get_num_threads()} torch threads), on "
        f"{count} photos-sized images (256 px, half JPEG, half PNG)"
    )
    folder = make_corpus(work / "corpus", count)
    files = sorted(p for p in folder.rglob("*") if p.suffix in (".png", ".jpg"))
    start = time.perf_counter()
    pixels = []
    for path in files:
        with Image.open(path) as img:
            pixels.append(img.convert("RGB").resize((64, 64), Image.LANCZOS))
    decode_rate = len(files) / (time.perf_counter() - start)
    batch = np.stack([np.asarray(p) for p in pixels[:256]])
    print(f"   PIL decode + resize: {decode_rate:9.1f} images/s (one thread)")
    registry = load_registry(load_config())
    for name in ENCODERS:
        # Speed does not depend on the weights: an untrained learning encoder is timed as is.
        encoder = registry.create("style_encoder", name, image_size=64).eval()
        embed(encoder, batch)  # warm up
        runs, start = 5, time.perf_counter()
        for _ in range(runs):
            embed(encoder, batch, batch_size=256)
        rate = runs * len(batch) / (time.perf_counter() - start)
        print(f"   {name:20} {rate:9.1f} embeddings/s = {rate / decode_rate:5.2f}x decode rate")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--work", default=tempfile.mkdtemp(prefix="ganpipe-bench-styles-"))
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}, python {sys.version.split()[0]}\n")
    work = Path(args.work)
    agreement(work)
    throughput(work, args.images)


if __name__ == "__main__":
    main()
