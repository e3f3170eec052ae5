"""Training regularisers."""

from __future__ import annotations

import math

import torch

from ganpipe.builtin.nets import per_style_moments
from ganpipe.training.distributed import all_sum


class R1:
    """R1 gradient penalty on real images (Mescheder et al. 2018), applied lazily every
    ``interval`` steps and scaled by it, as StyleGAN2 does, to cost a fraction of the time."""

    def __init__(self, gamma: float = 1.0, interval: int = 4):
        if gamma < 0 or interval < 1:
            raise ValueError("r1 needs gamma >= 0 and interval >= 1")
        self.gamma = gamma
        self.interval = interval

    def d_penalty(self, discriminator, real_images, fake_images, style, step: int):
        if step % self.interval:
            return None
        real = real_images.detach().requires_grad_(True)
        logits = discriminator(real, style)
        (grad,) = torch.autograd.grad(logits.sum(), real, create_graph=True)
        return 0.5 * self.gamma * self.interval * grad.pow(2).sum(dim=(1, 2, 3)).mean()

    def g_penalty(self, fakes, latents, style, step: int):
        return None


class Diversity:
    """Mode-seeking regulariser (Mao et al. 2019, MSGAN): two latents of the same style must
    give images that differ in proportion to how much the latents differ. It counters the
    collapse of a style to one image, the commonest failure of conditional GANs on small data.
    The trainer pairs the two halves of each batch by style, which this relies on.

    MSGAN's term, ``weight / ratio`` (the ratio of image gap to latent gap), rewards ever more
    difference, and past the data's own variety the cheapest difference is noise: samples grow
    grainier the longer a run trains. With ``target: data`` the term stops at the data: it is
    ``weight * max(0, 1 / ratio - 1 / target)``, whose gradient is MSGAN's while a batch's pairs
    differ less than pairs of real images of their styles would, and zero once they differ as
    much. The target is the mean L1 gap between two real images of the same style (running
    sums over the real batches the discriminator step sees, part of the checkpoint) over the
    mean L1 gap of two standard normal latents, 2 / sqrt(pi) per dimension."""

    LATENT_GAP = 2 / math.pi**0.5  # E|a - b| for independent a, b ~ N(0, 1)

    def __init__(self, weight: float = 1.0, eps: float = 1e-5, target: str | None = None):
        if weight < 0:
            raise ValueError("diversity weight must be >= 0")
        if target not in (None, "data"):
            raise ValueError(f"diversity target must be 'data' or null, got {target!r}")
        self.weight, self.eps, self.target = weight, eps, target
        self.gap_sum: torch.Tensor | None = None  # per style, float64: summed pair gaps
        self.pairs: torch.Tensor | None = None  # per style: how many pairs
        self.last_ratio = float("nan")

    def d_penalty(self, discriminator, real_images, fake_images, style, step: int):
        """No penalty on D; with ``target: data`` the reals' same-style gaps are counted."""
        if self.target is not None:
            self._observe_reals(real_images, style)
        return None

    def bind(self, context) -> None:
        """The number of styles (and the device) the running gap sums are kept for."""
        styles = len(context.style_names)
        self.gap_sum = torch.zeros(styles, dtype=torch.float64, device=context.centroids.device)
        self.pairs = torch.zeros_like(self.gap_sum)

    @torch.no_grad()
    def _observe_reals(self, real: torch.Tensor, style: torch.Tensor) -> None:
        if self.gap_sum is None:
            raise RuntimeError("diversity with target: data must be bound to the run's styles")
        if style.is_floating_point():  # weights over the styles: the strongest style
            style = style.argmax(dim=1)
        flat = real.detach().reshape(len(real), -1).double()
        gaps = torch.cdist(flat, flat, p=1) / flat.shape[1]  # mean absolute pixel difference
        same = (style[:, None] == style[None, :]).triu(1).double()  # pairs i < j of one style
        onehot = torch.nn.functional.one_hot(style, len(self.gap_sum)).double()
        # summed over every rank, so every rank (and so a resume) holds the same figures
        found = all_sum(torch.stack([onehot.T @ (gaps * same).sum(1), onehot.T @ same.sum(1)]))
        self.gap_sum += found[0]
        self.pairs += found[1]

    def g_penalty(self, fakes, latents, style, step: int):
        half = fakes.shape[0] // 2
        if half == 0:
            return None
        image_gap = (fakes[:half] - fakes[half : 2 * half]).abs().mean(dim=(1, 2, 3))
        latent_gap = (latents[:half] - latents[half : 2 * half]).abs().mean(dim=1)
        ratio = (image_gap / latent_gap).mean()
        target = self._target_ratio(style[:half]) if self.target is not None else None
        if target is None:
            return self.weight / (ratio + self.eps)
        if target <= 0:  # the styles' real images are all alike: no variety to seek
            self.last_ratio = float("nan")
            return None
        self.last_ratio = float(ratio.detach() / target)
        return self.weight * torch.relu(1 / (ratio + self.eps) - 1 / target)

    def _target_ratio(self, style: torch.Tensor) -> float | None:
        """The image-to-latent gap ratio of real pairs of these styles; None before any."""
        if self.pairs is None or style.is_floating_point():
            return None
        style = style.to(self.pairs.device)
        if bool((self.pairs[style] == 0).any()):
            return None
        gap = (self.gap_sum[style] / self.pairs[style]).mean()
        return float(gap) / self.LATENT_GAP

    def metrics(self) -> dict[str, float]:
        """With ``target: data``: the pairs' gap ratio over the data's (1: as varied as it)."""
        return {"diversity_vs_data": self.last_ratio} if self.target is not None else {}

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The running real gaps (summed over every rank, so the same on each). The logged
        ratio is this rank's and recomputed every step: not state."""
        if self.gap_sum is None:
            return {}
        return {"gap_sum": self.gap_sum.cpu(), "pairs": self.pairs.cpu()}

    def load_state_dict(self, state: dict) -> None:
        if "gap_sum" in state and self.gap_sum is not None:
            device = self.gap_sum.device
            self.gap_sum = state["gap_sum"].to(device, torch.float64)
            self.pairs = state["pairs"].to(device, torch.float64)


class StyleConsistency:
    """Pulls each fake's style embedding (the run's style encoder) towards the centroid of the
    style it was asked for, so samples stay in their style rather than drifting between
    neighbours. Applied every ``interval`` steps, scaled by it."""

    def __init__(self, weight: float = 1.0, interval: int = 1):
        if weight < 0 or interval < 1:
            raise ValueError("style_consistency needs weight >= 0 and interval >= 1")
        self.weight, self.interval = float(weight), int(interval)
        self.encoder = self.centroids = None

    def bind(self, context) -> None:
        self.encoder = context.style_encoder.eval().requires_grad_(False)
        self.centroids = context.centroids

    def d_penalty(self, discriminator, real_images, fake_images, style, step: int):
        return None

    def g_penalty(self, fakes, latents, style, step: int):
        if step % self.interval:
            return None
        embedding = self.encoder(fakes)
        gap = (embedding - self.centroids[style].to(embedding)).pow(2).sum(dim=1)
        return self.weight * self.interval * gap.mean()


class StyleMoments:
    """Matches each style's samples to the style's real images as a distribution, not a point:
    per style, the mean and the per-dimension spread of the fakes' style embeddings are pulled
    to those of the reals. ``style_consistency`` pulls every sample to the centroid, which
    keeps samples in style but shrinks their variety, and hides noise by dragging it to the
    middle; here a style whose samples are too alike is pushed apart as much as one whose
    samples are noisier than its images is pulled in.

    The real statistics are running sums over every real batch the discriminator step sees
    (the data do not change, so a plain average is the best estimate); they are part of the
    checkpoint, so a resume continues exactly. Applied every ``interval`` steps, scaled by it.
    """

    def __init__(self, weight: float = 1.0, interval: int = 2):
        if weight < 0 or interval < 1:
            raise ValueError("style_moments needs weight >= 0 and interval >= 1")
        self.weight, self.interval = float(weight), int(interval)
        self.encoder = None
        self.count = self.total = self.squares = None  # per style, float64, built at bind
        self.last_gap = 0.0

    def bind(self, context) -> None:
        self.encoder = context.style_encoder.eval().requires_grad_(False)
        styles, dims = context.centroids.shape
        device = context.centroids.device
        self.count = torch.zeros(styles, dtype=torch.float64, device=device)
        self.total = torch.zeros(styles, dims, dtype=torch.float64, device=device)
        self.squares = torch.zeros(styles, dims, dtype=torch.float64, device=device)

    def d_penalty(self, discriminator, real_images, fake_images, style, step: int):
        """No penalty on D; the step's reals go into the running per-style statistics."""
        if step % self.interval == 0:
            with torch.no_grad():
                emb = self.encoder(real_images).double()
            onehot = torch.nn.functional.one_hot(style, len(self.count)).to(emb)
            # summed over every rank, so every rank (and so a resume) holds the same statistics
            found = all_sum(torch.cat([onehot.sum(dim=0)[:, None], onehot.T @ emb,
                                       onehot.T @ emb.pow(2)], dim=1))  # fmt: skip
            dims = emb.shape[1]
            self.count += found[:, 0]
            self.total += found[:, 1 : 1 + dims]
            self.squares += found[:, 1 + dims :]
        return None

    def g_penalty(self, fakes, latents, style, step: int):
        if step % self.interval:
            return None
        emb = self.encoder(fakes)
        mean_f, spread_f, n_f = per_style_moments(emb, style, len(self.count))
        count = self.count.clamp(min=1)[:, None]
        mean_r = self.total / count
        var_r = (self.squares / count - mean_r.pow(2)).clamp(min=0) * (
            count / (count - 1).clamp(min=1)
        )
        spread_r = (var_r + 1e-8).sqrt()
        gap = (mean_f - mean_r.to(emb)).pow(2).sum(dim=1) + (spread_f - spread_r.to(emb)).pow(
            2
        ).sum(dim=1)
        used = ((n_f >= 2) & (self.count.to(emb) >= 2)).to(emb) * n_f
        # the figure reported (and checkpointed) is over every rank's samples, so all agree;
        # every rank reaches this call, before any rank-dependent return
        overall = all_sum(torch.stack([(gap * used).sum().detach(), used.sum()]).double())
        if float(overall[1]) > 0:
            self.last_gap = float(overall[0] / overall[1])
        if float(used.sum()) == 0:
            return None
        return self.weight * self.interval * (gap * used).sum() / used.sum()

    def metrics(self) -> dict[str, float]:
        """How far the samples' per-style moments were from the reals' (0: matched)."""
        return {"style_moments_gap": self.last_gap}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"count": self.count.cpu(), "total": self.total.cpu(),
                "squares": self.squares.cpu(), "last_gap": torch.tensor(self.last_gap)}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        device = self.count.device
        self.count = state["count"].to(device, torch.float64)
        self.total = state["total"].to(device, torch.float64)
        self.squares = state["squares"].to(device, torch.float64)
        self.last_gap = float(state["last_gap"])


class LeCam:
    """LeCam regularisation (Tseng et al. 2021, "Regularizing Generative Adversarial Networks
    under Limited Data"): keeps the discriminator's outputs on reals near the running mean of
    its outputs on fakes and vice versa,
    ``R = mean((D(real) - anchor_fake)^2) + mean((D(fake) - anchor_real)^2)``, with the anchors
    exponential moving averages (``decay``) of the mean logits. On small data it stops D's
    predictions from drifting apart, which is what lets it memorise the training set.

    It works on the logits the step already computed (``d_logit_penalty``), so it costs no extra
    discriminator pass; its anchors are part of the checkpoint.
    """

    def __init__(self, weight: float = 0.3, decay: float = 0.99):
        if weight < 0 or not 0 <= decay < 1:
            raise ValueError("lecam needs weight >= 0 and 0 <= decay < 1")
        self.weight, self.decay = float(weight), float(decay)
        self.anchor_real = self.anchor_fake = 0.0
        self.started = False

    def d_penalty(self, discriminator, real_images, fake_images, style, step: int):
        return None

    def g_penalty(self, fakes, latents, style, step: int):
        return None

    def d_logit_penalty(self, real_logits: torch.Tensor, fake_logits: torch.Tensor, step: int):
        """The penalty against the anchors as they were before this step, then the anchors
        move towards this step's mean logits."""
        real, fake = real_logits.detach().float(), fake_logits.detach().float()
        sums = all_sum(torch.stack([real.sum(), fake.sum(), real.new_tensor(real.numel()),
                                    fake.new_tensor(fake.numel())]))  # fmt: skip
        real_mean = float(sums[0] / sums[2])  # over every rank, so every rank's anchors agree
        fake_mean = float(sums[1] / sums[3])
        if not self.started:  # the first step anchors at what it sees, not at 0
            self.anchor_real, self.anchor_fake, self.started = real_mean, fake_mean, True
        penalty = (real_logits.float() - self.anchor_fake).pow(2).mean() + (
            fake_logits.float() - self.anchor_real
        ).pow(2).mean()
        self.anchor_real = self.decay * self.anchor_real + (1 - self.decay) * real_mean
        self.anchor_fake = self.decay * self.anchor_fake + (1 - self.decay) * fake_mean
        return self.weight * penalty

    def metrics(self) -> dict[str, float]:
        return {"lecam_anchor_real": self.anchor_real, "lecam_anchor_fake": self.anchor_fake}

    def state_dict(self) -> dict[str, float]:
        return {"anchor_real": self.anchor_real, "anchor_fake": self.anchor_fake,
                "started": float(self.started)}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        self.anchor_real, self.anchor_fake = (
            float(state["anchor_real"]),
            float(state["anchor_fake"]),
        )
        self.started = bool(state["started"])


REGULARIZERS = {
    "r1": R1,
    "diversity": Diversity,
    "style_consistency": StyleConsistency,
    "style_moments": StyleMoments,
    "lecam": LeCam,
}
