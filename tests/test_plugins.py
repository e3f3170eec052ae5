import pytest

from ganpipe.config import load_config
from ganpipe.errors import ConfigError, PluginError
from ganpipe.registry import KINDS, load_registry


def registry(*modules):
    return load_registry(load_config(None, [f"plugins=[{','.join(modules)}]"] if modules else []))


def test_builtins_register_through_the_hooks():
    reg = registry()
    names = {(c.kind, c.name): c.plugin for c in reg.all()}
    for key in [
        ("generator", "dcgan"),
        ("discriminator", "dcgan"),
        ("loss", "hinge"),
        ("loss", "nonsaturating"),
        ("style_encoder", "texture"),
        ("quality_filter", "realism"),
        ("quality_filter", "style_match"),
        ("source", "demo"),
        ("regularizer", "r1"),
        ("augmentation", "diffaugment"),
    ]:
        assert names[key] == "ganpipe.builtin"
    assert set(KINDS) == {c.kind for c in reg.all()}


def test_installed_entry_point_plugin_is_found():
    reg = registry()
    component = reg.get("loss", "relativistic")
    assert "ganpipe-relativistic" in component.plugin


def test_unknown_name_lists_what_is_available_and_who_supplied_it():
    with pytest.raises(ConfigError) as err:
        registry().get("loss", "wasserstein")
    msg = err.value.message
    assert "train.loss" in msg
    assert "hinge (ganpipe.builtin)" in msg and "relativistic" in msg


def test_dotted_module_plugin_adds_a_component():
    reg = registry("tests.fixture_plugins.scaled_loss")
    loss = reg.create("loss", "scaled_hinge", scale=2.0)
    assert loss.scale == 2.0
    assert reg.get("loss", "scaled_hinge").plugin == "tests.fixture_plugins.scaled_loss"


def test_duplicate_names_are_an_error_naming_both_plugins():
    with pytest.raises(PluginError) as err:
        registry("tests.fixture_plugins.clash").names("loss")
    assert "'hinge' is registered twice" in err.value.message
    assert "ganpipe.builtin" in err.value.message and "fixture_plugins.clash" in err.value.message


def test_bad_plugins_are_named():
    reg = registry("tests.fixture_plugins.broken")
    with pytest.raises(PluginError, match="fixture_plugins.broken.*raised in ganpipe_losses"):
        reg.names("loss")
    with pytest.raises(PluginError, match="expected a mapping"):
        reg.names("quality_filter")


def test_misspelt_hook_and_missing_module_fail_loudly():
    with pytest.raises(PluginError, match="ganpipe_loses"):
        registry("tests.fixture_plugins.misspelt")
    with pytest.raises(PluginError, match="cannot import plugin module 'no.such.module'"):
        registry("no.such.module")


def test_bad_component_options_are_config_errors():
    with pytest.raises(ConfigError) as err:
        registry().create("regularizer", "r1", config_key="train.regularizers.r1", gamma=-1)
    assert "train.regularizers.r1" in err.value.message
    with pytest.raises(ConfigError, match="rejected its options"):
        registry().create("loss", "hinge", margin=3)
