"""The built-in networks' recommended options: filled in by the config where it leaves them out,
recorded with the model, and never applied to a model exported before the recommendation."""

import torch
from torch import nn

from ganpipe.builtin.nets import DCGANGenerator
from ganpipe.config import load_config
from ganpipe.registry import load_registry
from ganpipe.stages.train import train
from ganpipe.store import RunStore
from ganpipe.store.checkpoints import export_network, load_network
from tests.conftest import prepare_tiny_store, tiny_overrides


def _kinds(module: nn.Module) -> set[type]:
    return {type(m) for m in module.modules()}


def test_the_default_generator_doubles_by_nearest_neighbour_unless_told_otherwise():
    assert load_config(None, []).model.generator_options == {"upsample": "nearest"}
    merged = load_config(None, ["model.generator_options={channels: 8}"]).model
    assert merged.generator_options == {"channels": 8, "upsample": "nearest"}
    told = load_config(None, ["model.generator_options={upsample: transpose}"]).model
    assert told.generator_options == {"upsample": "transpose"}
    other = load_config(None, ["model.generator=stylegan"]).model
    assert other.generator_options == {}  # only the network it was chosen for
    other.generator = "dcgan"  # switching to it later gets the recommendation too
    assert other.generator_options == {"upsample": "nearest"}


def test_a_model_trained_with_the_defaults_records_and_uses_nearest_upsampling(tmp_path):
    root = prepare_tiny_store(tmp_path / "store")
    cfg = load_config(None, tiny_overrides(root, **{"train.steps": 4}))
    store = RunStore.from_config(cfg)
    result = train(cfg, store)
    folder = f"models/demo/{result.version}"
    meta = store.read_json(f"{folder}/generator.json", dict)
    assert meta["options"]["upsample"] == "nearest"
    G, _ = load_network(store, folder, "generator", load_registry(cfg))
    assert nn.Upsample in _kinds(G) and nn.ConvTranspose2d not in _kinds(G)


def test_a_model_exported_before_the_recommendation_loads_as_it_was_trained(tmp_path):
    """Its description names no ``upsample``: it must come back with its transposed
    convolutions and draw exactly what it drew, not be rebuilt with today's recommendation."""
    store = RunStore(str(tmp_path / "store"))
    torch.manual_seed(0)
    old = DCGANGenerator(3, 16).eval()  # the class default: transposed convolutions
    options = {"num_styles": 3, "image_size": 16}
    export_network(store, "models/old/v1", "generator", "dcgan", options, old,
                   {"version": "v1", "model": "old"})  # fmt: skip
    G, meta = load_network(store, "models/old/v1", "generator", load_registry(load_config()))
    assert "upsample" not in meta["options"]
    assert nn.ConvTranspose2d in _kinds(G)
    z = torch.randn(4, old.z_dim)
    with torch.no_grad():
        assert torch.equal(G.eval()(z, torch.arange(4) % 3), old(z, torch.arange(4) % 3))
