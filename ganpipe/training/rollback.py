"""When a loss turns non-finite: roll back to the last checkpoint or give up.

With ``train.on_nonfinite: rollback`` a non-finite loss returns training to its newest
checkpoint with the learning rates lowered by ``rollback_lr_factor``, at most ``max_rollbacks``
times in a run; after that (or with ``stop``) the error ends the run. The policy only decides
and counts; the trainer restores the weights.
"""

from __future__ import annotations

from dataclasses import dataclass

from ganpipe.training.steps import NonFiniteLoss


@dataclass
class RollbackPolicy:
    enabled: bool  # train.on_nonfinite == "rollback"
    max_rollbacks: int
    lr_factor: float
    rollbacks: int = 0  # taken so far in this run

    @classmethod
    def from_config(cls, t) -> RollbackPolicy:
        return cls(t.on_nonfinite == "rollback", t.max_rollbacks, t.rollback_lr_factor)

    def allows(self, exc: NonFiniteLoss) -> bool:
        """Whether to roll back from ``exc``; counts the rollback when it does. When it does
        not, ``exc`` says how many rollbacks came before it (the caller re-raises it)."""
        if not self.enabled or self.rollbacks >= self.max_rollbacks:
            if self.rollbacks:
                exc.what += f" (after {self.rollbacks} rollbacks)"
            return False
        self.rollbacks += 1
        return True

    def lowered(self, lr_scale: float) -> float:
        """The learning-rate scale after one more rollback."""
        return lr_scale * self.lr_factor
