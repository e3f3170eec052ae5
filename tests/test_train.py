import io
import math
import pickle

import pytest
import torch
from safetensors.torch import load as load_safetensors

from ganpipe.config import load_config
from ganpipe.errors import ConfigError, PluginError, StoreError
from ganpipe.registry import load_registry
from ganpipe.stages.ingest import ingest
from ganpipe.stages.styles import styles
from ganpipe.stages.train import NonFiniteLoss, train
from ganpipe.store import RunStore
from ganpipe.store.checkpoints import load_network, newest_valid_checkpoint
from tests.conftest import prepare_tiny_store, tiny_overrides
from tests.fixture_plugins import events, scaled_loss


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A store with the tiny demo dataset ingested and its styles found."""
    return prepare_tiny_store(tmp_path_factory.mktemp("train") / "store")


def config_for(root, *extra):
    return load_config(None, tiny_overrides(root) + list(extra))


def weights(store, result):
    return load_safetensors(store.read_bytes(f"models/demo/{result.version}/generator.safetensors"))


def test_training_exports_a_generator_that_renders_each_style(prepared):
    cfg = config_for(prepared, "train.steps=40", "train.sample_every=20", "train.grad_clip=5.0")
    store = RunStore.from_config(cfg)
    result = train(cfg, store)
    assert result.steps_done == 40 and not result.reused
    folder = f"models/demo/{result.version}"
    for name in [
        "generator.safetensors",
        "generator.json",
        "discriminator.safetensors",
        "metrics.parquet",
        "samples.png",
        "config.yaml",
        "training.json",
    ]:
        assert store.exists(f"{folder}/{name}"), name
    metrics = store.read_parquet(f"{folder}/metrics.parquet")
    assert list(metrics["step"]) == [10, 20, 30, 40]
    assert store.listdir(f"{folder}/samples") == ["step-00000020.png", "step-00000040.png"]
    G, meta = load_network(store, folder, "generator", load_registry(cfg))
    assert len(meta["styles"]["names"]) == 6
    with torch.no_grad():
        z = torch.randn(1, G.z_dim).repeat(6, 1)
        images = G(z, torch.arange(6))
    assert images.shape == (6, 3, 16, 16)
    assert torch.cdist(images.flatten(1), images.flatten(1)).triu(1).max() > 0.5

    again = train(cfg, store)
    assert again.reused and again.version == result.version


def test_interrupted_training_resumes_to_the_same_weights(prepared):
    extra = [
        "train.steps=8",
        "train.checkpoint_every=3",
        "train.log_every=1",
        "plugins=[tests.fixture_plugins.events]",
    ]
    straight_root = prepared.parent / "straight"
    import shutil

    shutil.copytree(prepared, straight_root)
    cfg_a = config_for(straight_root, *extra)
    a = train(cfg_a, RunStore.from_config(cfg_a))

    cfg_b = config_for(prepared, *extra)
    store_b = RunStore.from_config(cfg_b)
    events.CRASH_AT["step"] = 5
    try:
        with pytest.raises(PluginError) as err:  # the observer's crash, named as a plugin's
            train(cfg_b, store_b)
        assert isinstance(err.value.__cause__, events.SimulatedCrash)
    finally:
        events.CRASH_AT["step"] = None
    assert newest_valid_checkpoint(store_b, f"models/demo/{a.version}/checkpoints")[0] == 3
    events.SEEN["steps"].clear()
    b = train(cfg_b, store_b)
    assert events.SEEN["steps"][0] == 4  # resumed after the step-3 checkpoint
    assert b.version == a.version
    wa, wb = weights(RunStore.from_config(cfg_a), a), weights(store_b, b)
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_a_loss_from_a_plugin_module_is_used(prepared):
    scaled_loss.CALLS.update(d=0, g=0)
    cfg = config_for(
        prepared,
        "train.steps=5",
        "train.loss=scaled_hinge",
        "train.loss_options={scale: 0.5}",
        "plugins=[tests.fixture_plugins.scaled_loss]",
    )
    train(cfg, RunStore.from_config(cfg))
    assert scaled_loss.CALLS == {"d": 5, "g": 5}


def test_every_builtin_loss_regulariser_and_augmentation_trains(prepared):
    for loss in ["nonsaturating", "hinge", "lsgan", "wgan_gp", "relativistic"]:
        cfg = config_for(
            prepared,
            "train.steps=3",
            f"train.loss={loss}",
            "train.regularizers={r1: {interval: 2}, diversity: {}, style_consistency: {}}",
            "train.augmentations={diffaugment: {cutout: 0.25}}",
        )
        result = train(cfg, RunStore.from_config(cfg))
        assert result.steps_done == 3
        assert all(v == v for v in result.final_metrics.values())  # no NaN


def test_non_finite_loss_stops_with_a_clear_message(prepared):
    cfg = config_for(
        prepared,
        "train.steps=20",
        "train.checkpoint_every=4",
        "train.loss=nan_after",
        "train.loss_options={after: 6}",
        "plugins=[tests.fixture_plugins.nan_loss]",
    )
    store = RunStore.from_config(cfg)
    with pytest.raises(NonFiniteLoss) as err:
        train(cfg, store)
    assert "step 7" in err.value.message and "discriminator loss" in err.value.message
    versions = store.listdir("models/demo")
    found = [newest_valid_checkpoint(store, f"models/demo/{v}/checkpoints") for v in versions]
    assert any(f is not None and f[0] == 4 for f in found)  # the last good one is kept


def test_non_finite_loss_rolls_back_and_lowers_the_learning_rate(prepared):
    cfg = config_for(
        prepared,
        "train.steps=16",
        "train.checkpoint_every=4",
        "train.log_every=2",
        "train.on_nonfinite=rollback",
        "train.loss=nan_after",
        "train.loss_options={after: 6, burst: 1}",
        "plugins=[tests.fixture_plugins.nan_loss]",
    )
    store = RunStore.from_config(cfg)
    result = train(cfg, store)
    assert result.steps_done == 16
    folder = f"models/demo/{result.version}"
    metrics = store.read_parquet(f"{folder}/metrics.parquet")
    assert list(metrics["step"]) == [2, 4, 6, 8, 10, 12, 14, 16]  # no step twice, none lost
    assert list(metrics["lr_scale"]) == [1.0, 1.0] + [0.5] * 6  # halved from the rollback on
    assert store.exists(f"{folder}/training.json")
    _, state = newest_valid_checkpoint(store, f"{folder}/checkpoints")
    assert state["lr_scale"] == 0.5 and state["opt_g"]["param_groups"][0]["lr"] == 1e-4


def test_rollbacks_give_up_after_the_configured_number(prepared):
    cfg = config_for(
        prepared,
        "train.steps=20",
        "train.checkpoint_every=4",
        "train.on_nonfinite=rollback",
        "train.max_rollbacks=2",
        "train.loss=nan_after",
        "train.loss_options={after: 6}",
        "plugins=[tests.fixture_plugins.nan_loss]",
    )
    with pytest.raises(NonFiniteLoss) as err:
        train(cfg, RunStore.from_config(cfg))
    assert "after 2 rollbacks" in err.value.message and "step 5" in err.value.message


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_resumes_and_exports_float32(prepared, precision):
    extra = [f"train.precision={precision}", "train.channels_last=true", "train.grad_clip=10"]
    cfg = config_for(prepared, "train.steps=8", "train.checkpoint_every=4", *extra)
    store = RunStore.from_config(cfg)
    result = train(cfg, store)
    assert result.steps_done == 8 and all(map(math.isfinite, result.final_metrics.values()))
    exported = weights(store, result)
    assert all(t.dtype == torch.float32 for t in exported.values() if t.is_floating_point())
    _, state = newest_valid_checkpoint(store, f"models/demo/{result.version}/checkpoints")
    assert ("scaler_g" in state) == (precision == "fp16")  # loss scaling for fp16 only
    # Resumed halfway, the same weights as the uninterrupted run.
    resumed_cfg = config_for(prepared, "train.steps=4", "train.checkpoint_every=4",
                             f"model.name=amp-{precision}", *extra)  # fmt: skip
    store_b = RunStore.from_config(resumed_cfg)
    train(resumed_cfg, store_b)
    again = config_for(prepared, "train.steps=8", "train.checkpoint_every=4",
                       f"model.name=amp-{precision}", *extra)  # fmt: skip
    second = train(again, store_b)
    resumed = load_safetensors(
        store_b.read_bytes(f"models/amp-{precision}/{second.version}/generator.safetensors")
    )
    assert all(torch.equal(exported[k], resumed[k]) for k in exported)


def test_an_unknown_precision_is_a_config_error(prepared):
    with pytest.raises(ConfigError) as err:
        config_for(prepared, "train.precision=fp8")
    assert "train.precision" in str(err.value)


def test_tensorboard_events_are_written_beside_the_model(prepared):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = config_for(prepared, "train.steps=10", "train.log_every=5", "train.sample_every=10",
                     "train.tensorboard=true")  # fmt: skip
    store = RunStore.from_config(cfg)
    result = train(cfg, store)
    events = EventAccumulator(store.path(f"models/demo/{result.version}/tensorboard")).Reload()
    assert [e.step for e in events.Scalars("train/loss_d")] == [5, 10]
    assert "samples" in events.Tags()["images"]


def test_checkpoints_with_pickled_objects_are_refused(prepared, tmp_path):
    cfg = config_for(prepared, "train.steps=4", "train.checkpoint_every=2")
    store = RunStore.from_config(cfg)
    result = train(cfg, store)
    folder = f"models/demo/{result.version}/checkpoints"

    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    buf = io.BytesIO()
    torch.save({"generator": Payload()}, buf, pickle_protocol=pickle.HIGHEST_PROTOCOL)
    store.write_bytes(f"{folder}/step-00000099.pt", buf.getvalue())
    step, _ = newest_valid_checkpoint(store, folder)
    assert step == 4  # the hostile newest one is skipped

    evil = tmp_path / "evil.pt"
    evil.write_bytes(buf.getvalue())
    bad = config_for(prepared, "train.steps=6", f"train.resume={evil}")
    with pytest.raises(StoreError, match="cannot be loaded safely"):
        train(bad, RunStore.from_config(bad))
    missing = config_for(prepared, "train.steps=6", f"train.resume={tmp_path / 'nope.pt'}")
    with pytest.raises(ConfigError, match="does not exist"):
        train(missing, RunStore.from_config(missing))


def test_training_streams_shards_within_its_memory_budget(tmp_path):
    """Many small shards and a budget of about two: the window slides, and a resumed run still
    matches an uninterrupted one."""
    from ganpipe.data.dataset import TrainingImages, load_dataset

    root = tmp_path / "store"
    extra = ["dataset.shard_mb=0.01", "train.data_memory_mb=0.02", "train.steps=12",
             "train.checkpoint_every=5", "train.log_every=1", "train.batch_size=8"]  # fmt: skip
    cfg = config_for(root, *extra)
    store = RunStore.from_config(cfg)
    ingest(cfg, store)
    styles(cfg, store)
    dataset = load_dataset(store, "demo")
    assert dataset.manifest["shard"].nunique() >= 5

    rows = dataset.manifest[dataset.manifest["split"] == "train"]
    stream = TrainingImages(dataset, rows, torch.zeros(len(rows)).long().numpy(), 0.02, 8, 0)
    assert stream.window_size < len(stream.groups) and stream.period is not None
    gen = torch.Generator().manual_seed(0)
    for step in range(0, 40):
        images, _ = stream.batch(step, 8, gen, "cpu")
        assert images.shape == (8, 3, 16, 16)
        assert len(stream.pixels) < len(rows)  # never the whole dataset in memory
    assert stream.loads > stream.window_size  # shards were read as the window moved

    copy = tmp_path / "copy"
    import shutil

    shutil.copytree(root, copy)
    straight = train(cfg, store)
    cfg_b = config_for(copy, *extra, "plugins=[tests.fixture_plugins.events]")
    events.CRASH_AT["step"] = 8
    try:
        with pytest.raises(PluginError) as err:
            train(cfg_b, RunStore.from_config(cfg_b))
        assert isinstance(err.value.__cause__, events.SimulatedCrash)
    finally:
        events.CRASH_AT["step"] = None
    resumed = train(cfg_b, RunStore.from_config(cfg_b))
    wa, wb = weights(store, straight), weights(RunStore.from_config(cfg_b), resumed)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.parametrize("generator, discriminator", [("stylegan", "resnet"), ("stylegan", "dcgan"),
                                                      ("dcgan", "resnet")])  # fmt: skip
def test_every_architecture_trains_exports_and_renders_deterministically(
    prepared, generator, discriminator
):
    cfg = config_for(prepared, "train.steps=4", f"model.generator={generator}",
                     f"model.discriminator={discriminator}")  # fmt: skip
    store = RunStore.from_config(cfg)
    result = train(cfg, store)
    G, meta = load_network(store, f"models/demo/{result.version}", "generator", load_registry(cfg))
    assert meta["name"] == generator
    z, s = torch.randn(6, G.z_dim), torch.arange(6)
    with torch.no_grad():
        first, again = G(z, s), G(z, s)
    assert first.shape == (6, 3, 16, 16) and torch.equal(first, again)
