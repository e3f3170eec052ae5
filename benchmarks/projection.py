"""Projection: seconds per image and the PSNR reached against steps, at 32 and 64 px, for both
built-in generators on 2 cores; plus a picture of held-out demo images beside their
reconstructions (docs/images/projection_demo.png).

Each model is trained briefly on the demo (``--train-steps``) in one run; held-out images are
demo images the model never saw (indices past the training set).

    python benchmarks/projection.py [--train-steps 300] [--images 3]
    python benchmarks/projection.py --sizes 64 --demo-training --steps 100,300   # the picture
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ganpipe.config import load_config
from ganpipe.data import demo
from ganpipe.data.dataset import to_pixels
from ganpipe.data.images import grid
from ganpipe.domain.model_pointers import current_model, promote
from ganpipe.generation.render import latent
from ganpipe.registry import load_registry
from ganpipe.stages.ingest import ingest
from ganpipe.stages.project import _load, project_one
from ganpipe.stages.styles import styles
from ganpipe.stages.train import train
from ganpipe.store import RunStore

STEPS = (50, 100, 300, 600)
HELD_OUT = ("stripes", "checker", "dots", "rings", "clouds", "mosaic")


def trained(root: str, name: str, size: int, steps: int | None):
    """A model of ``name`` at ``size`` px: ``steps`` steps on 24 demo images per style, or
    (None) the demo's own training (64 per style, ``train.max_minutes``)."""
    overrides = [f"store.root={root}", f"dataset.image_size={size}", "style.num_styles=6",
                 f"model.generator={name}"]  # fmt: skip
    if steps is not None:
        overrides += ["dataset.demo_per_style=24", f"train.steps={steps}",
                      "train.max_minutes=null", f"train.checkpoint_every={steps}"]  # fmt: skip
    cfg = load_config(None, overrides)
    store = RunStore.from_config(cfg)
    ingest(cfg, store)
    styles(cfg, store)
    result = train(cfg, store)
    promote(store, result.model, result.version)
    return overrides, store


def png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--sizes", default="32,64")
    parser.add_argument("--steps", default=",".join(map(str, STEPS)))
    parser.add_argument("--demo-training", action="store_true",
                        help="train as the demo does (train.max_minutes) instead")  # fmt: skip
    args = parser.parse_args()
    train_steps = None if args.demo_training else args.train_steps
    how = "the demo's own training" if train_steps is None else f"{train_steps} steps"
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
          f"{torch.__version__}; models trained on the demo: {how}")  # fmt: skip
    print("| generator | size | steps | s/image | PSNR held-out (dB) | PSNR own sample (dB) |")
    print("|---|---|---|---|---|---|")
    pictures = []
    sizes = [int(v) for v in args.sizes.split(",")]
    for size in sizes:
        for name in ("dcgan", "stylegan"):
            with tempfile.TemporaryDirectory() as tmp:
                overrides, store = trained(f"{tmp}/store", name, size, train_steps)
                held = [png(demo.render(HELD_OUT[i % 6], 9000 + i, size=size))
                        for i in range(args.images)]  # fmt: skip
                for steps in [int(v) for v in args.steps.split(",")]:
                    cfg = load_config(None, overrides + [f"project.steps={steps}"])
                    model = _load(cfg, store, load_registry(cfg), current_model(cfg, store))
                    g = model.generator
                    with torch.no_grad():
                        own = to_pixels(g(latent(123, g.z_dim)[None], torch.tensor([2])))[0]
                    own_png = png(Image.fromarray(own))
                    began, values, pairs = time.perf_counter(), [], []
                    for i, data in enumerate(held):
                        _, rec, target, fig = project_one(cfg, model, f"held-{i}.png", data)
                        values.append(fig["psnr"])
                        pairs += [target, rec]
                    seconds = (time.perf_counter() - began) / len(held)
                    own_psnr = project_one(cfg, model, "own.png", own_png)[3]["psnr"]
                    print(
                        f"| {name} | {size} | {steps} | {seconds:.1f} | "
                        f"{np.mean(values):.1f} | {own_psnr:.1f} |",
                        flush=True,
                    )
                    if steps == 300 and size == max(sizes):
                        pictures.append(np.stack(pairs))
    out = Path("docs/images/projection_demo.png")
    out.parent.mkdir(parents=True, exist_ok=True)
    grid(np.concatenate(pictures), cols=2 * args.images, pad=4, scale=2).save(out)
    print(
        f"picture: {out} (rows: dcgan, stylegan at 64 px, 300 steps; each pair: held-out "
        "image, reconstruction)"
    )


if __name__ == "__main__":
    main()
