"""Serving throughput: ``ganpipe serve`` under 1, 8 and 32 concurrent clients, each asking for
one 32 px image at a time, against one client calling the ``generate`` stage in a loop (one
image per call, as a script without a server would), in one run on the same model.

    python benchmarks/serve_throughput.py [--seconds 10] [--reference-calls 20]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import torch

from ganpipe.config import load_config
from ganpipe.domain.model_pointers import promote
from ganpipe.serve.local import free_port, wait_until_up
from ganpipe.stages.generate import generate
from ganpipe.stages.ingest import ingest
from ganpipe.stages.styles import styles
from ganpipe.stages.train import train
from ganpipe.store import RunStore


def clients(base: str, count: int, seconds: float) -> tuple[float, list[float]]:
    """``count`` clients asking one image at a time for ``seconds``: images/s and latencies."""
    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client(number: int) -> None:
        seed = number * 100_000
        while time.monotonic() < stop:
            body = json.dumps({"style": f"style-{seed % 6}", "seeds": [seed]}).encode()
            ask = urllib.request.Request(f"{base}/api/generate", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})  # fmt: skip
            began = time.monotonic()
            with urllib.request.urlopen(ask, timeout=120) as answer:
                answer.read()
            with lock:
                latencies.append(time.monotonic() - began)
            seed += 1

    began = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(latencies) / (time.monotonic() - began), latencies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--reference-calls", type=int, default=20)
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="ganpipe-bench-serve-")
    base = [f"store.root={root}", "style.num_styles=6", "train.steps=30", "train.max_minutes=null",
            "train.sample_every=null"]  # fmt: skip
    cfg = load_config(None, base)
    store = RunStore.from_config(cfg)
    ingest(cfg, store)
    styles(cfg, store)
    trained = train(cfg, store)
    promote(store, trained.model, trained.version)
    print(f"# {time.strftime('%Y-%m-%d')} · {platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__} · 32 px DCGAN, one image per request")  # fmt: skip

    began = time.monotonic()
    for i in range(args.reference_calls):
        one = load_config(None, [*base, "generate.styles=[style-0]", f"generate.seeds=[{i}]"])
        generate(one, store)
    loop = args.reference_calls / (time.monotonic() - began)
    print(f"reference: generate stage in a loop, one image per call: {loop:.1f} img/s")

    port = free_port()
    sets = [a for kv in base for a in ("--set", kv)]
    command = [sys.executable, "-m", "ganpipe", "serve", *sets, "--port", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url)
        clients(url, 4, 2)  # warm-up: the generator loads on the first request
        print("\n| clients | img/s | vs the loop | p50 latency | p95 latency |")
        print("|---|---|---|---|---|")
        for count in (1, 8, 32):
            rate, latencies = clients(url, count, args.seconds)
            p50 = statistics.median(latencies)
            p95 = statistics.quantiles(latencies, n=20)[18] if len(latencies) > 1 else p50
            print(
                f"| {count} | {rate:.1f} | {rate / loop:.2f}x | {p50 * 1000:.0f} ms | "
                f"{p95 * 1000:.0f} ms |",
                flush=True,
            )
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
