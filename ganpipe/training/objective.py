"""What the GAN step minimises: the chosen loss, the regularisers' penalties and the
augmentations applied before the discriminator sees an image.

Every one of these is a plugin component, so every call goes through ``Registry.call``: a
component that raises or returns the wrong thing is reported as that plugin's fault (component,
plugin, hook) instead of surfacing as a traceback from deep inside the training loop. As in
stylegan2-ada's ``loss.py``, the penalties live with the loss, and the loop asks for totals.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from ganpipe.contracts import (
    Adaptive,
    DiscriminatorPenalty,
    LogitPenalty,
    ReportsMetrics,
    Stateful,
    supports,
)
from ganpipe.registry import Registry


@dataclass
class GanObjective:
    registry: Registry
    loss_name: str
    loss: object
    regularizers: list[tuple[str, object]]  # (name, regulariser), in config order
    augmentations: list[tuple[str, object]]  # (name, augmentation), in config order

    def augment(self, x: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        """Every augmentation in turn; each must keep the image shape."""
        for name, augmentation in self.augmentations:
            shape = x.shape
            x = self.registry.call("augmentation", name, augmentation, x, rng)
            if x.shape != shape:
                problem = f"changed the image shape from {tuple(shape)} to {tuple(x.shape)}"
                raise self.registry.fault("augmentation", name, problem + "; it must keep it")
        return x

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return self._scalar(self.loss.d_loss, real_logits, fake_logits)

    def g_loss(self, fake_logits: torch.Tensor, real_logits: torch.Tensor) -> torch.Tensor:
        return self._scalar(self.loss.g_loss, fake_logits, real_logits)

    def d_penalties(
        self, D, real, fake, s_real, step_no: int, real_logits=None, fake_logits=None
    ) -> Iterator[torch.Tensor | None]:
        """Each regulariser's discriminator penalty (and its penalty on the step's logits, for
        one that has it: LeCam), then the loss's own (WGAN-GP's gradient penalty) if it has
        one; lazily, so each is computed as it is added."""
        for name, reg in self.regularizers:
            yield self.registry.call("regularizer", name, reg.d_penalty, D, real, fake, s_real,
                                     step_no)  # fmt: skip
            if real_logits is not None and supports(reg, LogitPenalty):
                yield self.registry.call("regularizer", name, reg.d_logit_penalty, real_logits,
                                         fake_logits, step_no)  # fmt: skip
        if supports(self.loss, DiscriminatorPenalty):
            yield self.registry.call("loss", self.loss_name, self.loss.d_penalty, D, real, fake,
                                     s_real, step_no)  # fmt: skip

    def g_penalties(self, fake, z, s, step_no: int) -> Iterator[torch.Tensor | None]:
        for name, reg in self.regularizers:
            yield self.registry.call("regularizer", name, reg.g_penalty, fake, z, s, step_no)

    # --- Components with state of their own (ADA's strength, LeCam's anchors) -------------------

    def components(self) -> Iterator[tuple[str, str, object]]:
        """(kind, name, component) of every augmentation and regulariser, in config order."""
        yield from (("augmentation", n, a) for n, a in self.augmentations)
        yield from (("regularizer", n, r) for n, r in self.regularizers)

    def observe(self, real_logits: torch.Tensor) -> None:
        """Tell every adaptive component how the discriminator judged this step's reals."""
        for kind, name, c in self.components():
            if supports(c, Adaptive):
                self.registry.call(kind, name, c.observe, real_logits.detach())

    def state_dict(self) -> dict[str, dict]:
        """The state of every stateful component, by ``kind:name`` (empty when none is)."""
        return {f"{kind}:{name}": self.registry.call(kind, name, c.state_dict)
                for kind, name, c in self.components() if supports(c, Stateful)}  # fmt: skip

    def load_state_dict(self, state: dict[str, dict]) -> None:
        for kind, name, c in self.components():
            if supports(c, Stateful) and f"{kind}:{name}" in state:
                self.registry.call(kind, name, c.load_state_dict, state[f"{kind}:{name}"])

    def metrics(self) -> dict[str, float]:
        """The components' own figures for the training metrics (e.g. ADA's ``ada_p``)."""
        found: dict[str, float] = {}
        for kind, name, c in self.components():
            if supports(c, ReportsMetrics):
                found.update(self.registry.call(kind, name, c.metrics))
        return {k: float(v) for k, v in found.items()}

    def _scalar(self, fn, *args) -> torch.Tensor:
        value = self.registry.call("loss", self.loss_name, fn, *args)
        if not isinstance(value, torch.Tensor) or value.numel() != 1:
            got = type(value).__name__ if not isinstance(value, torch.Tensor) else (
                f"a tensor of shape {tuple(value.shape)}"
            )  # fmt: skip
            raise self.registry.fault(
                "loss", self.loss_name, f"returned {got}; a loss must return a scalar tensor"
            )
        return value
