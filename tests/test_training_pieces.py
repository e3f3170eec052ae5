"""The trainer's small pieces on their own: the rollback policy, a phase's learning rate, the
loss total, the finite-loss check, and the objective's plugin checks."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from ganpipe.errors import ConfigError, PluginError
from ganpipe.registry import load_registry
from ganpipe.training.distributed import World
from ganpipe.training.objective import GanObjective
from ganpipe.training.rollback import RollbackPolicy
from ganpipe.training.setup import find_resume_point
from ganpipe.training.steps import NonFiniteLoss, Phase, check_finite, plus


def nan_error() -> NonFiniteLoss:
    return NonFiniteLoss("the discriminator loss became nan at step 5", where="train")


def test_rollbacks_are_allowed_up_to_the_limit_then_given_up_with_their_count():
    policy = RollbackPolicy(enabled=True, max_rollbacks=2, lr_factor=0.5)
    assert policy.allows(nan_error()) and policy.allows(nan_error())
    assert policy.rollbacks == 2
    last = nan_error()
    assert not policy.allows(last)
    assert last.what.endswith("(after 2 rollbacks)") and "after 2 rollbacks" in last.message
    assert policy.rollbacks == 2


def test_with_rollback_off_a_non_finite_loss_is_given_up_unannotated():
    policy = RollbackPolicy.from_config(
        SimpleNamespace(on_nonfinite="stop", max_rollbacks=3, rollback_lr_factor=0.5)
    )
    exc = nan_error()
    assert not policy.allows(exc)
    assert "rollbacks" not in exc.what


def test_each_rollback_scales_the_learning_rate_by_the_factor():
    policy = RollbackPolicy(enabled=True, max_rollbacks=3, lr_factor=0.5)
    assert policy.lowered(1.0) == 0.5 and policy.lowered(0.5) == 0.25


def test_a_phase_sets_its_learning_rate_from_the_configured_one():
    module = torch.nn.Linear(2, 1)
    opt = torch.optim.Adam(module.parameters(), lr=2e-4)
    phase = Phase("generator", module, opt, torch.amp.GradScaler("cpu", enabled=False), 2e-4)
    phase.scale_learning_rate(0.25)
    assert opt.param_groups[0]["lr"] == pytest.approx(5e-5)
    assert phase.what == "generator loss"


def test_plus_adds_the_penalties_given_this_step():
    total = plus(torch.tensor(1.0), [None, torch.tensor(2.0), None, torch.tensor(0.5)])
    assert total.item() == 3.5


@pytest.mark.parametrize("policy, hint", [("stop", "on_nonfinite: rollback"), ("rollback", "")])
def test_a_non_finite_loss_stops_with_a_fix_that_fits_the_policy(policy, hint):
    t = SimpleNamespace(on_nonfinite=policy, loss="hinge")
    check_finite(torch.tensor(1.0), 3, "generator loss", t, World(), torch.device("cpu"))
    with pytest.raises(NonFiniteLoss) as err:
        check_finite(torch.tensor(float("inf")), 3, "generator loss", t, World(), "cpu")
    assert "the generator loss became inf at step 3 (loss 'hinge')" in err.value.message
    assert hint in err.value.message
    assert ("on_nonfinite" in err.value.message) == bool(hint)


class _Loss:
    def __init__(self, value):
        self.value = value

    def d_loss(self, real, fake):
        return self.value

    g_loss = d_loss

    def d_penalty(self, D, real, fake, s_real, step):
        return torch.tensor(10.0)


class _Penalty:
    def d_penalty(self, D, real, fake, s_real, step):
        return torch.tensor(1.0)

    def g_penalty(self, fake, z, s, step):
        return None


@pytest.fixture
def registry(tiny_config):
    return load_registry(tiny_config)


@pytest.mark.parametrize(
    "value, got",
    [(0.5, "returned float"), (torch.zeros(2), "returned a tensor of shape (2,)")],
)
def test_a_loss_must_return_a_scalar_tensor(registry, value, got):
    objective = GanObjective(registry, "hinge", _Loss(value), [], [])
    with pytest.raises(PluginError) as err:
        objective.d_loss(torch.zeros(2), torch.zeros(2))
    assert f"{got}; a loss must return a scalar tensor" in err.value.message
    assert "loss 'hinge'" in err.value.message and "ganpipe_losses" in err.value.message


def test_the_loss_penalty_comes_after_the_regularisers(registry):
    objective = GanObjective(registry, "hinge", _Loss(torch.tensor(0.0)),
                             [("r1", _Penalty())], [])  # fmt: skip
    penalties = list(objective.d_penalties(None, None, None, None, 1))
    assert [p.item() for p in penalties] == [1.0, 10.0]
    assert list(objective.g_penalties(None, None, None, 1)) == [None]


def test_an_augmentation_that_changes_the_shape_is_named(registry):
    objective = GanObjective(registry, "hinge", _Loss(torch.tensor(0.0)), [],
                             [("diffaugment", lambda x, rng: x[:, :, 1:])])  # fmt: skip
    with pytest.raises(PluginError) as err:
        objective.augment(torch.zeros(2, 3, 4, 4), torch.Generator())
    assert "augmentation 'diffaugment'" in err.value.message
    assert "changed the image shape from (2, 3, 4, 4) to (2, 3, 3, 4); it must keep it" in (
        err.value.message
    )


def test_an_augmentation_that_raises_is_named(registry):
    def broken(x, rng):
        raise ValueError("no")

    objective = GanObjective(registry, "hinge", _Loss(torch.tensor(0.0)), [],
                             [("diffaugment", broken)])  # fmt: skip
    with pytest.raises(PluginError, match="failed: ValueError: no"):
        objective.augment(torch.zeros(1, 3, 4, 4), torch.Generator())


def test_resume_never_finds_nothing():
    assert find_resume_point(None, "models/x/checkpoints", "never", "fp") is None


def test_the_optimiser_comes_from_the_config():
    from ganpipe.config import load_config
    from ganpipe.training.optimizers import make_optimizer

    net = torch.nn.Linear(3, 2)
    adam = make_optimizer(load_config(None).train, net.parameters(), 1e-3)
    assert type(adam) is torch.optim.Adam and adam.defaults["betas"] == (0.5, 0.99)
    t = load_config(None, ["train.optimizer=adamw", "train.optimizer_options={weight_decay: 0.05}",
                           "train.betas=[0.0, 0.9]"]).train  # fmt: skip
    adamw = make_optimizer(t, net.parameters(), 1e-3)
    assert type(adamw) is torch.optim.AdamW
    assert adamw.defaults["weight_decay"] == 0.05 and adamw.defaults["betas"] == (0.0, 0.9)
    bad = load_config(None, ["train.optimizer_options={momentum: 0.9}"]).train
    with pytest.raises(ConfigError, match="adam does not take these options") as err:
        make_optimizer(bad, net.parameters(), 1e-3)
    assert err.value.where == "train.optimizer_options"


def test_observers_run_at_their_intervals_in_the_resume_contract_order():
    """Metrics before checkpoints (a checkpoint holds the rows logged up to its step); the last
    step is logged but left to the loop's end to checkpoint; samples on rank 0 only."""
    from types import SimpleNamespace

    from ganpipe.config import load_config
    from ganpipe.training.observers import default_observers

    t = load_config(None, ["train.steps=10", "train.log_every=4", "train.checkpoint_every=5",
                           "train.sample_every=3"]).train  # fmt: skip
    calls = []
    trainer = SimpleNamespace(
        world=SimpleNamespace(is_main=True),
        log_metrics=lambda step, losses: calls.append(("metrics", step)),
        checkpoint=lambda step: calls.append(("checkpoint", step)),
        sample=lambda step: calls.append(("sample", step)),
    )
    observers = default_observers(t)
    for step_no in range(1, 11):
        for observer in observers:
            observer.after_step(trainer, step_no, None)
    assert calls == [("sample", 3), ("metrics", 4), ("checkpoint", 5), ("sample", 6),
                     ("metrics", 8), ("sample", 9), ("metrics", 10)]  # fmt: skip
    trainer.world.is_main = False
    calls.clear()
    for observer in observers:
        observer.after_step(trainer, 6, None)
    assert calls == []  # not a metrics, checkpoint... step for others; no samples off rank 0
