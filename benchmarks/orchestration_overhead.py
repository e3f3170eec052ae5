"""Orchestration overhead (issue 7): the demo pipeline through Prefect against the same stage
functions called directly, in one run; and the cost per generate-chunk task.

    python benchmarks/orchestration_overhead.py [--steps 300] [--rounds 2]

Each round runs both ways on fresh stores (the direct run first in odd rounds, second in even
ones) and the medians are compared. Prefect's temporary API is started once before timing: its
cold start (~15 s) is a one-time cost of a session, not of a pipeline, and a deployment talks to
a server that is already up.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="ganpipe-bench-prefect-"))

from ganpipe.config import load_config  # noqa: E402
from ganpipe.domain.model_pointers import promote  # noqa: E402
from ganpipe.registry import load_registry  # noqa: E402
from ganpipe.stages.filter import filter_batch  # noqa: E402
from ganpipe.stages.generate import generate, planned_batch  # noqa: E402
from ganpipe.stages.ingest import ingest  # noqa: E402
from ganpipe.stages.report import report  # noqa: E402
from ganpipe.stages.styles import styles  # noqa: E402
from ganpipe.stages.train import train  # noqa: E402
from ganpipe.store import RunStore  # noqa: E402


def direct(cfg) -> float:
    start = time.perf_counter()
    store, registry = RunStore.from_config(cfg), load_registry(cfg)
    ingest(cfg, store, registry)
    styles(cfg, store, registry)
    trained = train(cfg, store, registry)
    promote(store, trained.model, trained.version)
    generate(cfg, store, registry)
    model, folder = planned_batch(cfg, store, registry)
    filter_batch(cfg, store, folder, model, registry)
    report(cfg, store, folder, model, registry)
    return time.perf_counter() - start


def through_prefect(cfg) -> float:
    from ganpipe_flows.pipeline import pipeline

    start = time.perf_counter()
    pipeline(config=cfg.model_dump(mode="json"))
    return time.perf_counter() - start


def config_for(root: str, steps: int, *extra: str):
    return load_config(None, [f"store.root={root}", f"train.steps={steps}",
                              "train.max_minutes=null", *extra])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=300, help="training steps of the demo")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--chunks", type=int, default=24, help="chunks of the generation batch")
    args = parser.parse_args()
    import logging

    logging.getLogger("prefect").setLevel(logging.WARNING)
    from prefect.testing.utilities import prefect_test_harness

    print(f"cores: {os.cpu_count()}, python {sys.version.split()[0]}")
    with prefect_test_harness(server_startup_timeout=90):
        plain, flowed = [], []
        for r in range(args.rounds):
            order = [("direct", direct), ("prefect", through_prefect)]
            for name, fn in order if r % 2 == 0 else order[::-1]:
                cfg = config_for(tempfile.mkdtemp(prefix="ganpipe-bench-orch-"), args.steps)
                seconds = fn(cfg)
                (plain if name == "direct" else flowed).append(seconds)
                print(f"round {r + 1}: {name:8s} {seconds:7.1f} s")
        p, f = statistics.median(plain), statistics.median(flowed)
        print(f"\ndemo pipeline ({args.steps} training steps), median of {args.rounds}:")
        print(f"  stage functions called directly: {p:7.1f} s")
        print(f"  pipeline flow through Prefect:   {f:7.1f} s")
        print(f"  overhead: {100 * (f / p - 1):+.1f}%  (target <= +5%)")

        # Per-task cost of generation chunks: one batch as many chunk tasks (the subflow the
        # generate_batch flow runs) vs one direct call making the same images.
        from ganpipe.stages.generate import plan_batch
        from ganpipe_flows.generate_batch import generate_chunks

        root = tempfile.mkdtemp(prefix="ganpipe-bench-chunks-")
        base = config_for(root, 50)
        store = RunStore.from_config(base)
        ingest(base, store)
        styles(base, store)
        trained = train(base, store)
        promote(store, trained.model, trained.version)
        per_style = 64
        chunk = max(1, per_style * 6 // args.chunks)
        cfg = config_for(root, 50, f"generate.per_style={per_style}",
                         f"generate.chunk_size={chunk}")  # fmt: skip
        n = plan_batch(cfg, store).num_chunks
        direct_s, flow_s = [], []
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            generate(cfg, store, out=RunStore(tempfile.mkdtemp(prefix="ganpipe-bench-gen-")))
            direct_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            generate_chunks(config=cfg.model_dump(mode="json"), chunks=n, model="current",
                            out=tempfile.mkdtemp(prefix="ganpipe-bench-gen-"))  # fmt: skip
            flow_s.append(time.perf_counter() - t0)
        d, g = statistics.median(direct_s), statistics.median(flow_s)
        print(f"\ngeneration of {per_style * 6} images: one direct call {d:.2f} s; "
              f"as {n} chunk tasks {g:.2f} s")  # fmt: skip
        print(f"  cost per chunk task: {(g - d) / n * 1000:.0f} ms")


if __name__ == "__main__":
    main()
