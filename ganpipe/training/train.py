"""Train stage: a style-conditioned GAN, every component chosen by registered name.

A model version is named by a hash of what determines its weights (dataset, styles, model and
training settings), so training the same thing twice resumes or reuses instead of starting over,
and new data gives a new version beside the old one. Budgets (``train.steps`` and
``train.max_minutes``) end the run at whichever comes first; a later run resumes to ``steps``.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import torch

from ganpipe.config import Config
from ganpipe.data.dataset import TrainingImages, load_dataset, to_pixels
from ganpipe.data.images import encode, grid
from ganpipe.errors import ConfigError, GanpipeError, PluginError, StoreError
from ganpipe.hashing import stable_hash
from ganpipe.progress import log, step
from ganpipe.registry import KINDS, Registry, load_registry
from ganpipe.stages.styles import encoder_for, load_styles
from ganpipe.store import RunStore, layout, read_uri
from ganpipe.store.checkpoints import (
    export_network,
    load_checkpoint_bytes,
    newest_valid_checkpoint,
    save_checkpoint,
)
from ganpipe.training.distributed import World, join, local_device
from ganpipe.training.mixed_precision import resolve_precision

# Settings that change the budget or bookkeeping, not what a finished model is.
_NOT_IN_VERSION = (
    "max_minutes",
    "resume",
    "device",
    "checkpoint_every",
    "log_every",
    "sample_every",
    "channels_last",
    "tensorboard",
)


class NonFiniteLoss(GanpipeError):
    pass


@dataclass
class TrainResult:
    model: str
    version: str
    uri: str
    steps_done: int
    steps_target: int
    seconds: float
    images_per_second: float
    final_metrics: dict[str, float] = field(default_factory=dict)
    reused: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def model_version(config: Config, dataset_fp: str, styles_hash: str) -> str:
    train = config.train.model_dump(mode="json", exclude=set(_NOT_IN_VERSION))
    model = config.model.model_dump(mode="json", exclude={"name"})
    return "v-" + stable_hash(
        {
            "dataset": dataset_fp,
            "styles": styles_hash,
            "model": model,
            "train": train,
            "image_size": config.dataset.image_size,
        },
        length=12,
    )


def planned_version(config: Config, store: RunStore, fingerprint: str) -> str | None:
    """The model version this config trains on the dataset ``fingerprint``, or None while its
    styles are not there yet."""
    try:
        table, _ = load_styles(store, fingerprint, config.style.encoder)
    except StoreError:
        return None
    return model_version(config, fingerprint, stable_hash(table.to_json()))


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(
            f"unknown device {name!r}", where="train.device", fix="use auto, cpu, cuda or cuda:N"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "train.device asks for CUDA but no CUDA device is available",
            where="train.device",
            fix="use auto or cpu, or install a CUDA build",
        )
    return device


@dataclass
class TrainingContext:
    """What ``bind(context)`` gives a regulariser that needs the run's styles."""

    style_encoder: torch.nn.Module
    centroids: torch.Tensor
    style_names: list[str]


@dataclass
class TrainState:
    """What event hooks see; plugins may read it, not replace its members."""

    step: int
    generator: torch.nn.Module
    discriminator: torch.nn.Module
    ema: torch.nn.Module
    config: Config


def train(config: Config, store: RunStore, registry: Registry | None = None) -> TrainResult:
    registry = registry or load_registry(config)
    t = config.train

    # Load training set.
    dataset = load_dataset(store, config.dataset.name)
    table, assignments = load_styles(store, dataset.fingerprint, config.style.encoder)
    styles_hash = stable_hash(table.to_json())
    version = model_version(config, dataset.fingerprint, styles_hash)
    folder = layout.model_dir(config.model_name, version)
    ckpt_folder = f"{folder}/checkpoints"
    result_base = dict(model=config.model_name, version=version, uri=store.uri(folder))
    if store.exists(f"{folder}/training.json"):
        done = store.read_json(f"{folder}/training.json")
        if done["steps_done"] >= t.steps:
            log.info("model %s/%s is already trained", config.model_name, version)
            return TrainResult(**{**done, **result_base, "reused": True})

    rows = dataset.manifest[dataset.manifest["split"] == "train"]
    if len(rows) == 0:  # a tiny dataset may have every image in val
        rows = dataset.manifest
    style_of = dict(zip(assignments["id"], assignments["style"]))
    styles_of_rows = np.array([table.names.index(style_of[i]) for i in rows["id"]])
    device = local_device(pick_device(t.device))
    precision = resolve_precision(t.precision, t.channels_last, device)
    world = join(device)
    reals = TrainingImages(dataset, rows, styles_of_rows, t.data_memory_mb, t.batch_size, t.seed)
    num_styles = len(table.names)

    # Construct networks.
    torch.manual_seed(t.seed)
    size = config.dataset.image_size
    g_options = {"num_styles": num_styles, "image_size": size, **config.model.generator_options}
    d_options = {"num_styles": num_styles, "image_size": size, **config.model.discriminator_options}
    G = registry.create(
        "generator", config.model.generator, config_key="model.generator_options", **g_options
    )
    D = registry.create(
        "discriminator",
        config.model.discriminator,
        config_key="model.discriminator_options",
        **d_options,
    )
    G, D = precision.prepare(G.to(device)), precision.prepare(D.to(device))
    # ema_decay 0: no EMA copy at all, the live generator is exported (as a plain loop would).
    ema = G if t.ema_decay == 0 else copy.deepcopy(G).eval().requires_grad_(False)
    loss = registry.create("loss", t.loss, config_key="train.loss_options", **t.loss_options)
    regs = [
        registry.create("regularizer", n, config_key=f"train.regularizers.{n}", **o)
        for n, o in t.regularizers.items()
    ]
    augs = [
        registry.create("augmentation", n, config_key=f"train.augmentations.{n}", **o)
        for n, o in t.augmentations.items()
    ]
    checked = _Checked(registry)
    reg_names = list(t.regularizers)
    penalizers = [("regularizer", n, r) for n, r in zip(reg_names, regs)]
    if callable(getattr(loss, "d_penalty", None)):
        penalizers.append(("loss", t.loss, loss))
    if any(callable(getattr(r, "bind", None)) for r in regs):
        encoder = encoder_for(registry, dataset, table.encoder, table.encoder_options, size)
        context = TrainingContext(encoder.to(device), table.centroids.to(device), table.names)
        for r in regs:
            if callable(getattr(r, "bind", None)):
                r.bind(context)
    opt_g = torch.optim.Adam(G.parameters(), lr=t.lr_g, betas=t.betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=t.lr_d, betas=t.betas)
    scaler_g, scaler_d = precision.scaler(), precision.scaler()
    # Batches, latents and augmentations; each rank draws its own (rank 0 as a single process).
    rng = torch.Generator().manual_seed(t.seed + 1_000_003 * world.rank)

    # Resume.
    start, rows, lr_scale, rollbacks = 0, [], 1.0, 0

    def restore(state: dict) -> None:
        nonlocal rows, lr_scale
        try:
            G.load_state_dict(state["generator"])
            D.load_state_dict(state["discriminator"])
            ema.load_state_dict(state["ema"])
            opt_g.load_state_dict(state["opt_g"])
            opt_d.load_state_dict(state["opt_d"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise ConfigError(
                f"the checkpoint does not fit this model ({str(exc).splitlines()[0][:160]})",
                where="train.resume",
                fix="resume from a checkpoint of the same model settings, or use never",
            ) from None
        if "scaler_g" in state:
            scaler_g.load_state_dict(state["scaler_g"])
            scaler_d.load_state_dict(state["scaler_d"])
        rng.set_state(state["rng"])
        torch.set_rng_state(state["torch_rng"])
        rows = [dict(zip(state["metric_names"], r)) for r in state["metrics"].tolist()]
        lr_scale = float(state.get("lr_scale", 1.0))
        _scale_learning_rates(opt_g, opt_d, t, lr_scale)

    def snapshot(step_no: int) -> dict:
        names = sorted(rows[0]) if rows else []
        state = {
            "generator": G.state_dict(),
            "discriminator": D.state_dict(),
            "ema": ema.state_dict(),
            "opt_g": opt_g.state_dict(),
            "opt_d": opt_d.state_dict(),
            "rng": rng.get_state(),
            "torch_rng": torch.get_rng_state(),
            "step": step_no,
            "lr_scale": lr_scale,
            "dataset_fingerprint": dataset.fingerprint,
            "version": version,
            "metric_names": names,
            "metrics": torch.tensor([[r[n] for n in names] for r in rows], dtype=torch.float64),
        }
        if scaler_g.is_enabled():
            state["scaler_g"], state["scaler_d"] = scaler_g.state_dict(), scaler_d.state_dict()
        return state

    resumed = _resume(store, ckpt_folder, t.resume, dataset.fingerprint)
    if resumed is not None:
        start, state = resumed
        restore(state)
        if not world.is_main:  # the checkpoint holds rank 0's stream; others start a fresh one
            rng.manual_seed(t.seed + 1_000_003 * world.rank + start)
        log.info("resuming %s/%s from step %d", config.model_name, version, start)
    world.broadcast(G)
    world.broadcast(D)
    # What a rollback returns to: the newest checkpoint, kept in memory on every rank.
    last_good = copy.deepcopy(snapshot(start)) if t.on_nonfinite == "rollback" else None

    def checkpoint(step_no: int) -> None:
        nonlocal last_good
        if t.on_nonfinite == "rollback":
            last_good = copy.deepcopy(snapshot(step_no))
        if not world.is_main:
            return
        uri = save_checkpoint(store, ckpt_folder, step_no, snapshot(step_no))
        registry.notify(
            "ganpipe_checkpoint_saved", uri=uri, state=TrainState(step_no, G, D, ema, config)
        )

    def augment(x: torch.Tensor) -> torch.Tensor:
        for name, a in zip(t.augmentations, augs):
            shape = x.shape
            x = checked.call("augmentation", name, a, x, rng)
            if x.shape != shape:
                problem = f"changed the image shape from {tuple(shape)} to {tuple(x.shape)}"
                raise checked.error("augmentation", name, problem + "; it must keep it")
        return x

    # Main loop.
    batch = min(t.batch_size, len(reals))
    board = _tensorboard(store, folder) if t.tensorboard and world.is_main else None
    began, stopped_by_time, step_no = time.monotonic(), False, start
    with step(
        f"train {config.model_name}/{version}", total=t.steps, unit=("img", batch * world.size)
    ) as advance:
        advance(start)
        while step_no < t.steps:
            step_no += 1
            real, s_real = reals.batch(step_no, batch, rng, device)
            real = precision.layout(real)
            half = batch // 2  # fakes come in pairs of one style (see ganpipe_regularizers)
            s = torch.cat([s_real[:half], s_real[:half], s_real[2 * half :]])
            z = torch.randn(batch, G.z_dim, generator=rng).to(device)

            try:
                # Discriminator step.
                with precision.autocast():
                    fake = G(z, s)
                    if fake.shape != real.shape:
                        raise checked.error(
                            "generator", config.model.generator,
                            f"made images of shape {tuple(fake.shape[1:])} for image_size "
                            f"{size}; expected {tuple(real.shape[1:])}",
                        )  # fmt: skip
                    real_logits = D(augment(real), s_real)
                    d_loss = checked.loss(t.loss, loss.d_loss, real_logits,
                                          D(augment(fake.detach()), s))  # fmt: skip
                    d_total = _plus(d_loss, (
                        checked.call(k, n, r.d_penalty, D, real, fake, s_real, step_no)
                        for k, n, r in penalizers
                    ))  # fmt: skip
                _check_finite(d_total, step_no, "discriminator loss", t, world, device)
                _optimise(d_total, opt_d, D, scaler_d, world, t.grad_clip)

                # Generator step.
                with precision.autocast():
                    fake_logits = D(augment(fake), s)
                    g_loss = checked.loss(t.loss, loss.g_loss, fake_logits, real_logits.detach())
                    g_total = _plus(g_loss, (
                        checked.call("regularizer", n, r.g_penalty, fake, z, s, step_no)
                        for n, r in zip(reg_names, regs)
                    ))  # fmt: skip
                _check_finite(g_total, step_no, "generator loss", t, world, device)
                _optimise(g_total, opt_g, G, scaler_g, world, t.grad_clip)
            except NonFiniteLoss as exc:
                if last_good is None or rollbacks >= t.max_rollbacks:
                    if rollbacks:
                        exc.what += f" (after {rollbacks} rollbacks)"
                    raise
                rollbacks += 1
                back_to = int(last_good["step"])
                restore(copy.deepcopy(last_good))
                lr_scale *= t.rollback_lr_factor
                _scale_learning_rates(opt_g, opt_d, t, lr_scale)
                log.warning(
                    "%s; rolled back to step %d with learning rates x%g (rollback %d of %d)",
                    exc.what, back_to, lr_scale, rollbacks, t.max_rollbacks,
                )  # fmt: skip
                advance(back_to - step_no + 1)
                step_no = back_to
                continue
            world.broadcast(G, buffers_only=True)
            if ema is not G:
                _update_ema(ema, G, t.ema_decay)
            advance(1)

            if step_no % t.log_every == 0 or step_no == t.steps:
                metrics = {
                    "step": float(step_no),
                    "loss_d": d_loss.item(),
                    "loss_g": g_loss.item(),
                    "real_logit": real_logits.float().mean().item(),
                    "fake_logit": fake_logits.float().mean().item(),
                    "lr_scale": lr_scale,
                    "seconds": time.monotonic() - began,
                }
                rows.append(metrics)
                if board is not None:
                    for name, value in metrics.items():
                        if name != "step":
                            board.add_scalar(f"train/{name}", value, step_no)
                registry.notify(
                    "ganpipe_train_step_end",
                    state=TrainState(step_no, G, D, ema, config),
                    metrics=metrics,
                )
            if step_no % t.checkpoint_every == 0 and step_no < t.steps:
                checkpoint(step_no)
            if world.is_main and t.sample_every and step_no % t.sample_every == 0:
                grid_pixels = _sample_grid(ema, num_styles, device)
                store.write_bytes(f"{folder}/samples/step-{step_no:08d}.png", encode(grid_pixels))
                if board is not None:
                    board.add_image("samples", np.asarray(grid_pixels), step_no, dataformats="HWC")
            over = t.max_minutes is not None and time.monotonic() - began > t.max_minutes * 60
            if t.max_minutes is not None and world.any(over, device):
                stopped_by_time = True
                log.warning(
                    "train.max_minutes=%s reached at step %d of %d", t.max_minutes, step_no, t.steps
                )
                break
    if board is not None:
        board.close()
    seconds = time.monotonic() - began
    if step_no > start or resumed is None:
        checkpoint(step_no)

    # Export (rank 0 only; the others hold the same weights).
    trained = step_no - start
    result = TrainResult(
        **result_base,
        steps_done=step_no,
        steps_target=t.steps,
        seconds=round(seconds, 2),
        images_per_second=round(trained * batch * world.size / max(seconds, 1e-9), 1),
        final_metrics={k: v for k, v in (rows[-1] if rows else {}).items() if k != "step"},
    )
    if not world.is_main:
        world.close()
        return result
    _recalibrate_batchnorm(ema, num_styles, device, t.seed)
    meta = {
        "styles": table.to_json(),
        "dataset_fingerprint": dataset.fingerprint,
        "version": version,
        "model": config.model_name,
        "steps": step_no,
    }
    export_network(store, folder, "generator", config.model.generator, g_options, ema, meta)
    export_network(store, folder, "discriminator", config.model.discriminator, d_options, D, meta)
    metrics_frame = pd.DataFrame(rows)
    store.write_parquet(f"{folder}/metrics.parquet", metrics_frame)
    store.write_bytes(f"{folder}/samples.png", encode(_sample_grid(ema, num_styles, device)))
    store.write_text(f"{folder}/config.yaml", config.to_yaml())
    if not stopped_by_time:
        store.write_json(f"{folder}/training.json", result.to_dict())  # last: marks it finished
    world.close()
    return result


def _resume(store: RunStore, folder: str, policy: str, dataset_fp: str):
    if policy == "never":
        return None
    if policy == "auto":
        found = newest_valid_checkpoint(store, folder)
    else:
        data = read_uri(policy, what="the checkpoint", where="train.resume",
                        fix="use auto, never, or the URI of a step-XXXXXXXX.pt file")  # fmt: skip
        state = load_checkpoint_bytes(data, policy)
        found = (int(state["step"]), state)
    if found is not None and found[1].get("dataset_fingerprint") != dataset_fp:
        raise StoreError(
            "the checkpoint was trained on another dataset "
            f"({found[1].get('dataset_fingerprint')}, this one is {dataset_fp})",
            where="train.resume",
            fix="use resume: auto or never",
        )
    return found


def _plus(loss: torch.Tensor, penalties) -> torch.Tensor:
    """The loss plus every penalty a regulariser returned this step (None: not this step)."""
    for p in penalties:
        if p is not None:
            loss = loss + p
    return loss


def _check_finite(value: torch.Tensor, step_no: int, what: str, t, world: World, device) -> None:
    """Stop on a non-finite loss, on every rank together (one rank alone would hang the rest)."""
    if world.any(not bool(torch.isfinite(value)), device):
        fix = (
            "lower train.lr_d / train.lr_g, add the r1 regularizer, or set "
            "train.on_nonfinite: rollback"
            if t.on_nonfinite == "stop"
            else "lower train.lr_d / train.lr_g or add the r1 regularizer"
        )
        raise NonFiniteLoss(
            f"the {what} became {value.item()} at step {step_no} (loss {t.loss!r})",
            where="train",
            fix=fix + " (a new model version, trained from scratch); this run's checkpoints "
            "are kept",
        )


class _Checked:
    """Calls into plugin components; what goes wrong there is named as the plugin's fault
    (component, plugin, hook) instead of surfacing as a traceback from deep in the loop."""

    def __init__(self, registry: Registry):
        self.registry = registry

    def error(self, kind: str, name: str, problem: str) -> PluginError:
        plugin = self.registry.get(kind, name).plugin
        return PluginError(
            f"{kind} {name!r} ({plugin}) {problem}",
            where=KINDS[kind][0],
            fix="fix or replace the plugin ('ganpipe plugins' lists where each component "
            "comes from), or choose another component in the config",
        )

    def call(self, kind: str, name: str, fn, *args):
        try:
            return fn(*args)
        except GanpipeError:
            raise
        except Exception as exc:
            raise self.error(kind, name, f"failed: {type(exc).__name__}: {exc}") from exc

    def loss(self, name: str, fn, *args) -> torch.Tensor:
        value = self.call("loss", name, fn, *args)
        if not isinstance(value, torch.Tensor) or value.numel() != 1:
            got = type(value).__name__ if not isinstance(value, torch.Tensor) else (
                f"a tensor of shape {tuple(value.shape)}"
            )  # fmt: skip
            raise self.error("loss", name, f"returned {got}; a loss must return a scalar tensor")
        return value


def _optimise(loss, opt, module, scaler, world: World, grad_clip: float | None) -> None:
    """One optimiser step: (scaled) backward, gradients averaged across ranks, clipped in true
    units, then the step (which the fp16 scaler skips if a gradient overflowed)."""
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss.float()).backward()
    world.average_gradients(module)
    if grad_clip is not None:
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(module.parameters(), grad_clip)
    scaler.step(opt)
    scaler.update()


def _scale_learning_rates(opt_g, opt_d, t, scale: float) -> None:
    for opt, base in ((opt_g, t.lr_g), (opt_d, t.lr_d)):
        for group in opt.param_groups:
            group["lr"] = base * scale


def _tensorboard(store: RunStore, folder: str):
    """A TensorBoard writer into the model folder (a local store), or under the local cache
    (TensorBoard cannot write to object stores by itself); tells where either way."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError(
            "train.tensorboard is on but the tensorboard package is not installed",
            where="train.tensorboard",
            fix="pip install tensorboard (or 'ganpipe[tensorboard]'), or set it to false",
        ) from None
    from pathlib import Path

    from ganpipe.data.demo import cache_dir

    if store.local:
        local = Path(store.path(f"{folder}/tensorboard"))
    else:
        local = cache_dir() / "tensorboard" / folder
    log.info("TensorBoard events in %s (tensorboard --logdir %s)", local, local)
    return SummaryWriter(log_dir=str(local))


@torch.no_grad()
def _update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p, 1.0 - decay)
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)


@torch.no_grad()
def _recalibrate_batchnorm(model: torch.nn.Module, num_styles: int, device, seed: int) -> None:
    """Batch-norm statistics were gathered by the live generator, not by the EMA weights; redo
    them for the EMA weights so eval-mode samples match training-mode ones."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    gen = torch.Generator().manual_seed(seed)
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    model.train()
    for _ in range(16):
        z = torch.randn(256, model.z_dim, generator=gen).to(device)
        s = torch.randint(num_styles, (256,), generator=gen).to(device)
        model(z, s)
    model.eval()


@torch.no_grad()
def _sample_grid(generator: torch.nn.Module, num_styles: int, device, per_style: int = 8):
    """One row per style, the same latents in every row; leaves the generator's mode as it was
    (sampling mid-training must not touch batch-norm statistics)."""
    was_training = generator.training
    generator.eval()
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(per_style, generator.z_dim, generator=gen).to(device)
    rows = [
        to_pixels(generator(z, torch.full((per_style,), s, device=device)))
        for s in range(num_styles)
    ]
    generator.train(was_training)
    return grid(np.concatenate(rows), cols=per_style, scale=2)
