"""Adaptive discriminator augmentation (Karras et al. 2020, "Training Generative Adversarial
Networks with Limited Data").

Why: on a few hundred images per style the discriminator memorises the training set and the
generator collapses onto what it still rewards. Augmenting every image the discriminator sees
(real and fake alike, differentiably) stops the memorising, but a fixed strength either does too
little or leaks into the samples. ADA sets the strength ``p`` from the discriminator's own
overfitting signal ``r = E[sign(D(real))]``: when D is too sure of the reals (``r`` above
``target``), ``p`` rises; when it is not, ``p`` falls.

The operations are per-image and each is applied with probability ``p``: horizontal flip,
integer translation (up to 1/8 of the side, with reflection), brightness, contrast and
saturation, and a cutout. All randomness is drawn from the generator the trainer passes, and
``p`` with the controller's tallies is part of the checkpoint, so a resumed run is
bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from ganpipe.builtin.ada_pipeline import OPERATIONS, augment, check_operations
from ganpipe.training.distributed import all_sum


class AdaptiveAugment:
    """The augmentation pipeline and its p-controller.

    Options: ``target`` (0.6, the value of ``E[sign(D(real))]`` to hold), ``speed`` (images
    over which ``p`` could move from 0 to 1: 500k in the paper; smaller suits short CPU runs),
    ``interval`` (steps between adjustments), ``p`` (the starting strength), ``max_p``,
    ``pipeline`` (``classic``: the subset below, as before; ``bgc``: the paper's full blit,
    geometric and colour pipeline, ``ada_pipeline.py``, with ``ops`` choosing its operations),
    and ``cutout`` (either pipeline; 0 turns it off).
    """

    def __init__(self, target: float = 0.6, speed: int = 20_000, interval: int = 4,
                 p: float = 0.0, max_p: float = 0.8, translation: float = 0.125,
                 cutout: float = 0.25, pipeline: str = "classic",
                 ops: list[str] | None = None):  # fmt: skip
        if not 0 < target < 1 or speed < 1 or interval < 1 or not 0 <= p <= max_p <= 1:
            raise ValueError(
                "ada needs 0 < target < 1, speed >= 1, interval >= 1 and 0 <= p <= max_p <= 1"
            )
        if not 0 <= translation < 0.5 or not 0 <= cutout < 1:
            raise ValueError("ada translation must be in [0, 0.5) and cutout in [0, 1)")
        self.target, self.speed, self.interval = float(target), int(speed), int(interval)
        self.max_p, self.translation, self.cutout = float(max_p), translation, cutout
        if pipeline not in ("classic", "bgc"):
            raise ValueError("ada pipeline must be 'classic' or 'bgc'")
        if ops is not None and pipeline != "bgc":
            raise ValueError("ada ops choose operations of the 'bgc' pipeline: set pipeline: bgc")
        self.pipeline = pipeline
        self.ops = check_operations(OPERATIONS if ops is None else ops)
        self.p = float(p)
        self._signs = 0.0  # sum of sign(D(real)) since the last adjustment
        self._seen = 0  # reals observed since the last adjustment
        self._observations = 0  # observe() calls since the last adjustment
        self.last_r = 0.0

    # --- the controller ------------------------------------------------------------------------

    def observe(self, real_logits: torch.Tensor) -> None:
        """Tally the discriminator's verdict on this step's reals; every ``interval`` calls,
        move ``p`` by ``sign(r - target)`` times the images seen over ``speed``."""
        logits = real_logits.detach().float()
        tally = all_sum(torch.stack([torch.sign(logits).sum(), logits.new_tensor(logits.numel())]))
        self._signs += float(tally[0])  # over every rank: all ranks hold the same p
        self._seen += int(tally[1])
        self._observations += 1
        if self._observations >= self.interval:
            self.last_r = self._signs / max(self._seen, 1)
            step = (1.0 if self.last_r > self.target else -1.0) * self._seen / self.speed
            self.p = min(max(self.p + step, 0.0), self.max_p)
            self._signs, self._seen, self._observations = 0.0, 0, 0

    def metrics(self) -> dict[str, float]:
        return {"ada_p": self.p, "ada_r": self.last_r}

    def state_dict(self) -> dict[str, float]:
        return {"p": self.p, "signs": self._signs, "seen": float(self._seen),
                "observations": float(self._observations), "last_r": self.last_r}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        self.p, self._signs = float(state["p"]), float(state["signs"])
        self._seen, self._observations = int(state["seen"]), int(state["observations"])
        self.last_r = float(state["last_r"])

    # --- the augmentations ---------------------------------------------------------------------

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.p <= 0:
            return x
        n = x.shape[0]
        if self.pipeline == "bgc":
            x = augment(x, self.p, self.ops, generator)
            if self.cutout > 0:
                keep = (torch.rand(n, generator=generator) < self.p).to(x.device)
                x = torch.where(keep[:, None, None, None], _cutout(x, self.cutout, generator), x)
            return x

        def chosen() -> torch.Tensor:
            """Which images get the next operation (each with probability p)."""
            return (torch.rand(n, generator=generator) < self.p).to(x.device)[:, None, None, None]

        def uniform(low: float, high: float) -> torch.Tensor:
            u = torch.rand(n, 1, 1, 1, generator=generator).to(x.device, x.dtype)
            return low + (high - low) * u

        x = torch.where(chosen(), x.flip(3), x)
        x = torch.where(chosen(), _translate(x, self.translation, generator), x)
        x = torch.where(chosen(), x + uniform(-0.2, 0.2), x)  # brightness
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = torch.where(chosen(), (x - mean) * uniform(0.7, 1.4) + mean, x)  # contrast
        grey = x.mean(dim=1, keepdim=True)
        x = torch.where(chosen(), (x - grey) * uniform(0.5, 1.5) + grey, x)  # saturation
        if self.cutout > 0:
            x = torch.where(chosen(), _cutout(x, self.cutout, generator), x)
        return x


def _translate(x: torch.Tensor, fraction: float, generator: torch.Generator) -> torch.Tensor:
    """Each image shifted by a whole number of pixels (up to ``fraction`` of the side), with
    the borders reflected so no blank frame tells the discriminator what was done."""
    n, side = x.shape[0], x.shape[-1]
    shift = max(1, int(side * fraction + 0.5))
    dx, dy = (torch.randint(-shift, shift + 1, (2, n), generator=generator)).to(x.device)
    padded = F.pad(x, (shift, shift, shift, shift), mode="reflect")
    rows = torch.arange(side, device=x.device)
    iy = rows[None, :] + dy[:, None] + shift
    ix = rows[None, :] + dx[:, None] + shift
    batch = torch.arange(n, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, iy[:, :, None], ix[:, None, :]].permute(0, 3, 1, 2)


def _cutout(x: torch.Tensor, fraction: float, generator: torch.Generator) -> torch.Tensor:
    n, side = x.shape[0], x.shape[-1]
    size = max(1, int(side * fraction + 0.5))
    cy, cx = torch.randint(0, side - size + 1, (2, n), generator=generator).to(x.device)
    rows = torch.arange(side, device=x.device)
    inside_y = (rows[None] >= cy[:, None]) & (rows[None] < cy[:, None] + size)
    inside_x = (rows[None] >= cx[:, None]) & (rows[None] < cx[:, None] + size)
    return x * (~(inside_y[:, :, None] & inside_x[:, None, :]))[:, None].to(x.dtype)
