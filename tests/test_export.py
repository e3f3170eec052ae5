"""Exported generators (ONNX in onnxruntime, TorchScript) render what ``ganpipe generate``
renders for the same seeds, styles, blends and truncation; the model card says how to call
them, and generators that cannot be exported are refused by name."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from ganpipe.cli import app
from ganpipe.config import load_config
from ganpipe.domain.model_pointers import ModelRef
from ganpipe.errors import ConfigError
from ganpipe.export import export_model
from ganpipe.export.formats import run_onnx, run_torchscript
from ganpipe.generation.render import latent
from ganpipe.registry import load_registry
from ganpipe.stages.generate import generate
from ganpipe.store import RunStore, layout
from ganpipe.store.checkpoints import export_network
from tests.conftest import RANDOM_MODELS, random_models, tiny_overrides

STYLES = 6
PLUGIN = "tests.fixture_plugins.unexportable"


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return random_models(tmp_path_factory.mktemp("export") / "store")


def model(root, name: str) -> ModelRef:
    return ModelRef(RunStore(str(root)), layout.model_dir("demo", RANDOM_MODELS[name]))


def batch_images(root, ref: ModelRef, out: RunStore, *extra: str) -> list[np.ndarray]:
    """The PNG pixels ``ganpipe generate`` wrote for this request, in manifest order."""
    cfg = load_config(None, tiny_overrides(root) + list(extra))
    result = generate(cfg, RunStore(str(root)), model=ref, out=out)
    folder = layout.batch_dir(result.batch_id)
    manifest = out.read_parquet(f"{folder}/manifest.parquet")
    return [np.asarray(Image.open(io.BytesIO(out.read_bytes(f"{folder}/{p}"))).convert("RGB"))
            for p in manifest["path"]]  # fmt: skip


def inputs_for(seeds, weights, psi, z_dim) -> dict[str, np.ndarray]:
    return {
        "z": torch.stack([latent(s, z_dim) for s in seeds]).numpy(),
        "style": np.asarray(weights, np.float32),
        "truncation": np.full(len(seeds), psi, np.float32),
    }


def onehot(index: int) -> list[float]:
    return list(np.eye(STYLES, dtype=np.float32)[index])


def as_pixels(images: np.ndarray) -> np.ndarray:
    """What ganpipe writes for float images: NHWC uint8, rounded the same way."""
    if images.dtype == np.uint8:
        return images
    return np.round((np.clip(images, -1, 1) + 1.0) * 127.5).astype(np.uint8).transpose(0, 2, 3, 1)


def identical_share(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape
    return float((a == b).mean())


@pytest.mark.parametrize("name", ["dcgan", "stylegan"])
@pytest.mark.parametrize(("fmt", "output"), [("onnx", "float"), ("onnx", "uint8"),
                                             ("torchscript", "float")])  # fmt: skip
def test_exported_file_renders_what_generate_renders(root, tmp_path, name, fmt, output):
    ref = model(root, name)
    result = export_model(ref, load_registry(load_config(None, tiny_overrides(root))), fmt,
                          output, RunStore(str(tmp_path / "export")))  # fmt: skip
    data = (tmp_path / "export" / os.path.basename(result.file)).read_bytes()
    run = run_onnx if fmt == "onnx" else run_torchscript
    z_dim = json.loads((tmp_path / "export" / "model-card.json").read_text())["z_dim"]
    out = RunStore(str(tmp_path / "batches"))
    # plain styles, with truncation, for several seeds
    plain = batch_images(root, ref, out, "generate.styles=[1, 4]", "generate.seeds=[3, 11, 40]",
                         "generate.truncation=0.7")  # fmt: skip
    seeds = [3, 11, 40] * 2
    weights = [onehot(1)] * 3 + [onehot(4)] * 3
    got = as_pixels(run(data, inputs_for(seeds, weights, 0.7, z_dim)))
    assert identical_share(got, np.stack(plain)) >= 0.999
    # a blend of two styles (interpolation frames), with truncation
    frames = batch_images(root, ref, out, "generate.interpolate={styles: [0, 5], frames: 5}",
                          "generate.seed=8", "generate.truncation=0.6")  # fmt: skip
    ts = [i / 4 for i in range(5)]
    blends = [list((1 - t) * np.eye(STYLES)[0] + t * np.eye(STYLES)[5]) for t in ts]
    got = as_pixels(run(data, inputs_for([8] * 5, blends, 0.6, z_dim)))
    assert identical_share(got, np.stack(frames)) >= 0.999
    # the images are not all alike: the comparison can fail
    assert identical_share(got[0], got[-1]) < 0.5
    assert result.verified is not None
    key = "identical_pixels" if output == "uint8" else "max_abs_diff"
    assert result.verified[key] >= 0.999 if output == "uint8" else result.verified[key] <= 1e-4


def test_style_embedding_is_an_input_and_zero_means_none(root, tmp_path):
    ref = model(root, "embedding")
    registry = load_registry(load_config(None, tiny_overrides(root)))
    result = export_model(ref, registry, "onnx", "float", RunStore(str(tmp_path)))
    card = json.loads((tmp_path / "model-card.json").read_text())
    assert [i["name"] for i in card["inputs"]] == ["z", "style", "truncation", "style_embedding"]
    data = (tmp_path / "generator.onnx").read_bytes()
    out = RunStore(str(tmp_path / "batches"))
    plain = batch_images(root, ref, out, "generate.styles=[2]", "generate.seeds=[5, 6]")
    feeds = inputs_for([5, 6], [onehot(2)] * 2, 1.0, card["z_dim"])
    embedding = np.random.default_rng(0).standard_normal((2, 64)).astype(np.float32)
    none = run_onnx(data, {**feeds, "style_embedding": np.zeros_like(embedding)})
    assert identical_share(as_pixels(none), np.stack(plain)) >= 0.999
    steered = run_onnx(data, {**feeds, "style_embedding": embedding})
    from ganpipe.store.checkpoints import load_network

    generator, _ = load_network(ref.store, ref.folder, "generator", registry)
    with torch.no_grad():
        expected = generator.forward(torch.from_numpy(feeds["z"]), torch.tensor([2, 2]),
                                     torch.from_numpy(embedding)).numpy()  # fmt: skip
    assert np.abs(steered - expected).max() <= 1e-4
    assert np.abs(steered - none).max() > 0.01
    assert result.verified["max_abs_diff"] <= 1e-4


def test_model_card_describes_the_file_and_its_snippet_runs(tmp_path):
    """A trained model (so it has an evaluation), exported by the command line with a licence;
    the card's own usage snippet, run as a user would, returns images."""
    from tests.conftest import train_tiny_model

    root = train_tiny_model(tmp_path / "store")
    store = tmp_path / "store"
    runner = CliRunner()
    done = runner.invoke(app, ["evaluate", "--set", f"store.root={store}",
                               "--set", "evaluate.per_style=4"])  # fmt: skip
    assert done.exit_code == 0, done.output
    args = ["export", "--set", f"store.root={root}", "--licence", "CC-BY-4.0"]
    done = runner.invoke(app, args)
    assert done.exit_code == 0, done.output
    record = json.loads(done.stdout[done.stdout.index("{") :])
    card_path = record["card"]
    with open(card_path) as fh:
        card = json.load(fh)
    assert card["format"] == "onnx" and card["opset"] == 18 and card["dynamic_batch"]
    assert card["licence"] == "CC-BY-4.0" and card["image_size"] == 16
    assert [s["name"] for s in card["styles"]] == [f"style-{i}" for i in range(STYLES)]
    assert card["training_data"]["fingerprint"] and card["evaluation"]["metrics"]["fd"] > 0
    assert card["verified"]["max_abs_diff"] <= 1e-4
    folder = os.path.dirname(card_path)
    snippet = card["usage"] + "\nprint(images.shape, images.dtype, images.min() >= -1)"
    ran = subprocess.run([sys.executable, "-c", snippet], cwd=folder, capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == ["(8,", "3,", "16,", "16)", "float32", "True"]


def test_torchscript_card_snippet_runs(root, tmp_path):
    registry = load_registry(load_config(None, tiny_overrides(root)))
    export_model(model(root, "stylegan"), registry, "torchscript", "uint8", RunStore(str(tmp_path)))
    card = json.loads((tmp_path / "model-card.json").read_text())
    snippet = card["usage"] + "\nprint(tuple(images.shape), images.dtype)"
    ran = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "(8, 16, 16, 3) torch.uint8"


def plugin_model(root, name: str) -> tuple[ModelRef, object]:
    cfg = load_config(None, tiny_overrides(root) + [f"plugins=[{PLUGIN}]"])
    registry = load_registry(cfg)
    options = {"num_styles": STYLES, "image_size": 16}
    generator = registry.create("generator", name, **options)
    store = RunStore(str(root))
    meta = json.loads(store.read_text(model(root, "dcgan").files.network("generator", "json")))
    folder = layout.model_dir("plugin", name)
    meta = {k: meta[k] for k in ("styles", "dataset_fingerprint", "steps")}
    export_network(store, folder, "generator", name, options, generator.eval(),
                   {**meta, "version": name, "model": "plugin"})  # fmt: skip
    return ModelRef(store, folder), registry


def test_generator_without_conditioning_is_refused_by_name(root, tmp_path):
    ref, registry = plugin_model(root, "index_only")
    with pytest.raises(ConfigError, match="'index_only' cannot be exported.*condition"):
        export_model(ref, registry, "onnx", "float", RunStore(str(tmp_path)))
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_generator_that_branches_on_batch_size_is_refused_by_name(root, tmp_path, fmt):
    ref, registry = plugin_model(root, "batch_dependent")
    with pytest.raises(ConfigError, match="'batch_dependent'") as caught:
        export_model(ref, registry, fmt, "float", RunStore(str(tmp_path)))
    assert "Writing a plugin" in caught.value.message
    assert not any(tmp_path.iterdir())  # nothing half-right was written


def test_cli_rejects_unknown_format_with_a_fix(root):
    done = CliRunner().invoke(app, ["export", "--set", f"store.root={root}", "--format", "tflite"])
    assert done.exit_code == 1
    assert "unknown export format 'tflite'" in done.output and "onnx, torchscript" in done.output
