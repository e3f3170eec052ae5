"""What happens beside the optimisation steps, as observers the loop calls at their intervals:
metric rows, checkpoints and sample grids (in the manner of Lightning's callbacks and of
stylegan2-ada's ``training_stats``).

The loop (``Trainer._loop``) knows only that after each step it calls ``after_step`` on each
observer, in order; each observer decides from the step number whether its interval has come.
The order is part of the resume contract: a checkpoint holds the metric rows logged up to its
step, so metrics come before checkpoints.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ganpipe.config import TrainConfig


class Loop(Protocol):
    """What observers ask of the training loop (``Trainer`` has it): this module does not
    import the trainer, which imports it."""

    world: Any  # training.distributed.World

    def log_metrics(self, step_no: int, losses: Any) -> None: ...

    def checkpoint(self, step_no: int) -> None: ...

    def sample(self, step_no: int) -> None: ...


class Observer(Protocol):
    def after_step(self, trainer: Loop, step_no: int, losses: Any) -> None: ...


class Metrics:
    """A metric row every ``log_every`` steps and at the last step."""

    def __init__(self, every: int, last: int):
        self.every, self.last = every, last

    def after_step(self, trainer: Loop, step_no: int, losses: Any) -> None:
        if step_no % self.every == 0 or step_no == self.last:
            trainer.log_metrics(step_no, losses)


class Checkpoints:
    """A checkpoint every ``checkpoint_every`` steps before the last (the loop's end saves
    the last one)."""

    def __init__(self, every: int, last: int):
        self.every, self.last = every, last

    def after_step(self, trainer: Loop, step_no: int, losses: Any) -> None:
        if step_no % self.every == 0 and step_no < self.last:
            trainer.checkpoint(step_no)


class SampleGrids:
    """A grid of the EMA generator's images every ``sample_every`` steps (rank 0)."""

    def __init__(self, every: int | None):
        self.every = every

    def after_step(self, trainer: Loop, step_no: int, losses: Any) -> None:
        if self.every and trainer.world.is_main and step_no % self.every == 0:
            trainer.sample(step_no)


def default_observers(t: TrainConfig) -> list[Observer]:
    """The observers every run has, in the order the resume contract needs."""
    return [Metrics(t.log_every, t.steps), Checkpoints(t.checkpoint_every, t.steps),
            SampleGrids(t.sample_every)]  # fmt: skip
