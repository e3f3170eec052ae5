"""Train stage: a style-conditioned GAN, every component chosen by registered name.

A model version is named by a hash of what determines its weights (dataset, styles, model and
training settings), so training the same thing twice resumes or reuses instead of starting over,
and new data gives a new version beside the old one. Budgets (``train.steps`` and
``train.max_minutes``) end the run at whichever comes first; a later run resumes to ``steps``.

The loop itself is ``trainer.Trainer``; set-up is ``setup.build_trainer``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ganpipe.config import Config
from ganpipe.contracts.contexts import TrainingContext, TrainState
from ganpipe.domain.style_table import load_styles
from ganpipe.errors import StoreError
from ganpipe.hashing import stable_hash
from ganpipe.progress import log
from ganpipe.registry import Registry, load_registry
from ganpipe.store import RunStore, layout
from ganpipe.training.setup import build_trainer, pick_device
from ganpipe.training.steps import NonFiniteLoss
from ganpipe.training.trainer import RunOutcome
from ganpipe.training.training_data import load_training_data
from ganpipe.training.warm_start import resolve_init

__all__ = [
    "NonFiniteLoss",
    "TrainResult",
    "TrainState",
    "TrainingContext",
    "model_version",
    "pick_device",
    "planned_version",
    "train",
]

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
    "init",  # enters as the resolved start (which model, which weights), not as written
)


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
    init: str = "scratch"  # where the weights started (warm_start.InitSource.identity)

    def to_dict(self) -> dict:
        return asdict(self)


def model_version(config: Config, dataset_fp: str, styles_hash: str,
                  init: str = "scratch") -> str:  # fmt: skip
    """``init``: the resolved start (``warm_start.resolve_init``); a scratch start adds
    nothing, so versions trained from scratch keep the names they always had."""
    train = config.train.model_dump(mode="json", exclude=set(_NOT_IN_VERSION))
    if train["optimizer"] == "adam" and not train["optimizer_options"]:
        del train["optimizer"], train["optimizer_options"]  # the default: versions keep names
    model = config.model.model_dump(mode="json", exclude={"name"})
    identity = {
        "dataset": dataset_fp,
        "styles": styles_hash,
        "model": model,
        "train": train,
        "image_size": config.dataset.image_size,
    }
    if init != "scratch":
        identity["init"] = init
    return "v-" + stable_hash(identity, length=12)


def planned_version(config: Config, store: RunStore, fingerprint: str) -> str | None:
    """The model version this config trains on the dataset ``fingerprint``, or None while its
    styles are not there yet."""
    try:
        table, _ = load_styles(store, fingerprint, config.style.encoder)
    except StoreError:
        return None
    return model_version(config, fingerprint, stable_hash(table.to_json()),
                         resolve_init(config, store).identity)  # fmt: skip


def train(config: Config, store: RunStore, registry: Registry | None = None) -> TrainResult:
    registry = registry or load_registry(config)
    data = load_training_data(config, store)
    start = resolve_init(config, store)
    version = model_version(config, data.dataset.fingerprint, data.styles_hash, start.identity)
    files = layout.ModelFiles(layout.model_dir(config.model_name, version))
    identity = dict(model=config.model_name, version=version, uri=store.uri(files.folder))
    done = _finished(store, files)
    if done is not None and done.get("steps_done", 0) >= config.train.steps:
        log.info("model %s/%s is already trained", config.model_name, version)
        return TrainResult(**{**done, **identity, "reused": True})

    trainer = build_trainer(config, store, registry, data, version, files, start)
    outcome = trainer.fit()
    result = _result(identity, outcome, trainer, config.train.steps)
    result.init = start.identity
    if trainer.world.is_main:  # only rank 0 writes; the others hold the same weights
        trainer.export(outcome.steps_done)
        if not outcome.stopped_by_time:
            store.write_json(files.training, result.to_dict())  # last: marks it finished
    trainer.world.close()
    return result


def _finished(store: RunStore, files: layout.ModelFiles) -> dict | None:
    """``training.json`` of a finished version whose exported files are intact; None when it
    is not finished, or when its record or an exported file is damaged: the run then resumes
    from the newest checkpoint (at the last step, training nothing) and exports again."""
    if not store.exists(files.training):
        return None
    from safetensors.numpy import load as load_safetensors

    try:
        done = store.read_json(files.training, dict)
        for net in ("generator", "discriminator"):
            store.read_json(files.network(net, "json"), dict)
            try:
                load_safetensors(store.read_bytes(files.network(net)))
            except StoreError:
                raise
            except Exception as exc:
                raise store.damaged(
                    files.network(net), f"unreadable ({type(exc).__name__})"
                ) from None
        return done
    except StoreError as exc:
        log.warning("%s; exporting the model again from its newest checkpoint", exc.what)
        store.remove(files.training)
        return None


def _result(identity: dict, outcome: RunOutcome, trainer, steps_target: int) -> TrainResult:
    trained = outcome.steps_done - trainer.start
    images = trained * trainer.batch * trainer.world.size
    last_row = trainer.metric_rows[-1] if trainer.metric_rows else {}
    return TrainResult(
        **identity,
        steps_done=outcome.steps_done,
        steps_target=steps_target,
        seconds=round(outcome.seconds, 2),
        images_per_second=round(images / max(outcome.seconds, 1e-9), 1),
        final_metrics={k: v for k, v in last_row.items() if k != "step"},
    )
