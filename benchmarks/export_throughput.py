"""Exported generator throughput: images/s of the ONNX file in onnxruntime (CPU) against
ganpipe's own torch renderer, in one run on the same weights, for both built-in generators at
32 and 64 px. Both produce uint8 pixels for 256 seeds in passes of 32 rows on all cores;
neither encodes nor writes images (that cost is the same for both).

    python benchmarks/export_throughput.py [--images 256] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import numpy as np
import onnxruntime as ort
import torch

from ganpipe.config import load_config
from ganpipe.domain.model_pointers import ModelRef, promote
from ganpipe.domain.style_table import load_styles
from ganpipe.export import export_model
from ganpipe.generation.chunks import lazy_renderer
from ganpipe.generation.render import RENDER_ROWS, latent
from ganpipe.registry import load_registry
from ganpipe.stages.generate import plan_batch
from ganpipe.stages.ingest import ingest
from ganpipe.stages.styles import styles
from ganpipe.store import RunStore, layout
from ganpipe.store.checkpoints import export_network


def setup(root: str, size: int, name: str, count: int):
    overrides = [f"store.root={root}", f"dataset.image_size={size}", "dataset.demo_per_style=8",
                 "style.num_styles=6", f"generate.per_style={count // 6}"]  # fmt: skip
    cfg = load_config(None, overrides)
    store = RunStore.from_config(cfg)
    ingest(cfg, store)
    styles(cfg, store)
    registry = load_registry(cfg)
    table, _ = load_styles(store, store.read_json(layout.dataset_latest("demo"))["fingerprint"],
                           cfg.style.encoder)  # fmt: skip
    torch.manual_seed(0)
    options = {"num_styles": 6, "image_size": size}
    generator = registry.create("generator", name, **options).eval()
    meta = {"styles": table.to_json(), "dataset_fingerprint": "bench", "version": name,
            "model": "demo", "steps": 0}  # fmt: skip
    export_network(store, layout.model_dir("demo", name), "generator", name, options,
                   generator, meta)  # fmt: skip
    promote(store, "demo", name)
    return cfg, store, registry, ModelRef(store, layout.model_dir("demo", name))


def best_rate(fn, images: int, repeats: int) -> float:
    fn()  # warm-up: first-call allocations and kernel choices
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return images / min(times)


def measure(size: int, name: str, count: int, repeats: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cfg, store, registry, ref = setup(f"{tmp}/store", size, name, count)
        plan = plan_batch(cfg, store, registry, ref)
        jobs = plan.jobs
        renderer = lazy_renderer(plan, registry)()
        torch_rate = best_rate(lambda: renderer.render(jobs), len(jobs), repeats)
        export_model(ref, registry, "onnx", "uint8", RunStore(f"{tmp}/onnx"))
        options = ort.SessionOptions()
        options.intra_op_num_threads = os.cpu_count() or 1
        session = ort.InferenceSession(f"{tmp}/onnx/generator.onnx", options,
                                       providers=["CPUExecutionProvider"])  # fmt: skip
        eye = np.eye(6, dtype=np.float32)

        def onnx_run():
            out = []
            for start in range(0, len(jobs), RENDER_ROWS):
                part = jobs[start : start + RENDER_ROWS]
                feeds = {
                    "z": torch.stack([latent(j.seed, 64) for j in part]).numpy(),
                    "style": eye[[j.style_from.index for j in part]],
                    "truncation": np.ones(len(part), np.float32),
                }
                out.append(session.run(["images"], feeds)[0])
            return np.concatenate(out)

        onnx_rate = best_rate(onnx_run, len(jobs), repeats)
        same = float((onnx_run() == renderer.render(jobs)).mean())
    return {"generator": name, "size": size, "torch": torch_rate, "onnx": onnx_rate,
            "identical": same}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
          f"{torch.__version__}, onnxruntime {ort.__version__}")  # fmt: skip
    print(
        "| generator | size | torch renderer img/s | onnxruntime img/s | ratio | identical pixels |"
    )
    print("|---|---|---|---|---|---|")
    for name in ("dcgan", "stylegan"):
        for size in (32, 64):
            r = measure(size, name, args.images, args.repeats)
            print(
                f"| {name} | {size} | {r['torch']:.0f} | {r['onnx']:.0f} | "
                f"{r['onnx'] / r['torch']:.2f}x | {r['identical']:.4%} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
