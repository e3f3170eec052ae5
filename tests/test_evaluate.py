import json
import math

import pytest
import torch
from typer.testing import CliRunner

from ganpipe import hookimpl
from ganpipe.cli import app
from ganpipe.config import load_config
from ganpipe.data.dataset import load_dataset, to_tensor
from ganpipe.domain.model_pointers import ModelRef, current_model
from ganpipe.domain.style_table import load_styles
from ganpipe.errors import ConfigError
from ganpipe.stages.evaluate import HIGHER_IS_BETTER, evaluate
from ganpipe.store import RunStore, layout
from ganpipe.store.checkpoints import export_network
from tests.conftest import tiny_overrides, train_tiny_model

# Every test here shares one tiny model trained in about 20 s.
pytestmark = pytest.mark.slow

EVAL = ["evaluate.per_style=12"]


class MeanColour(torch.nn.Module):
    """A feature extractor registered the way any plugin registers a style encoder; this
    module is the plugin (``plugins: [tests.test_evaluate]``)."""

    embedding_dim = 3

    def __init__(self, image_size: int):
        super().__init__()

    def forward(self, images):
        return images.mean(dim=(2, 3))


@hookimpl
def ganpipe_style_encoders():
    return {"mean_colour": MeanColour}


class Replay(torch.nn.Module):
    """A generator that copies a training image of the asked style, chosen by the latent."""

    z_dim = 8

    def __init__(self, image_size: int, count: int):
        super().__init__()
        self.register_buffer("images", torch.zeros(count, 3, image_size, image_size))
        self.register_buffer("styles", torch.zeros(count, dtype=torch.long))

    def forward(self, z, s):
        picks = []
        for latent, style in zip(z, s):
            candidates = torch.nonzero(self.styles == style).flatten()
            picks.append(candidates[int(latent.abs().sum() * 1000) % len(candidates)])
        return self.images[torch.stack(picks)]


class Noise(torch.nn.Module):
    """A generator that paints a fixed random function of the latent: noise, whatever style."""

    z_dim = 8

    def __init__(self, image_size: int):
        super().__init__()
        self.size = image_size
        weight = torch.randn(8, 3 * image_size**2, generator=torch.Generator().manual_seed(0))
        self.register_buffer("weight", weight)

    def forward(self, z, s):
        return torch.sin(5 * z @ self.weight).view(len(z), 3, self.size, self.size)


@hookimpl
def ganpipe_generators():
    return {"replay": Replay, "noise": Noise}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate") / "store"
    return train_tiny_model(root)


def cfg_for(root, *extra):
    return load_config(None, tiny_overrides(root) + EVAL + list(extra))


def test_evaluate_writes_finite_metrics_beside_the_model(trained):
    cfg = cfg_for(trained)
    store = RunStore.from_config(cfg)
    result = evaluate(cfg, store)
    model = current_model(cfg, store)
    saved = store.read_json(f"{model.folder}/evaluation.json")
    assert saved == json.loads(json.dumps(result.to_dict()))
    assert result.uri == store.uri(f"{model.folder}/evaluation.json")
    assert set(saved["metrics"]) == set(HIGHER_IS_BETTER)
    assert all(math.isfinite(v) for v in saved["metrics"].values()), saved["metrics"]
    for key in ["precision", "recall", "coverage", "style_accuracy"]:
        assert 0.0 <= saved["metrics"][key] <= 1.0
    assert saved["metrics"]["fd"] > 0 and saved["metrics"]["density"] >= 0
    sizes = store.read_json(f"{model.folder}/generator.json")["styles"]["sizes"]
    assert saved["samples"] == 6 * 12 and saved["real_images"] == sum(min(12, n) for n in sizes)
    per_style = saved["spaces"]["texture"]["per_style"]
    assert len(per_style) == 6
    assert all(0.0 <= s["coverage"] <= 1.0 for s in per_style.values())


def test_evaluating_twice_gives_identical_numbers(trained):
    cfg = cfg_for(trained)
    store = RunStore.from_config(cfg)
    first, second = evaluate(cfg, store), evaluate(cfg, store)
    assert first.to_dict() == second.to_dict()
    # Another seed draws other samples and real images: the numbers move.
    other = evaluate(cfg_for(trained, "evaluate.seed=7"), store)
    assert other.metrics != first.metrics


def export_stand_in(cfg, store, kind: str, module: torch.nn.Module, options: dict) -> ModelRef:
    """Export ``module`` as a model version of the trained model's dataset and styles."""
    meta = store.read_json(f"{current_model(cfg, store).folder}/generator.json")
    keep = {k: meta[k] for k in ("styles", "dataset_fingerprint", "model", "steps")}
    folder = layout.model_dir(meta["model"], kind)
    export_network(store, folder, "generator", kind, options, module, {**keep, "version": kind})
    return ModelRef(store, folder)


def test_metrics_tell_a_copier_of_the_data_from_noise(trained):
    """What a person sees: a generator that replays the training images is as real as it
    gets, one that paints noise is as bad as it gets; every metric agrees, in the direction
    HIGHER_IS_BETTER gives it (which is what a promotion gate relies on)."""
    cfg = cfg_for(trained, "plugins=[tests.test_evaluate]")
    store = RunStore.from_config(cfg)
    dataset = load_dataset(store, "demo")
    table, assignments = load_styles(store, dataset.fingerprint, "texture")
    style_of = dict(zip(assignments["id"], assignments["style"]))
    images = to_tensor(dataset.load_pixels())
    replay = Replay(16, len(images))
    replay.images.copy_(images)
    replay.styles.copy_(torch.tensor([table.index(style_of[i]) for i in dataset.manifest["id"]]))
    options = {"image_size": 16, "count": len(images)}
    copier = evaluate(cfg, store, model=export_stand_in(cfg, store, "replay", replay, options))
    noise = evaluate(
        cfg, store, model=export_stand_in(cfg, store, "noise", Noise(16), {"image_size": 16})
    )
    for key, higher in HIGHER_IS_BETTER.items():
        better, worse = copier.metrics[key], noise.metrics[key]
        assert (better > worse) if higher else (better < worse), key
    assert copier.metrics["precision"] > 0.9 and copier.metrics["coverage"] > 0.9
    assert copier.metrics["style_accuracy"] > 0.9 and abs(copier.metrics["kid"]) < 0.002
    assert noise.metrics["precision"] == noise.metrics["coverage"] == 0.0
    assert copier.model == "demo/replay"
    # Pixel artefacts per style, relative to the real images (another dozen of the same
    # drawings): the copier's are near theirs; noise puts far more power on the checkerboard
    # frequencies than the drawings do, except in a style whose drawings are a fine checker.
    assert len(copier.artefacts) == len(noise.artefacts) == 6
    for style, f in copier.artefacts.items():
        assert 0.5 < f["checkerboard"] < 2 and 0.7 < f["saturation"] < 1.4, (style, f)
    checker = sorted(f["checkerboard"] for f in noise.artefacts.values())
    assert checker[1] > 5, checker


def test_extra_feature_spaces_and_unknown_names(trained):
    cfg = cfg_for(trained)
    store = RunStore.from_config(cfg)
    result = evaluate(
        cfg_for(trained, "plugins=[tests.test_evaluate]"),
        store,
        features=["mean_colour", "texture"],
    )
    assert list(result.spaces) == ["texture", "mean_colour"]
    extra = result.spaces["mean_colour"]["metrics"]
    # style accuracy in every space: nearest the mean of its own style's real images there
    assert 0 <= extra["style_accuracy"] <= 1
    assert all(math.isfinite(extra[k]) for k in HIGHER_IS_BETTER)
    assert extra["fd"] != result.metrics["fd"]
    hashes = result.settings["space_hashes"]
    assert result.settings["space_hash"] == hashes["texture"] != hashes["mean_colour"]
    with pytest.raises(ConfigError, match="unknown feature extractor 'nope'") as err:
        evaluate(cfg, store, features=["nope"])
    # the pinned space must be one no training touches
    with pytest.raises(ConfigError, match="learns from each dataset version") as pinned:
        evaluate(cfg_for(trained, "evaluate.space=contrastive"), store)
    assert "evaluate.space_options.weights" in pinned.value.fix
    assert "texture (" in err.value.message and "contrastive (" in err.value.message
    assert "evaluate.features" in err.value.message


def test_cli_evaluate_prints_a_table_and_resolves_model_uris(trained):
    cfg = cfg_for(trained)
    store = RunStore.from_config(cfg)
    expected = evaluate(cfg, store).metrics
    model = current_model(cfg, store)
    (trained / model.folder / "evaluation.json").unlink()
    args = [a for kv in tiny_overrides(trained) + EVAL for a in ("--set", kv)]
    runner = CliRunner()
    done = runner.invoke(app, ["evaluate", *args, "--model", model.uri])
    assert done.exit_code == 0, done.output
    for key in HIGHER_IS_BETTER:
        assert key in done.stdout
    assert "style-0" in done.stdout and "evaluation.json" in done.stdout
    saved = json.loads((trained / model.folder / "evaluation.json").read_text())
    assert saved["metrics"] == expected  # the model the URI names, measured the same way

    bad = runner.invoke(app, ["evaluate", *args, "--features", "texture,nope"])
    assert bad.exit_code == 1
    assert "unknown feature extractor 'nope'" in bad.stderr and "available:" in bad.stderr
