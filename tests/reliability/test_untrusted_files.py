"""Untrusted files: checkpoints, exported models, shards, manifests and datasets are data from
anyone. A pickle payload is refused (it never runs: each payload here would create a marker
file), paths that lead outside their root are refused, and nothing from a dataset or manifest
is ever executed or imported."""

from __future__ import annotations

import io
import json
import pickle
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from ganpipe.builtin.nets import DCGANGenerator
from ganpipe.config import load_config
from ganpipe.data.dataset import load_dataset
from ganpipe.errors import ConfigError, GanpipeError, StoreError
from ganpipe.registry import load_registry
from ganpipe.store import RunStore
from ganpipe.store.checkpoints import (
    export_network,
    load_checkpoint_bytes,
    load_network,
    newest_valid_checkpoint,
)
from tests.test_ingest import run_ingest

REPO = Path(__file__).resolve().parents[2]


class Payload:
    """Unpickling this creates the marker file: proof that a payload ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "PAYLOAD-RAN"
    yield path
    assert not path.exists(), "a pickle payload was executed"


def pickled(obj) -> bytes:
    return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


def test_a_checkpoint_with_a_pickle_payload_is_refused_and_never_runs(tmp_path, marker):
    store = RunStore(str(tmp_path / "store"))
    good = io.BytesIO()
    torch.save({"step": 1, "generator": {"w": torch.ones(2)}}, good)
    store.write_bytes("ckpt/step-00000001.pt", good.getvalue())
    for payload in (Payload(marker), {"generator": Payload(marker)}):
        hostile = io.BytesIO()
        torch.save(payload, hostile)
        store.write_bytes("ckpt/step-00000002.pt", hostile.getvalue())
        with pytest.raises(StoreError) as err:
            load_checkpoint_bytes(hostile.getvalue(), "evil.pt")
        assert "cannot be loaded safely" in err.value.message and "use another" in err.value.fix
        step, state = newest_valid_checkpoint(store, "ckpt")  # resume: auto skips it
        assert step == 1 and torch.equal(state["generator"]["w"], torch.ones(2))
    store.write_bytes("ckpt/step-00000003.pt", pickled(Payload(marker)))  # plain pickle too
    assert newest_valid_checkpoint(store, "ckpt")[0] == 1


@pytest.fixture
def exported(tmp_path):
    store = RunStore(str(tmp_path / "model-store"))
    G = DCGANGenerator(num_styles=2, image_size=16)
    export_network(store, "m", "generator", "dcgan", {"num_styles": 2, "image_size": 16}, G,
                   {"styles": {}, "model": "x", "version": "v"})  # fmt: skip
    return store, load_registry(load_config())


@pytest.mark.parametrize("tamper", ["pickle-weights", "truncated-weights", "wrong-shapes",
                                    "imported-name", "bad-options", "bad-json"])  # fmt: skip
def test_a_tampered_exported_model_is_refused_clearly(exported, marker, tamper):
    store, registry = exported
    meta = store.read_json("m/generator.json")
    weights = store.read_bytes("m/generator.safetensors")
    if tamper == "pickle-weights":
        store.write_bytes("m/generator.safetensors", pickled(Payload(marker)))
    elif tamper == "truncated-weights":
        store.write_bytes("m/generator.safetensors", weights[: len(weights) // 2])
    elif tamper == "wrong-shapes":
        from safetensors.torch import save

        other = DCGANGenerator(num_styles=5, image_size=16).state_dict()
        store.write_bytes("m/generator.safetensors", save(other))
    elif tamper == "imported-name":
        store.write_json("m/generator.json", {**meta, "name": "os.system"})
    elif tamper == "bad-options":
        store.write_json("m/generator.json", {**meta, "options": {"__class__": "evil"}})
    else:
        store.write_text("m/generator.json", '{"name": "dcgan", "options": ')
    with pytest.raises(GanpipeError) as err:
        load_network(store, "m", "generator", registry)
    message = err.value.message
    if tamper == "imported-name":
        assert isinstance(err.value, ConfigError) and "unknown generator 'os.system'" in message
    else:
        assert isinstance(err.value, StoreError) and err.value.fix, message


def test_a_shard_holding_pickled_objects_is_refused(tmp_path, labelled_folder, marker):
    _, manifest, _, store, folder = run_ingest(tmp_path, labelled_folder)
    shard = manifest["shard"][0]
    buf = io.BytesIO()
    np.save(buf, np.array([Payload(marker)], dtype=object), allow_pickle=True)
    store.write_bytes(f"{folder}/{shard}", buf.getvalue())
    dataset = load_dataset(store, "t")
    with pytest.raises(StoreError, match="not a plain array") as err:
        list(dataset.iter_shards())
    assert isinstance(err.value, ValueError)  # also what numpy callers expect


@pytest.mark.parametrize("where", ["relative", "absolute"])
def test_store_manifests_and_pointers_cannot_lead_outside_the_store(
    tmp_path, labelled_folder, where
):
    _, manifest, _, store, folder = run_ingest(tmp_path, labelled_folder)
    outside = tmp_path / "outside.npy"
    np.save(outside, np.zeros((20, 16, 16, 3), np.uint8))  # a perfectly readable array
    escape = ("../" * 8 + str(outside).lstrip("/")) if where == "relative" else str(outside)
    manifest["shard"] = escape
    store.write_parquet(f"{folder}/manifest.parquet", manifest)
    with pytest.raises(StoreError, match="points outside the run store|does not exist"):
        list(load_dataset(store, "t").iter_shards())  # never the array outside

    # A batch manifest's image path, and the pointer to the current model version.
    from ganpipe.stages.filter import load_batch_images

    with pytest.raises(StoreError, match="points outside the run store"):
        load_batch_images(store, "batches/b", [escape])
    store.write_text("models/demo/current", escape + "\n")
    from ganpipe.domain.model_pointers import current_model

    with pytest.raises(StoreError, match="points outside the run store|no exported"):
        load_network(store, current_model(load_config(), store).folder, "generator",
                     load_registry(load_config()))  # fmt: skip


def test_source_manifests_cannot_lead_outside_their_folder(tmp_path, labelled_folder):
    table = pd.DataFrame({"path": ["red/red-0.png", "../outside.png", "red/../../outside.png",
                                   "red/../red/red-1.png"]})  # fmt: skip
    (tmp_path / "outside.png").write_bytes((labelled_folder / "blue" / "blue-0.png").read_bytes())
    table.to_csv(labelled_folder / "list.csv", index=False)
    result, manifest, rejects, *_ = run_ingest(tmp_path, labelled_folder / "list.csv")
    assert len(manifest) == 2 and list(rejects["reason"]) == ["outside_root"] * 2


def _extension_typed_parquet(path: Path, marker: Path, column: str, values: list) -> None:
    """A Parquet file whose column claims the pickled ``arrow.py_extension_type`` (the
    CVE-2023-47248 shape): readers that honour it unpickle attacker bytes."""
    field = pa.field(column, pa.string(), metadata={
        b"ARROW:extension:name": b"arrow.py_extension_type",
        b"ARROW:extension:metadata": pickled(Payload(marker)),
    })  # fmt: skip
    pq.write_table(pa.table([pa.array(values, pa.string())], schema=pa.schema([field])), path)


def test_parquet_files_with_pickled_extension_types_never_run(tmp_path, labelled_folder, marker):
    source = labelled_folder / "list.parquet"
    _extension_typed_parquet(source, marker, "path", ["red/red-0.png", "blue/blue-0.png"])
    result, manifest, _, store, folder = run_ingest(tmp_path, source)
    assert result.counts["accepted"] == 2

    # The same in the store's own dataset manifest.
    frame = store.read_parquet(f"{folder}/manifest.parquet")
    _extension_typed_parquet(Path(store.path(f"{folder}/bad.parquet")), marker, "id",
                             list(frame["id"]))  # fmt: skip
    store.read_parquet(f"{folder}/bad.parquet")


def test_code_in_a_dataset_is_data(tmp_path, labelled_folder, marker, monkeypatch):
    """Python files, a .pth, a conftest and a plugin-looking module in the dataset folder are
    inputs like any other: rejected as not images, never imported."""
    code = f"open({str(marker)!r}, 'w').close()\n"
    for name in ["__init__.py", "conftest.py", "sitecustomize.py", "ganpipe_plugin.py",
                 "evil.pth", "red/run.png"]:  # fmt: skip
        (labelled_folder / name).write_text(code if name != "evil.pth" else f"import os; {code}")
    modules = set(sys.modules)
    monkeypatch.syspath_prepend(str(labelled_folder))  # even on the path: still not imported
    result, manifest, rejects, *_ = run_ingest(tmp_path, labelled_folder)
    assert result.counts["accepted"] == 12 and set(rejects["reason"]) == {"not_image"}
    imported = [
        name
        for name in set(sys.modules) - modules
        if str(getattr(sys.modules[name], "__file__", "")).startswith(str(tmp_path))
    ]
    assert imported == []  # fmt: skip


UNSAFE = [
    (r"\bpickle\.loads?\(", "pickle"),
    (r"torch\.load\((?!.*weights_only=True)", "torch.load without weights_only=True"),
    (r"allow_pickle=True", "numpy allow_pickle"),
    (r"\byaml\.(?:unsafe_)?load\(", "yaml.load (use safe_load)"),
    (r"(?<![\w.])(?:eval|exec)\(", "eval/exec"),
    (r"__import__\(", "__import__"),
    (r"import_module\(", "importlib outside plugin loading"),
]


def test_no_code_path_can_unpickle_eval_or_import_from_data():
    """A source scan: the only dynamic imports are the plugin loader's (names from the config
    and installed entry points, never from data)."""
    found = []
    for path in sorted([*REPO.glob("ganpipe/**/*.py"), *REPO.glob("flows/**/*.py")]):
        rel = path.relative_to(REPO).as_posix()
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            for pattern, what in UNSAFE:
                if re.search(pattern, code) and not (
                    what.startswith("importlib") and rel == "ganpipe/registry.py"
                ):
                    found.append(f"{rel}:{number}: {what}: {line.strip()}")
    assert found == []


def test_saved_configs_are_never_read_back_as_code(tmp_path, labelled_folder, marker):
    """A config.yaml in the store (what ganpipe writes beside results) holding a Python tag is
    refused by the safe YAML loader when someone loads it."""
    _, _, _, store, folder = run_ingest(tmp_path, labelled_folder)
    saved = Path(store.path(f"{folder}/config.yaml"))
    saved.write_text(f"train: !!python/object/apply:pathlib.Path.touch [{str(marker)!r}]\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(saved)
    assert json.loads(Path(store.path(f"{folder}/summary.json")).read_text())
