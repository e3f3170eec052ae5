"""Plugins that raise, return the wrong type or return tensors of the wrong shape: the error is a
``PluginError`` (or, for options, a ``ConfigError``) that names the plugin and the hook, never a
traceback that looks like ganpipe's own bug. Registration hooks that raise or return a
non-mapping, and quality filters that raise or return wrong shapes, are covered in
tests/test_plugins.py and tests/test_filters.py / test_generate_filter_report.py."""

from __future__ import annotations

import pytest

from ganpipe.config import load_config
from ganpipe.errors import GanpipeError, PluginError
from ganpipe.registry import load_registry
from ganpipe.stages.generate import generate
from ganpipe.stages.ingest import ingest
from ganpipe.stages.styles import styles
from ganpipe.stages.train import train
from ganpipe.store import RunStore
from tests.conftest import tiny_overrides, train_tiny_model
from tests.fixture_plugins import faulty

PLUGIN = "tests.fixture_plugins.faulty"


def config(root, *extra):
    return load_config(None, tiny_overrides(root) + [f"plugins=[{PLUGIN}]", *extra])


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("plugin-faults") / "store"
    extra = [f"plugins=[{PLUGIN}]", "train.steps=2", "train.sample_every=null"]
    return train_tiny_model(root, tiny_overrides(root) + extra)


@pytest.fixture(autouse=True)
def well_behaved():
    yield
    for hook in faulty.FAIL:
        faulty.FAIL[hook] = False


def assert_names(err: GanpipeError, hook: str) -> None:
    assert isinstance(err, PluginError), f"{type(err).__name__}: {err}"
    assert PLUGIN in err.message and hook in err.message, err.message


def test_a_configure_hook_that_raises_is_named(tmp_path):
    faulty.FAIL["configure"] = True
    with pytest.raises(PluginError) as err:
        load_registry(config(tmp_path))
    assert_names(err.value, "ganpipe_configure")
    assert "ObserverBug: configure hook is broken" in err.value.message


def test_a_factory_that_raises_is_named(tmp_path):
    with pytest.raises(PluginError) as err:
        load_registry(config(tmp_path)).create("loss", "unbuildable")
    assert_names(err.value, "ganpipe_losses")
    assert "failed to build" in err.value.message


def test_a_source_that_raises_while_listing_is_named(tmp_path):
    cfg = config(tmp_path / "store", "dataset.sources=[broken://catalogue]")
    with pytest.raises(PluginError) as err:
        ingest(cfg, RunStore.from_config(cfg))
    assert_names(err.value, "ganpipe_sources")
    assert "catalogue service is broken" in err.value.message


@pytest.mark.parametrize("encoder, problem", [("short", "returned shape"),
                                              ("raising", "failed on the dataset")])  # fmt: skip
def test_a_style_encoder_that_raises_or_returns_the_wrong_shape_is_named(
    prepared, tmp_path, encoder, problem
):
    import shutil

    root = tmp_path / "store"
    shutil.copytree(prepared, root)
    cfg = config(root, f"style.encoder={encoder}")
    with pytest.raises(PluginError) as err:
        styles(cfg, RunStore.from_config(cfg))
    assert_names(err.value, "ganpipe_style_encoders")
    assert problem in err.value.message or "shape" in err.value.message


@pytest.mark.parametrize(
    "override, hook",
    [
        ("model.generator=wrong_shape", "ganpipe_generators"),
        ("train.loss=float_loss", "ganpipe_losses"),
        ("train.loss=raising_loss", "ganpipe_losses"),
        ("train.augmentations={cropping: {}}", "ganpipe_augmentations"),
        ("step_hook", "ganpipe_train_step_end"),
    ],
)  # fmt: skip
@pytest.mark.slow
def test_a_training_component_or_observer_that_misbehaves_is_named(prepared, override, hook):
    faulty.FAIL["train_step_end"] = override == "step_hook"
    extra = [] if override == "step_hook" else [override]
    cfg = config(prepared, "train.steps=2", "train.log_every=1", "model.name=faulty", *extra)
    with pytest.raises(GanpipeError) as err:
        train(cfg, RunStore.from_config(cfg))
    assert_names(err.value, hook)


def test_a_batch_observer_that_raises_is_named(prepared):
    faulty.FAIL["batch_generated"] = True
    cfg = config(prepared, "generate.per_style=1")
    with pytest.raises(GanpipeError) as err:
        generate(cfg, RunStore.from_config(cfg))
    assert_names(err.value, "ganpipe_batch_generated")


def test_notify_names_the_plugin_of_a_raising_event_hook(tmp_path):
    """What the two tests above ask of train.py and generate.py, shown on the registry."""
    registry = load_registry(config(tmp_path))
    faulty.FAIL["train_step_end"] = True
    with pytest.raises(PluginError) as err:
        registry.notify("ganpipe_train_step_end", state=None, metrics={})
    assert_names(err.value, "ganpipe_train_step_end")
    assert isinstance(err.value.__cause__, faulty.ObserverBug)
