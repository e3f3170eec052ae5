"""Generation throughput benchmark (issue 6): images per second written to a store as PNG files,
ganpipe's ``generate`` against the loop a team would write by hand (render a batch with the
same generator, then save each image with PIL, one after another), same model, same images.

The model is a freshly initialised DCGAN at 64 px: throughput does not depend on training. Its
weights are jittered and its batch-norm statistics calibrated, so the images are as varied (and
as costly to compress) as a trained model's rather than nearly flat.

    python benchmarks/generation_throughput.py [--count 1536] [--rounds 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from ganpipe.builtin.nets import DCGANGenerator
from ganpipe.config import load_config
from ganpipe.data.dataset import to_pixels
from ganpipe.domain.model_pointers import ModelRef
from ganpipe.domain.style_table import StyleTable
from ganpipe.generation.render import latent
from ganpipe.stages.generate import generate
from ganpipe.store import RunStore, layout
from ganpipe.store.checkpoints import export_network

STYLES = 6
SIZE = 64


def make_model(root: str) -> ModelRef:
    torch.manual_seed(0)
    options = {"num_styles": STYLES, "image_size": SIZE}
    generator = DCGANGenerator(**options)
    with torch.no_grad():
        for p in generator.parameters():
            p.add_(torch.randn_like(p) * 0.02)
        generator.train()
        for _ in range(5):
            generator(torch.randn(128, generator.z_dim), torch.randint(0, STYLES, (128,)))
    names = [f"style-{i}" for i in range(STYLES)]
    table = StyleTable(names, [1] * STYLES, torch.zeros(STYLES, 8), [[] for _ in names], "none", {})
    meta = {"styles": table.to_json(), "dataset_fingerprint": "none", "version": "v-bench",
            "model": "bench", "steps": 0}  # fmt: skip
    store = RunStore(root)
    folder = layout.model_dir("bench", "v-bench")
    export_network(store, folder, "generator", "dcgan", options, generator.eval(), meta)
    return ModelRef(store, folder)


def naive(model: ModelRef, target: Path, per_style: int, batch: int) -> int:
    """Render a batch, then save each image with PIL (PNG, its default compression)."""
    from ganpipe.registry import load_registry
    from ganpipe.store.checkpoints import load_network

    generator, _ = load_network(
        model.store, model.folder, "generator", load_registry(load_config())
    )
    jobs = [(s, seed) for s in range(STYLES) for seed in range(per_style)]
    for start in range(0, len(jobs), batch):
        part = jobs[start : start + batch]
        z = torch.stack([latent(seed, generator.z_dim) for _, seed in part])
        with torch.no_grad():
            images = to_pixels(generator(z, torch.tensor([s for s, _ in part])))
        for (s, seed), px in zip(part, images):
            folder = target / f"style-{s}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(px).save(folder / f"{seed:08d}.png")
    return len(jobs)


def ours(model: ModelRef, target: Path, per_style: int, batch: int, *extra: str) -> int:
    cfg = load_config(None, [f"store.root={target}", f"generate.per_style={per_style}",
                             f"generate.batch_size={batch}", *extra])  # fmt: skip
    return generate(cfg, model.store, model=model, out=RunStore(str(target))).written


def profile(model: ModelRef, target: Path, per_style: int, batch: int) -> None:
    """Where the time goes: rendering alone (each way), PNG encoding alone, store writes."""
    from ganpipe.data.images import encode
    from ganpipe.generation.render import Renderer
    from ganpipe.registry import load_registry
    from ganpipe.stages.generate import plan_batch
    from ganpipe.store.checkpoints import load_network

    cfg = load_config(None, [f"store.root={target}", f"generate.per_style={per_style}"])
    registry = load_registry(cfg)
    plan = plan_batch(cfg, model.store, registry, model)
    jobs = plan.jobs[: min(len(plan.jobs), 4 * batch)]
    generator, _ = load_network(model.store, model.folder, "generator", registry)

    def forward() -> int:
        for start in range(0, len(jobs), batch):
            part = jobs[start : start + batch]
            z = torch.stack([latent(j.latent_from.seed, generator.z_dim) for j in part])
            with torch.no_grad():
                to_pixels(generator(z, torch.tensor([j.style_from.index for j in part])))
        return len(jobs)

    threads = torch.get_num_threads()
    rows = f"{threads} torch thread{'s' * (threads > 1)}, batches of {batch}"
    print(f"  naive render ({rows}): {timed(forward):7.0f} img/s")
    renderer = Renderer(load_network(model.store, model.folder, "generator", registry)[0], plan)
    torch.set_num_threads(max(1, threads - 1))
    pixels = renderer.render(jobs[:64])
    print(f"  ganpipe render (1 thread, channels-last passes of 32): "
          f"{timed(lambda: len(renderer.render(jobs))):7.0f} img/s")  # fmt: skip
    torch.set_num_threads(threads)
    pixels = renderer.render(jobs)
    print(f"  PNG encode alone (one thread): {timed(lambda: len([encode(p) for p in pixels])):7.0f}"
          " img/s")  # fmt: skip
    store, blob = RunStore(str(target / "writes")), encode(pixels[0])
    writes = lambda: len([store.write_bytes(f"{i}.png", blob) for i in range(len(jobs))])  # noqa: E731
    print(f"  atomic store writes alone (one thread): {timed(writes):7.0f} files/s")


def timed(fn, *args) -> float:
    began = time.perf_counter()
    n = fn(*args)
    return n / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=1536, help="images per run")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (cores used)")
    parser.add_argument("--set", action="append", default=[], help="extra ganpipe overrides")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    per_style = args.count // STYLES
    work = Path(tempfile.mkdtemp(prefix="ganpipe-bench-generate-"))
    model = make_model(str(work / "models"))
    print(f"cores: {os.cpu_count()}, torch threads: {torch.get_num_threads()}, "
          f"python {sys.version.split()[0]}, torch {torch.__version__}")  # fmt: skip
    print(f"{per_style * STYLES} images, DCGAN {SIZE} px, PNG, batch {args.batch}; "
          f"load average before: {os.getloadavg()[0]:.1f}\n")  # fmt: skip

    # Alternate the two, several rounds, and compare medians: on a shared machine the noise
    # would otherwise decide the ratio. Every run writes into an empty folder.
    plain, gp = [], []
    for r in range(args.rounds):
        plain.append(timed(naive, model, work / f"naive-{r}", per_style, args.batch))
        gp.append(timed(ours, model, work / f"ours-{r}", per_style, args.batch, *args.set))
        print(f"round {r + 1}: naive {plain[-1]:7.0f} img/s   ganpipe {gp[-1]:7.0f} img/s")

    sizes = [sum(p.stat().st_size for p in (work / name).rglob("*.png")) / per_style / STYLES
             for name in ("naive-0", "ours-0")]  # fmt: skip
    a, b = statistics.median(plain), statistics.median(gp)
    print(f"\nnaive loop (render a batch, PIL save one by one): {a:7.0f} img/s, "
          f"{sizes[0] / 1024:.1f} KiB per image")  # fmt: skip
    print(f"ganpipe generate:                                  {b:7.0f} img/s, "
          f"{sizes[1] / 1024:.1f} KiB per image")  # fmt: skip
    print(f"ratio: {b / a:.2f}x")
    print("\nwhere the time goes:")
    profile(model, work / "profile", per_style, args.batch)
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
