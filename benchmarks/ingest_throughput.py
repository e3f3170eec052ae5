"""Ingest benchmark (issue 3), all figures from one run:

1. images/s of `ganpipe ingest` vs a bare single-process PIL loop (open, convert, resize, save)
   on the same JPEG/PNG files;
2. re-ingest of unchanged data as a share of the first ingest's time;
3. peak RSS of ingest at a small and a ten times larger dataset.

    python benchmarks/ingest_throughput.py [--images 5000] [--rss-small 2000] [--rss-large 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _corpus import make_corpus  # noqa: E402

SIZE = 64


def bare_pil_loop(folder: Path, out: Path) -> float:
    """The reference: what a hand-written preprocessing script does, one image at a time."""
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in folder.rglob("*") if p.suffix in (".png", ".jpg"))
    start = time.perf_counter()
    for i, path in enumerate(files):
        with Image.open(path) as img:
            img.convert("RGB").resize((SIZE, SIZE), Image.LANCZOS).save(out / f"{i}.png")
    return len(files) / (time.perf_counter() - start)


def ganpipe_ingest(folder: Path, store: Path, workers: int = 0) -> dict:
    """One ingest in a fresh process (so its peak RSS is its own); returns its figures. The
    clock covers the stage's work, not interpreter start-up or plugin loading, which every
    command pays alike."""
    code = f"""
import json, resource, time
from ganpipe.config import load_config
from ganpipe.stages.ingest import ingest
from ganpipe.registry import load_registry
from ganpipe.store import RunStore
cfg = load_config(None, ["store.root={store}", "dataset.sources=[{folder}]",
                         "dataset.image_size={SIZE}", "dataset.name=bench",
                         "dataset.workers={workers}"])
registry = load_registry(cfg)
start = time.perf_counter()
result = ingest(cfg, RunStore.from_config(cfg), registry)
seconds = time.perf_counter() - start
print(json.dumps({{"seconds": seconds, "accepted": result.counts["accepted"],
                   "decoded": result.decoded,
                   "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--rss-small", type=int, default=2000)
    parser.add_argument("--rss-large", type=int, default=20000)
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "ganpipe-bench"))
    args = parser.parse_args()
    work = Path(args.work)
    print(f"cores: {os.cpu_count()}, python {sys.version.split()[0]}")

    corpus = make_corpus(work / f"corpus-{args.images}", args.images)
    shutil.rmtree(work / "store", ignore_errors=True)
    bare = bare_pil_loop(corpus, work / "bare-out")
    first = ganpipe_ingest(corpus, work / "store")
    again = ganpipe_ingest(corpus, work / "store")
    shutil.rmtree(work / "store-1", ignore_errors=True)
    single = ganpipe_ingest(corpus, work / "store-1", workers=1)
    ours = first["accepted"] / first["seconds"]
    print(f"\n1. throughput on {args.images} JPEG/PNG files (256 px -> {SIZE} px)")
    print(f"   bare PIL loop:   {bare:8.1f} images/s")
    print(f"   ganpipe ingest:  {ours:8.1f} images/s")
    print(f"   ratio:           {ours / bare:8.2f}x  (target >= 1.7x)")
    one = single["accepted"] / single["seconds"]
    print(
        f"   (ganpipe with 1 decoding thread: {one:.1f} images/s, {one / bare:.2f}x: the rest "
        f"of the gain is JPEG draft decoding and no per-image PNG encode)"
    )
    print("\n2. re-ingest of unchanged data")
    print(
        f"   first: {first['seconds']:.2f} s, again: {again['seconds']:.3f} s "
        f"(decoded {again['decoded']})"
    )
    print(f"   ratio:           {again['seconds'] / first['seconds'] * 100:8.2f}%  (target <= 5%)")

    rss = {}
    for n in (args.rss_small, args.rss_large):
        folder = make_corpus(work / f"corpus-{n}-128", n, size=128, seed=1)
        shutil.rmtree(work / f"store-{n}", ignore_errors=True)
        rss[n] = ganpipe_ingest(folder, work / f"store-{n}")["peak_rss_mb"]
    small, large = args.rss_small, args.rss_large
    print("\n3. peak RSS of ingest")
    print(f"   {small} images: {rss[small]:.0f} MB, {large} images: {rss[large]:.0f} MB")
    print(f"   ratio:           {rss[large] / rss[small]:8.2f}x  (target <= 1.2x)")
    print(
        f"\n(self check: this process peaked at "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB)"
    )


if __name__ == "__main__":
    main()
