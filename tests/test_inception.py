"""The optional Inception feature space (FID's): built here, weights only from a path or URI."""

import pytest
import torch
from safetensors.torch import save_file

from ganpipe.builtin.inception import FIDInception
from ganpipe.config import load_config
from ganpipe.errors import ConfigError
from ganpipe.registry import load_registry
from ganpipe.stages.evaluate import evaluate, space_hash
from ganpipe.store import RunStore
from tests.conftest import tiny_overrides


def random_weights(folder, suffix: str, seed: int = 0, drop: str | None = None):
    """A weights file of the FID network's shape (random values: the real ones cannot be
    downloaded here), with the classifier head the real file carries."""
    torch.manual_seed(seed)
    state = {k: v.clone() for k, v in FIDInception().state_dict().items()
             if not k.endswith("num_batches_tracked") and k != drop}  # fmt: skip
    state["fc.weight"], state["fc.bias"] = torch.randn(1008, 2048), torch.randn(1008)
    path = folder / f"inception-{seed}{suffix}"
    if suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path


def test_the_network_loads_both_formats_and_gives_2048_features(tmp_path):
    registry = load_registry(load_config(None, []))
    made = [registry.create("style_encoder", "inception", image_size=16,
                            weights=str(random_weights(tmp_path, suffix)))
            for suffix in (".pth", ".safetensors")]  # fmt: skip
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    first, second = (m(images) for m in made)
    assert first.shape == (2, 2048) and torch.equal(first, second)  # same tensors, same output
    assert not any(p.requires_grad for p in made[0].parameters()) and not made[0].training


def test_missing_or_unfit_weights_are_config_errors(tmp_path):
    registry = load_registry(load_config(None, []))
    with pytest.raises(ConfigError, match="needs its weights"):
        registry.create("style_encoder", "inception", image_size=16)
    with pytest.raises(ConfigError, match="does not exist"):
        registry.create("style_encoder", "inception", image_size=16,
                        weights=str(tmp_path / "nope.pth"))  # fmt: skip
    unfit = random_weights(tmp_path, ".pth", drop="Mixed_7c.branch_pool.conv.weight")
    with pytest.raises(ConfigError, match="do not fit"):
        registry.create("style_encoder", "inception", image_size=16, weights=str(unfit))
    (tmp_path / "junk.pth").write_bytes(b"not a tensor file")
    with pytest.raises(ConfigError, match="neither safetensors"):
        registry.create("style_encoder", "inception", image_size=16,
                        weights=str(tmp_path / "junk.pth"))  # fmt: skip


@pytest.mark.slow
def test_evaluate_in_the_inception_space_records_which_weights(tiny_model, tmp_path):
    weights = random_weights(tmp_path, ".safetensors", seed=1)
    cfg = load_config(None, tiny_overrides(tiny_model) + [
        "evaluate.per_style=6", "evaluate.space=inception",
        f"evaluate.space_options={{weights: {weights}}}"])  # fmt: skip
    one = evaluate(cfg, RunStore.from_config(cfg), write=False)
    assert one.features == "inception" and one.settings["space"] == "inception"
    assert all(v == v for v in one.metrics.values())  # finite, not NaN
    registry = load_registry(cfg)
    other = str(random_weights(tmp_path, ".safetensors", seed=2))
    encoder = registry.create("style_encoder", "inception", image_size=16, weights=other)
    assert space_hash("inception", {"weights": other}, encoder) != one.settings["space_hash"]
    same = registry.create("style_encoder", "inception", image_size=16, weights=str(weights))
    assert space_hash("inception", {"weights": str(weights)}, same) == one.settings["space_hash"]
