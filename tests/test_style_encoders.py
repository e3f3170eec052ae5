"""Style encoders: the built-ins, the learning one, reference images, and outside plugins."""

import pytest
import torch

from ganpipe.config import load_config
from ganpipe.data.dataset import load_dataset
from ganpipe.data.demo import render
from ganpipe.data.images import encode
from ganpipe.domain.style_table import load_styles
from ganpipe.errors import ConfigError, StoreError
from ganpipe.registry import load_registry
from ganpipe.stages.ingest import ingest
from ganpipe.stages.styles import match_reference, styles
from ganpipe.store import RunStore
from ganpipe.style_encoders import embed_dataset, encoder_for
from tests.conftest import tiny_overrides

CONTRASTIVE = ["style.encoder=contrastive", "style.encoder_options={steps: 20, batch_size: 32}"]


def prepared(tmp_path, *extra):
    cfg = load_config(None, tiny_overrides(tmp_path / "store") + list(extra))
    store = RunStore.from_config(cfg)
    ingest(cfg, store)
    return cfg, store


def test_default_encoder_separates_the_demo_styles(tmp_path):
    cfg, store = prepared(tmp_path, "dataset.image_size=32", "dataset.demo_per_style=64",
                          "style.num_styles=auto")  # fmt: skip
    result = styles(cfg, store)
    assert len(result.names) == 6
    assert result.quality["nmi"] >= 0.9 and result.quality["purity"] >= 0.9


@pytest.mark.slow
def test_learning_encoder_trains_once_per_dataset_and_is_reused(tmp_path, monkeypatch):
    cfg, store = prepared(tmp_path, *CONTRASTIVE)
    result = styles(cfg, store)
    folder = f"styles/{result.fingerprint}/contrastive"
    assert store.exists(f"{folder}/encoder.safetensors") and len(result.names) == 6

    from ganpipe.builtin.encoders import ContrastiveEncoder

    monkeypatch.setattr(ContrastiveEncoder, "fit", lambda *a, **k: pytest.fail("retrained"))
    styles(load_config(None, tiny_overrides(tmp_path / "store") + CONTRASTIVE
                       + ["style.num_styles=4"]), store)  # fmt: skip

    registry = load_registry(cfg)
    dataset = load_dataset(store, "demo")
    options = cfg.style.encoder_options
    trained = encoder_for(registry, dataset, "contrastive", options, 16)
    weights = tmp_path / "contrastive.safetensors"
    weights.write_bytes(store.read_bytes(f"{folder}/encoder.safetensors"))
    given = encoder_for(registry, dataset, "contrastive", {**options, "weights": str(weights)}, 16)
    assert torch.equal(embed_dataset(trained, dataset), embed_dataset(given, dataset))

    with pytest.raises(ConfigError, match="style.encoder_options.weights"):
        encoder_for(registry, dataset, "contrastive", {"weights": str(tmp_path / "no.st")}, 16)
    other = {**options, "width": 8}  # not trained with these options, and not allowed to fit
    with pytest.raises(StoreError, match="run 'ganpipe styles'"):
        encoder_for(registry, dataset, "contrastive", other, 16)


def test_a_reference_image_maps_to_its_style(tmp_path):
    cfg, store = prepared(tmp_path)
    result = styles(cfg, store)
    dataset = load_dataset(store, "demo")
    _, assignments = load_styles(store, result.fingerprint, "texture")
    majority = (
        dataset.manifest.merge(assignments, on="id").groupby("style")["label"]
        .agg(lambda s: s.mode()[0]).to_dict()
    )  # fmt: skip
    for label in ["dots", "stripes", "clouds"]:
        fresh = encode(render(label, 500))  # an image the dataset does not hold
        match = match_reference(cfg, store, fresh)
        assert majority[match["style"]] == label
        assert len(match["embedding"]) == 64
        assert match["distances"][match["style"]] == min(match["distances"].values())
    with pytest.raises(ConfigError, match="reference image cannot be used: not_image"):
        match_reference(cfg, store, b"not an image")


def test_colour_histogram_plugin_is_a_differentiable_encoder():
    registry = load_registry(load_config())
    component = registry.get("style_encoder", "colour_histogram")
    assert "ganpipe-colour-histogram" in component.plugin
    encoder = registry.create("style_encoder", "colour_histogram", image_size=16, bins=3)
    images = (torch.rand(4, 3, 16, 16) * 2 - 1).requires_grad_(True)
    emb = encoder(images)
    assert emb.shape == (4, encoder.embedding_dim) == (4, 27)
    emb.sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="bins >= 2"):
        registry.create("style_encoder", "colour_histogram", image_size=16, bins=1)
