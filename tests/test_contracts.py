"""The component contracts (ganpipe/contracts/): every registered component satisfies its
kind's protocol, and the registry refuses, at creation, a plugin component that lacks a member,
with an error naming the component, the plugin, the hook and what is missing."""

import subprocess
import sys

import pytest

from ganpipe import contracts
from ganpipe.config import load_config
from ganpipe.errors import PluginError
from ganpipe.registry import KINDS, load_registry

INCOMPLETE = "tests.fixture_plugins.incomplete"


def arguments(kind: str, cfg, tmp_path, name: str = "") -> dict:
    """What each kind's factory is called with besides its options (ganpipe/hookspecs.py)."""
    if kind in ("generator", "discriminator"):
        return {"num_styles": 3, "image_size": 16}
    if kind == "style_encoder" and name == "inception":  # it cannot be built without weights
        from tests.test_inception import random_weights

        return {"image_size": 16, "weights": str(random_weights(tmp_path, ".pth"))}
    if kind == "style_encoder":
        return {"image_size": 16}
    if kind == "source":
        return {"uri": str(tmp_path), "config": cfg.dataset, "storage_options": {}}
    return {}


def test_every_registered_component_satisfies_its_protocol(tmp_path):
    cfg = load_config(None, [])
    registry = load_registry(cfg)
    built = {}
    for component in registry.all():
        kind, name = component.kind, component.name
        obj = registry.create(kind, name, **arguments(kind, cfg, tmp_path, name))
        contract = contracts.CONTRACTS[kind]
        assert contracts.missing(obj, contract) == [], (kind, name)
        assert isinstance(obj, contract), (kind, name)
        built[kind, name] = obj
    assert set(contracts.CONTRACTS) == set(KINDS) == {kind for kind, _ in built}
    # The optional capabilities the stages rely on for the built-ins.
    c = contracts
    assert c.supports(built["generator", "dcgan"], c.ConditionalGenerator)
    assert not c.supports(built["generator", "dcgan"], c.MappedGenerator)
    assert c.supports(built["generator", "stylegan"], c.MixingGenerator)
    assert c.supports(built["generator", "resnet"], c.ConditionalGenerator)
    assert not c.supports(built["generator", "resnet"], c.MappedGenerator)
    for name in ("dcgan", "resnet", "sngan"):
        assert c.supports(built["discriminator", name], c.FeatureDiscriminator), name
    assert c.supports(built["loss", "wgan_gp"], c.DiscriminatorPenalty)
    assert not c.supports(built["loss", "hinge"], c.DiscriminatorPenalty)
    assert c.supports(built["regularizer", "style_consistency"], c.Bindable)
    assert not c.supports(built["regularizer", "r1"], c.Bindable)
    assert c.supports(built["style_encoder", "contrastive"], c.TrainableStyleEncoder)
    assert not c.supports(built["style_encoder", "texture"], c.TrainableStyleEncoder)


@pytest.mark.parametrize(
    "kind, name, lacking",
    [
        ("generator", "no_z_dim", "z_dim"),
        ("generator", "not_a_module", "torch.nn.Module"),
        ("discriminator", "no_forward", "forward"),
        ("loss", "half_loss", "g_loss"),
        ("regularizer", "d_only", "g_penalty"),
        ("augmentation", "not_callable", "__call__"),
        ("style_encoder", "no_embedding_dim", "embedding_dim"),
        ("quality_filter", "no_direction", "higher_is_better"),
        ("source", "nothing", "__iter__"),
    ],
)
def test_a_component_missing_a_member_is_refused_when_created(kind, name, lacking, tmp_path):
    cfg = load_config(None, [f"plugins=[{INCOMPLETE}]"])
    registry = load_registry(cfg)
    with pytest.raises(PluginError) as err:
        registry.create(kind, name, **arguments(kind, cfg, tmp_path))
    message = err.value.message
    assert f"{kind.replace('_', ' ')} {name!r} ({INCOMPLETE})" in message
    assert f"lacks {lacking}" in message
    assert KINDS[kind].hook in message  # the registration hook
    assert contracts.CONTRACTS[kind].__name__ in message


def test_contracts_and_hook_specs_load_without_torch():
    code = (
        "import sys, ganpipe.registry, ganpipe.contracts, ganpipe.hookspecs\n"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_each_kind_is_one_record_that_the_hooks_and_the_registry_follow():
    """Registry, contract check and hook specifications all come from ``contracts.KINDS``: a
    kind's hook is a specification documented from its record, and nothing else registers."""
    from ganpipe import hookspecs
    from ganpipe.registry import build_plugin_manager

    pm = build_plugin_manager()
    registration = {
        name
        for name in vars(hookspecs)
        if name.startswith("ganpipe_") and name not in {"ganpipe_configure"}
        and "Register" in (getattr(hookspecs, name).__doc__ or "")
    }  # fmt: skip
    assert registration == {kind.hook for kind in KINDS.values()}
    for kind in KINDS.values():
        assert getattr(pm.hook, kind.hook).spec is not None
        doc = getattr(hookspecs, kind.hook).__doc__
        assert f"``{kind.config_key}``" in doc and kind.contract.__name__ in doc
        assert contracts.CONTRACTS[kind.name] is kind.contract
