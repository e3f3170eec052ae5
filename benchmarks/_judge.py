"""Judges for the quality benchmark, trained on real images only and independent of ganpipe's
networks and style encoders.

- ``StyleJudge``: a small CNN classifier of the collection's styles. Its penultimate layer is
  the feature space for Fréchet distance, improved precision/recall (k = 3) and the diversity
  ratio; its head gives style accuracy. Every figure is per style, then averaged.
- ``DigitJudge``: a digit classifier for the stacked-digits collection; a sample counts towards
  a mode only when all three channels are recognised confidently (PacGAN's protocol).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ganpipe.stats.metrics import diversity_ratio_per_style, frechet_distance, precision_recall


class _SmallCNN(nn.Module):
    def __init__(self, channels: int, classes: int, features: int = 64):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 32, 3, 1, 1), nn.LeakyReLU(0.2), nn.AvgPool2d(2),
            nn.Conv2d(32, 64, 3, 1, 1), nn.LeakyReLU(0.2), nn.AvgPool2d(2),
            nn.Conv2d(64, 128, 3, 1, 1), nn.LeakyReLU(0.2),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, features), nn.LeakyReLU(0.2),
        )  # fmt: skip
        self.head = nn.Linear(features, classes)

    def forward(self, x):
        return self.head(self.body(x))


def _fit(build, images, labels, steps: int, seed: int, shift: int = 3) -> nn.Module:
    """Trains ``build()``; seeded before the network is built, so that its initial weights,
    and so every figure judged with it, do not depend on what the process ran before."""
    torch.manual_seed(seed)
    model = build()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(len(images), (64,), generator=gen)
        x = images[idx]
        # Flips and shifts keep it from keying on exact positions of one training image.
        if torch.rand((), generator=gen) < 0.5:
            x = x.flip(3)
        x = torch.roll(x, tuple(torch.randint(-shift, shift + 1, (2,), generator=gen).tolist()),
                       dims=(2, 3))  # fmt: skip
        loss = F.cross_entropy(model(x), labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


class StyleJudge:
    def __init__(self, images: torch.Tensor, labels: torch.Tensor, num_styles: int,
                 steps: int = 800, seed: int = 0):  # fmt: skip
        self.num_styles = num_styles
        self.model = _fit(lambda: _SmallCNN(3, num_styles), images, labels, steps, seed)

    @torch.inference_mode()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.model.body(images[i : i + 512]) for i in range(0, len(images), 512)])

    @torch.inference_mode()
    def accuracy(self, images: torch.Tensor, labels: torch.Tensor) -> float:
        logits = self.model.head(self.features(images))
        return float((logits.argmax(1) == labels).float().mean())

    @torch.inference_mode()
    def judge(self, fakes, fake_styles, reals, real_styles) -> dict[str, float]:
        """Per style, then averaged: FD, precision, recall, diversity ratio; style accuracy over
        all samples."""
        f_feat, r_feat = self.features(fakes), self.features(reals)
        accuracy = float((self.model.head(f_feat).argmax(1) == fake_styles).float().mean())
        fds, precisions, recalls = [], [], []
        for s in range(self.num_styles):
            f, r = f_feat[fake_styles == s], r_feat[real_styles == s]
            fds.append(frechet_distance(f, r))
            p, rc = precision_recall(r, f, k=3)
            precisions.append(p)
            recalls.append(rc)
        ratios = diversity_ratio_per_style(r_feat, real_styles, f_feat, fake_styles)
        return {
            "fd": float(np.mean(fds)),
            "precision": float(np.mean(precisions)),
            "recall": float(np.mean(recalls)),
            "accuracy": accuracy,
            "diversity": float(np.mean(list(ratios.values()))),
            "worst_recall": float(np.min(recalls)),
        }


class DigitJudge:
    """Recognises one digit per channel; trained on scikit-learn's digits alone."""

    def __init__(self, size: int, steps: int = 1500, seed: int = 0, confidence: float = 0.9):
        from _quality_data import digit_images

        images, labels = digit_images(size)
        x = torch.from_numpy(images)[:, None] * 2 - 1
        labels_t = torch.from_numpy(labels)
        self.model = _fit(lambda: _SmallCNN(1, 10), x, labels_t, steps, seed, shift=2)
        self.confidence = confidence
        held = torch.from_numpy(images[::7])[:, None] * 2 - 1
        with torch.inference_mode():
            self.train_accuracy = float(
                (self.model(held).argmax(1) == torch.from_numpy(labels[::7])).float().mean()
            )

    @torch.inference_mode()
    def modes(self, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """The mode of each image (100 r + 10 g + b) and whether all three digits were
        recognised with at least ``confidence``."""
        n = len(images)
        channels = images.reshape(n * 3, 1, *images.shape[2:])
        probs = torch.cat([F.softmax(self.model(channels[i : i + 1024]), 1)
                           for i in range(0, len(channels), 1024)])  # fmt: skip
        p, digit = probs.max(1)
        p, digit = p.reshape(n, 3), digit.reshape(n, 3)
        mode = (digit[:, 0] * 100 + digit[:, 1] * 10 + digit[:, 2]).numpy()
        return mode, (p >= self.confidence).all(1).numpy()

    def coverage(self, images: torch.Tensor) -> dict[str, float]:
        """Modes hit (of 1,000), KL(sample modes || uniform) over confidently recognised
        samples, and the share of samples recognised confidently."""
        mode, sure = self.modes(images)
        counts = np.bincount(mode[sure], minlength=1000).astype(np.float64)
        q = counts / max(counts.sum(), 1)
        nz = q > 0
        kl = float(np.sum(q[nz] * np.log(q[nz] * 1000))) if counts.sum() else float("inf")
        return {"modes": int((counts > 0).sum()), "kl": kl, "recognised": float(sure.mean())}
