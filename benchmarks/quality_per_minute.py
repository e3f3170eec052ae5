"""Quality per minute (issue 5, figure 2): ganpipe's default training config against the plain
conditional DCGAN a team writes by hand (benchmarks/_reference.py), both trained for the same
wall-clock time on the demo dataset, judged by a style classifier trained on real images only.

Three judgements, per style then averaged:
- style accuracy: share of samples the classifier puts in the style they were asked for;
- Fréchet distance between samples and real images in the classifier's feature space;
- diversity ratio: mean pairwise feature distance among a style's samples over that among its
  real images (1 = as varied as the data; a collapsed style tends to 0).

    python benchmarks/quality_per_minute.py [--minutes M] [--per-style 256]

Both get the same wall-clock budget (--minutes, default the config's train.max_minutes), spent
in alternating slices of --slice seconds (default 60), so a machine that is busier at one moment
than another slows both alike. ganpipe's slices are real `train` calls that stop at their time
budget and resume from the checkpoint, so its checkpoint, resume and export costs are inside its
budget.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import torch
from _reference import PlainDCGAN
from torch import nn
from torch.nn import functional as F

from ganpipe.config import load_config
from ganpipe.data.dataset import load_dataset, to_tensor
from ganpipe.generation.render import latent
from ganpipe.registry import load_registry
from ganpipe.stages.ingest import ingest
from ganpipe.stages.styles import load_styles, styles
from ganpipe.stats.metrics import frechet_distance
from ganpipe.store import RunStore
from ganpipe.store.checkpoints import load_network
from ganpipe.training.train import train


class StyleClassifier(nn.Module):
    """A small CNN; its penultimate layer is the feature space of the judgements."""

    def __init__(self, num_styles: int, features: int = 32):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 32, 3, 1, 1), nn.LeakyReLU(0.2), nn.AvgPool2d(2),
            nn.Conv2d(32, 64, 3, 1, 1), nn.LeakyReLU(0.2), nn.AvgPool2d(2),
            nn.Conv2d(64, 64, 3, 1, 1), nn.LeakyReLU(0.2),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, features), nn.LeakyReLU(0.2),
        )  # fmt: skip
        self.head = nn.Linear(features, num_styles)

    def forward(self, x):
        return self.head(self.body(x))


def fit_classifier(images, labels, num_styles, steps=600, seed=0):
    torch.manual_seed(seed)
    clf = StyleClassifier(num_styles)
    opt = torch.optim.Adam(clf.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(len(images), (64,), generator=gen)
        x = images[idx]
        # Flips and shifts keep it from keying on exact positions of one training image.
        if torch.rand(()) < 0.5:
            x = x.flip(3)
        x = torch.roll(x, shifts=tuple(torch.randint(-4, 5, (2,)).tolist()), dims=(2, 3))
        loss = F.cross_entropy(clf(x), labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return clf.eval()


@torch.inference_mode()
def judge(clf, fakes, fake_styles, reals, real_styles, num_styles) -> dict[str, float]:
    f_feat, r_feat = clf.body(fakes), clf.body(reals)
    accuracy = float((clf.head(f_feat).argmax(1) == fake_styles).float().mean())
    fds, ratios = [], []
    for s in range(num_styles):
        f, r = f_feat[fake_styles == s], r_feat[real_styles == s]
        fds.append(frechet_distance(f, r))
        ratios.append(float(_mean_pairwise(f) / _mean_pairwise(r).clamp_min(1e-8)))
    return {
        "style_accuracy": accuracy,
        "fd": float(np.mean(fds)),
        "diversity_ratio": float(np.mean(ratios)),
    }


def _mean_pairwise(x):
    d = torch.cdist(x, x)
    return d.sum() / (len(x) * (len(x) - 1))


@torch.inference_mode()
def sample(G, num_styles, per_style):
    z = torch.stack([latent(seed, G.z_dim) for seed in range(per_style)])
    images, styles_idx = [], []
    for s in range(num_styles):
        for i in range(0, per_style, 256):
            images.append(G(z[i : i + 256], torch.full((len(z[i : i + 256]),), s)))
        styles_idx.append(torch.full((per_style,), s))
    return torch.cat(images).clamp(-1, 1), torch.cat(styles_idx)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=None, help="budget for both")
    parser.add_argument("--slice", type=float, default=60.0, help="seconds per turn")
    parser.add_argument("--per-style", type=int, default=256, help="samples judged per style")
    parser.add_argument("--set", action="append", default=[], help="ganpipe config overrides")
    parser.add_argument("--no-plain", action="store_true", help="skip the plain loop (tuning)")
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="ganpipe-bench-quality-")
    overrides = [f"store.root={root}", *args.set]
    cfg = load_config(None, overrides)
    budget = 60 * (args.minutes if args.minutes is not None else cfg.train.max_minutes)
    store = RunStore.from_config(cfg)
    registry = load_registry(cfg)
    ingest(cfg, store)
    styles(cfg, store)
    dataset = load_dataset(store, cfg.dataset.name)
    table, assignments = load_styles(store, dataset.fingerprint, cfg.style.encoder)
    num_styles = len(table.names)
    style_of = dict(zip(assignments["id"], assignments["style"]))
    manifest = dataset.manifest
    labels_all = torch.tensor([table.names.index(style_of[i]) for i in manifest["id"]])
    pixels_all = to_tensor(dataset.load_pixels(manifest))
    is_train = torch.from_numpy((manifest["split"] == "train").to_numpy().copy())

    print(f"cores: {os.cpu_count()}, torch threads: {torch.get_num_threads()}, "
          f"python {sys.version.split()[0]}")  # fmt: skip
    print(f"demo dataset: {len(manifest)} images, {num_styles} styles, "
          f"{cfg.dataset.image_size} px\n")  # fmt: skip

    # The judge: trained on real images only, checked on the held-out split.
    clf = fit_classifier(pixels_all[is_train], labels_all[is_train], num_styles)
    with torch.inference_mode():
        val = ~is_train
        val_acc = float((clf(pixels_all[val]).argmax(1) == labels_all[val]).float().mean())
    print(f"style classifier: held-out accuracy on real images {val_acc:.3f}")

    plain = PlainDCGAN(pixels_all[is_train], labels_all[is_train], num_styles)
    spent = {"ganpipe": 0.0, "plain": 0.0}
    finished = {"ganpipe": False, "plain": args.no_plain}
    result = None
    while not all(finished.values()):
        if not finished["ganpipe"]:
            turn = min(args.slice, budget - spent["ganpipe"])
            sliced = load_config(None, [*overrides, f"train.max_minutes={turn / 60}"])
            t0 = time.perf_counter()
            result = train(sliced, store, registry)
            spent["ganpipe"] += time.perf_counter() - t0
            finished["ganpipe"] = (
                spent["ganpipe"] >= budget - 1 or result.steps_done >= cfg.train.steps
            )
        # The plain loop gets the wall-clock ganpipe used (its budget, or less if it finished
        # its steps sooner), however many steps that is.
        allowed = spent["ganpipe"] if finished["ganpipe"] else budget
        if not finished["plain"] and spent["plain"] < allowed - 1:
            turn = min(args.slice, allowed - spent["plain"])
            t0 = time.perf_counter()
            plain.train(10**9, cfg.train.batch_size, seconds=turn)
            spent["plain"] += time.perf_counter() - t0
        finished["plain"] = finished["plain"] or (
            finished["ganpipe"] and spent["plain"] >= spent["ganpipe"] - 1
        )
    G_ours, _ = load_network(store, f"models/{cfg.model_name}/{result.version}", "generator",
                             registry)  # fmt: skip
    print(f"ganpipe default: {result.steps_done} steps in {spent['ganpipe']:.0f} s")
    models = {"ganpipe default": G_ours}
    if not args.no_plain:
        print(f"plain DCGAN:     {plain.steps} steps in {spent['plain']:.0f} s\n")
        models = {"plain DCGAN": plain.G.eval(), **models}

    rows = {}
    for name, G in models.items():
        fakes, fake_styles = sample(G, num_styles, args.per_style)
        rows[name] = judge(clf, fakes, fake_styles, pixels_all, labels_all, num_styles)
    real_half = judge(  # real vs real: the best a generator could score here
        clf, pixels_all[~is_train], labels_all[~is_train], pixels_all[is_train],
        labels_all[is_train], num_styles,
    )  # fmt: skip
    rows["real (held-out)"] = real_half

    print(f"{'':18s} {'style acc ↑':>12s} {'FD ↓':>10s} {'diversity ratio →1':>20s}")
    for name, m in rows.items():
        print(f"{name:18s} {m['style_accuracy']:12.3f} {m['fd']:10.3f} "
              f"{m['diversity_ratio']:20.3f}")  # fmt: skip
    if args.no_plain:
        return
    ours, plain = rows["ganpipe default"], rows["plain DCGAN"]
    wins = {
        "style accuracy": ours["style_accuracy"] > plain["style_accuracy"],
        "FD": ours["fd"] < plain["fd"],
        "diversity": abs(1 - ours["diversity_ratio"]) < abs(1 - plain["diversity_ratio"]),
    }
    print("\nganpipe default better on: " + ", ".join(f"{k} {'yes' if v else 'NO'}"
                                                      for k, v in wins.items()))  # fmt: skip


if __name__ == "__main__":
    main()
