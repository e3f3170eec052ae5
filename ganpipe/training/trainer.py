"""The training loop and the state it carries from step to step.

A ``Trainer`` holds one run's networks, optimisers, loss scalers, random stream, metric rows and
rollback state; its methods are the loop's parts (``gan_step``, ``checkpoint``, ``restore``,
``log_metrics``, ``sample``, ``export``), so what changes between steps lives in one place
instead of in closures. What is drawn from the random streams, and in which order, is part of
the contract: a resumed run must end with exactly the weights of an uninterrupted one.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from ganpipe.config import Config
from ganpipe.contracts.contexts import TrainState
from ganpipe.data.images import encode
from ganpipe.errors import ConfigError
from ganpipe.progress import log, step
from ganpipe.registry import Registry
from ganpipe.store import RunStore, layout
from ganpipe.store.checkpoints import export_network, save_checkpoint
from ganpipe.training.components import Networks
from ganpipe.training.distributed import World
from ganpipe.training.mixed_precision import Precision
from ganpipe.training.objective import GanObjective
from ganpipe.training.observers import Observer, default_observers
from ganpipe.training.optimizers import make_optimizer
from ganpipe.training.rollback import RollbackPolicy
from ganpipe.training.run_outputs import recalibrate_batchnorm, sample_grid, tensorboard_writer
from ganpipe.training.steps import (
    NonFiniteLoss,
    Phase,
    check_finite,
    ema_decay_at,
    plus,
    update_ema,
)

if TYPE_CHECKING:
    from ganpipe.data.dataset import TrainingImages
    from ganpipe.training.training_data import TrainingData

# Ranks draw from streams this far apart, so no two ranks see the same batches.
_RANK_STRIDE = 1_000_003


@dataclass
class Placement:
    """Where this process computes: its rank among the ranks, its device and precision."""

    world: World
    device: torch.device
    precision: Precision


@dataclass
class StepLosses:
    """What one GAN step reports to the metric rows."""

    d_loss: torch.Tensor
    g_loss: torch.Tensor
    real_logits: torch.Tensor
    fake_logits: torch.Tensor


@dataclass
class RunOutcome:
    steps_done: int
    seconds: float
    stopped_by_time: bool  # train.max_minutes ended it before train.steps


class Trainer:
    """One run: built by ``setup.build_trainer``, then ``fit`` and (rank 0) ``export``."""

    def __init__(self, config: Config, store: RunStore, registry: Registry, data: TrainingData,
                 version: str, files: layout.ModelFiles, placement: Placement,
                 reals: TrainingImages, nets: Networks, objective: GanObjective,
                 ema_rampup: bool = False,
                 observers: list[Observer] | None = None):  # fmt: skip
        """``ema_rampup``: warm the EMA up (``train.ema_rampup``, settled by ``build_trainer``);
        ``observers``: what runs after each step (default: metrics, checkpoints, samples)."""
        t = config.train
        self.config, self.store, self.registry = config, store, registry
        self.data, self.version, self.files = data, version, files
        self.world, self.device = placement.world, placement.device
        self.precision = placement.precision
        self.reals, self.nets, self.objective = reals, nets, objective
        self.ema_rampup = ema_rampup
        self.observers = default_observers(t) if observers is None else observers
        self.num_styles = len(data.table.names)
        self.batch = min(t.batch_size, len(reals))
        G, D = nets.G, nets.D
        opt_g = make_optimizer(t, G.parameters(), t.lr_g)
        opt_d = make_optimizer(t, D.parameters(), t.lr_d)
        self.g_phase = Phase("generator", G, opt_g, self.precision.scaler(), t.lr_g)
        self.d_phase = Phase("discriminator", D, opt_d, self.precision.scaler(), t.lr_d)
        # Batches, latents and augmentations; each rank draws its own (rank 0 as a single process).
        self.rng = torch.Generator().manual_seed(t.seed + _RANK_STRIDE * self.world.rank)
        self.rollback = RollbackPolicy.from_config(t)
        self.metric_rows: list[dict[str, float]] = []
        self.lr_scale = 1.0
        self.start = 0  # the step this run began at (a checkpoint's, when resumed)
        self.resumed = False
        self.last_good: dict | None = None  # what a rollback returns to
        self.board = None  # TensorBoard writer, when asked for (rank 0 only)
        self.began = 0.0

    def state(self, step_no: int) -> TrainState:
        components = {f"{kind}:{name}": c for kind, name, c in self.objective.components()}
        return TrainState(step_no, self.nets.G, self.nets.D, self.nets.ema, self.config, components)

    # --- Checkpoints -------------------------------------------------------------------------

    def snapshot(self, step_no: int) -> dict:
        """Everything a resumed run needs to continue exactly as this one would."""
        names = sorted(self.metric_rows[0]) if self.metric_rows else []
        state = {
            "generator": self.nets.G.state_dict(),
            "discriminator": self.nets.D.state_dict(),
            "ema": self.nets.ema.state_dict(),
            "opt_g": self.g_phase.opt.state_dict(),
            "opt_d": self.d_phase.opt.state_dict(),
            "rng": self.rng.get_state(),
            "torch_rng": torch.get_rng_state(),
            "step": step_no,
            "lr_scale": self.lr_scale,
            "dataset_fingerprint": self.data.dataset.fingerprint,
            "version": self.version,
            "metric_names": names,
            "metrics": torch.tensor(
                [[r[n] for n in names] for r in self.metric_rows], dtype=torch.float64
            ),
        }
        components = self.objective.state_dict()
        if components:  # only runs with stateful components carry the key
            state["components"] = components
        if self.g_phase.scaler.is_enabled():
            state["scaler_g"] = self.g_phase.scaler.state_dict()
            state["scaler_d"] = self.d_phase.scaler.state_dict()
        return state

    def restore(self, state: dict) -> None:
        try:
            self.nets.G.load_state_dict(state["generator"])
            self.nets.D.load_state_dict(state["discriminator"])
            self.nets.ema.load_state_dict(state["ema"])
            self.g_phase.opt.load_state_dict(state["opt_g"])
            self.d_phase.opt.load_state_dict(state["opt_d"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise ConfigError(
                f"the checkpoint does not fit this model ({str(exc).splitlines()[0][:160]})",
                where="train.resume",
                fix="resume from a checkpoint of the same model settings, or use never",
            ) from None
        if "scaler_g" in state:
            self.g_phase.scaler.load_state_dict(state["scaler_g"])
            self.d_phase.scaler.load_state_dict(state["scaler_d"])
        self.objective.load_state_dict(state.get("components", {}))
        self.rng.set_state(state["rng"])
        torch.set_rng_state(state["torch_rng"])
        names = state["metric_names"]
        self.metric_rows = [dict(zip(names, r)) for r in state["metrics"].tolist()]
        self.lr_scale = float(state.get("lr_scale", 1.0))
        self._scale_learning_rates()

    def resume(self, found: tuple[int, dict] | None) -> None:
        """Continue from a checkpoint (``found``: its step and state) or start afresh; either
        way every rank then holds rank 0's weights and a rollback has somewhere to return to."""
        if found is not None:
            self.start, state = found
            self.resumed = True
            self.restore(state)
            if not self.world.is_main:  # the checkpoint holds rank 0's stream; others start anew
                seed = self.config.train.seed + _RANK_STRIDE * self.world.rank + self.start
                self.rng.manual_seed(seed)
            log.info(
                "resuming %s/%s from step %d", self.config.model_name, self.version, self.start
            )
        self.world.broadcast(self.nets.G)
        self.world.broadcast(self.nets.D)
        if self.rollback.enabled:
            self.last_good = copy.deepcopy(self.snapshot(self.start))

    def checkpoint(self, step_no: int) -> None:
        """Remember this step for rollbacks (every rank) and save it (rank 0)."""
        if self.rollback.enabled:
            self.last_good = copy.deepcopy(self.snapshot(step_no))
        if not self.world.is_main:
            return
        uri = save_checkpoint(self.store, self.files.checkpoints, step_no, self.snapshot(step_no))
        self.registry.notify("ganpipe_checkpoint_saved", uri=uri, state=self.state(step_no))

    # --- The loop ----------------------------------------------------------------------------

    def fit(self) -> RunOutcome:
        """Train from ``start`` to ``train.steps`` or until ``train.max_minutes``; the last step
        is checkpointed unless nothing was trained since the checkpoint resumed from."""
        t = self.config.train
        if t.tensorboard and self.world.is_main:
            self.board = tensorboard_writer(self.store, self.files)
        self.began = time.monotonic()
        title = f"train {self.config.model_name}/{self.version}"
        with step(title, total=t.steps, unit=("img", self.batch * self.world.size)) as advance:
            advance(self.start)
            step_no, stopped_by_time = self._loop(advance)
        if self.board is not None:
            self.board.close()
        seconds = time.monotonic() - self.began
        if step_no > self.start or not self.resumed:
            self.checkpoint(step_no)
        return RunOutcome(step_no, seconds, stopped_by_time)

    def _loop(self, advance) -> tuple[int, bool]:
        """The steps; returns the last one done and whether the time budget ended them."""
        step_no = self.start
        while step_no < self.config.train.steps:
            step_no += 1
            try:
                losses = self.gan_step(step_no)
            except NonFiniteLoss as exc:
                if not self.rollback.allows(exc):
                    raise
                back_to = self.roll_back(exc)
                advance(back_to - step_no + 1)
                step_no = back_to
                continue
            self.world.broadcast(self.nets.G, buffers_only=True)
            if self.nets.ema is not self.nets.G:
                decay = ema_decay_at(self.config.train.ema_decay, step_no, self.ema_rampup)
                update_ema(self.nets.ema, self.nets.G, decay)
            advance(1)
            for observer in self.observers:
                observer.after_step(self, step_no, losses)
            if self._out_of_time(step_no):
                return step_no, True
        return step_no, False

    def gan_step(self, step_no: int) -> StepLosses:
        """One discriminator phase, then one generator phase on the same fakes."""
        D, objective, rng = self.nets.D, self.objective, self.rng
        real, s_real, s, z = self._draw(step_no)
        with self.precision.autocast():
            fake = self._generate(z, s, real)
            real_logits = D(objective.augment(real, rng), s_real)
            fake_logits_d = D(objective.augment(fake.detach(), rng), s)
            d_loss = objective.d_loss(real_logits, fake_logits_d)
            d_total = plus(d_loss, objective.d_penalties(D, real, fake, s_real, step_no,
                                                         real_logits, fake_logits_d))  # fmt: skip
        self._optimise(self.d_phase, d_total, step_no)
        objective.observe(real_logits)
        with self.precision.autocast():
            fake_logits = D(objective.augment(fake, rng), s)
            g_loss = objective.g_loss(fake_logits, real_logits.detach())
            g_total = plus(g_loss, objective.g_penalties(fake, z, s, step_no))
        self._optimise(self.g_phase, g_total, step_no)
        return StepLosses(d_loss, g_loss, real_logits, fake_logits)

    def _draw(self, step_no: int):
        """This step's real batch with its styles, the styles to generate, and the latents."""
        real, s_real = self.reals.batch(step_no, self.batch, self.rng, self.device)
        real = self.precision.layout(real)
        half = self.batch // 2  # fakes come in pairs of one style (see ganpipe_regularizers)
        s = torch.cat([s_real[:half], s_real[:half], s_real[2 * half :]])
        z = torch.randn(self.batch, self.nets.G.z_dim, generator=self.rng).to(self.device)
        return real, s_real, s, z

    def _generate(self, z: torch.Tensor, s: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        fake = self.nets.G(z, s)
        if fake.shape != real.shape:
            raise self.registry.fault(
                "generator", self.config.model.generator,
                f"made images of shape {tuple(fake.shape[1:])} for image_size "
                f"{self.config.dataset.image_size}; expected {tuple(real.shape[1:])}",
            )  # fmt: skip
        return fake

    def _optimise(self, phase: Phase, total: torch.Tensor, step_no: int) -> None:
        t = self.config.train
        check_finite(total, step_no, phase.what, t, self.world, self.device)
        phase.optimise(total, self.world, t.grad_clip)

    def roll_back(self, exc: NonFiniteLoss) -> int:
        """Return to the last good checkpoint with lower learning rates; the step it was at."""
        back_to = int(self.last_good["step"])
        self.restore(copy.deepcopy(self.last_good))
        self.lr_scale = self.rollback.lowered(self.lr_scale)
        self._scale_learning_rates()
        log.warning(
            "%s; rolled back to step %d with learning rates x%g (rollback %d of %d)",
            exc.what, back_to, self.lr_scale, self.rollback.rollbacks, self.rollback.max_rollbacks,
        )  # fmt: skip
        return back_to

    def _scale_learning_rates(self) -> None:
        for phase in (self.g_phase, self.d_phase):
            phase.scale_learning_rate(self.lr_scale)

    def _out_of_time(self, step_no: int) -> bool:
        """Whether train.max_minutes has passed, decided on every rank together."""
        t = self.config.train
        if t.max_minutes is None:
            return False
        over = time.monotonic() - self.began > t.max_minutes * 60
        if not self.world.any(over, self.device):
            return False
        log.warning(
            "train.max_minutes=%s reached at step %d of %d", t.max_minutes, step_no, t.steps
        )
        return True

    # --- What the run reports and leaves behind ----------------------------------------------

    def log_metrics(self, step_no: int, losses: StepLosses) -> None:
        metrics = {
            "step": float(step_no),
            "loss_d": losses.d_loss.item(),
            "loss_g": losses.g_loss.item(),
            "real_logit": losses.real_logits.float().mean().item(),
            "fake_logit": losses.fake_logits.float().mean().item(),
            "lr_scale": self.lr_scale,
            "seconds": time.monotonic() - self.began,
            **self.objective.metrics(),
        }
        self.metric_rows.append(metrics)
        if self.board is not None:
            for name, value in metrics.items():
                if name != "step":
                    self.board.add_scalar(f"train/{name}", value, step_no)
        self.registry.notify("ganpipe_train_step_end", state=self.state(step_no), metrics=metrics)

    def sample(self, step_no: int) -> None:
        """A grid of the EMA generator's images, one row per style, saved under samples/."""
        picture = sample_grid(self.nets.ema, self.num_styles, self.device)
        self.store.write_bytes(self.files.step_samples(step_no), encode(picture))
        if self.board is not None:
            self.board.add_image("samples", np.asarray(picture), step_no, dataformats="HWC")

    def export(self, steps_done: int) -> None:
        """The exported networks, metrics, final samples and config (rank 0 only; the others
        hold the same weights). The caller writes training.json after this, to mark it done."""
        nets, files, store = self.nets, self.files, self.store
        recalibrate_batchnorm(nets.ema, self.num_styles, self.device, self.config.train.seed)
        meta = {
            "styles": self.data.table.to_json(),
            "dataset_fingerprint": self.data.dataset.fingerprint,
            "version": self.version,
            "model": self.config.model_name,
            "steps": steps_done,
        }
        model = self.config.model
        export_network(store, files.folder, "generator", model.generator, nets.g_options,
                       nets.ema, meta)  # fmt: skip
        export_network(store, files.folder, "discriminator", model.discriminator,
                       nets.d_options, nets.D, meta)  # fmt: skip
        store.write_parquet(files.metrics, pd.DataFrame(self.metric_rows))
        store.write_bytes(
            files.samples, encode(sample_grid(nets.ema, self.num_styles, self.device))
        )
        store.write_text(files.config, self.config.to_yaml())
