"""A real ``ganpipe ingest`` / ``ganpipe generate`` process killed with SIGKILL at every store
write it makes (before the write, or half-way through it), then run again: the result is exactly
an uninterrupted run's, nothing duplicated or lost; at no point does a manifest list a missing
file or a final name hold a half-written file; staging folders and temporary files of the
killed run are swept."""

from __future__ import annotations

import os
import shutil
import signal

import numpy as np
import pandas as pd
import pytest

import ganpipe.store.ownership as ownership
from ganpipe.config import load_config
from ganpipe.stages.generate import generate
from ganpipe.stages.ingest import ingest
from ganpipe.store import RunStore
from tests.conftest import tiny_overrides, train_tiny_model, write_png
from tests.reliability.conftest import ganpipe, sets, store_problems, working_files

pytestmark = pytest.mark.slow

CRASH_PLUGIN = "plugins=[tests.fixture_plugins.crash_points]"


def counting_writes(monkeypatch) -> list[str]:
    """Every store write of this process, in order."""
    written: list[str] = []
    original = RunStore.write_bytes

    def write_bytes(self, rel, data):
        written.append(rel)
        return original(self, rel, data)

    monkeypatch.setattr(RunStore, "write_bytes", write_bytes)
    return written


# Ingestion --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Two labelled styles, a few bad inputs, enough images for several small shards."""
    root = tmp_path_factory.mktemp("corpus") / "images"
    for label, rgb in (("red", (210, 40, 40)), ("blue", (40, 40, 210))):
        for i in range(9):
            write_png(root / label / f"{label}-{i}.png", rgb, seed=i + 50 * len(label))
    (root / "red" / "empty.png").write_bytes(b"")
    (root / "blue" / "notes.png").write_text("not a picture")
    shutil.copy(root / "red" / "red-1.png", root / "red" / "copy.png")
    return root


def ingest_overrides(store_root, corpus) -> list[str]:
    return [f"store.root={store_root}", f"dataset.sources=[{corpus}]", "dataset.name=t",
            "dataset.image_size=16", "dataset.shard_mb=0.005"]  # 6 images per shard  # fmt: skip


def dataset_state(root):
    """What a reader sees of dataset ``t``: its latest version's rows, rejects and pixels."""
    store = RunStore(str(root))
    fp = store.read_json("datasets/t/latest.json")["fingerprint"]
    folder = f"datasets/t/{fp}"
    manifest = store.read_parquet(f"{folder}/manifest.parquet")
    pixels = {
        row.id: store.read_npy(f"{folder}/{row.shard}")[row.offset] for row in manifest.itertuples()
    }
    rejects = store.read_parquet(f"{folder}/rejects.parquet")
    return fp, manifest, rejects.sort_values("source").reset_index(drop=True), pixels


def test_ingest_killed_at_every_write_then_rerun_loses_and_duplicates_nothing(
    corpus, tmp_path, monkeypatch
):
    reference = tmp_path / "reference"
    written = counting_writes(monkeypatch)
    cfg = load_config(None, ingest_overrides(reference, corpus))
    result = ingest(cfg, RunStore.from_config(cfg))
    monkeypatch.undo()
    assert result.counts == {"inputs": 21, "accepted": 18, "rejected": 3}
    ref_fp, ref_manifest, ref_rejects, ref_pixels = dataset_state(reference)
    shard_writes = sum(".staging-" in w for w in written)
    assert shard_writes == 3 and len(written) >= 9

    # Every write point, killed before it; a shard and the manifest also killed half-way.
    crashes = [f"write::{k}" for k in range(1, len(written) + 1)]
    crashes += ["partial:.staging-:2", "partial:manifest.parquet:1"]
    for crash in crashes:
        root = tmp_path / crash.replace(":", "_").replace(".", "")
        overrides = ingest_overrides(root, corpus) + [CRASH_PLUGIN]
        killed = ganpipe("ingest", *sets(overrides), env={"GANPIPE_CRASH": crash})
        assert killed.returncode == -signal.SIGKILL, (crash, killed.stderr[-1500:])
        assert store_problems(root) == [], crash

        again = ingest(*_stage_args(root, corpus))
        assert again.fingerprint == ref_fp and again.counts == result.counts, crash
        fp, manifest, rejects, pixels = dataset_state(root)
        assert manifest["id"].is_unique and len(manifest) == 18, crash
        pd.testing.assert_frame_equal(manifest, ref_manifest)
        pd.testing.assert_frame_equal(rejects, ref_rejects)
        assert all(np.array_equal(pixels[i], ref_pixels[i]) for i in ref_pixels), crash
        assert working_files(root) == [], crash  # the killed run's staging and temporaries
        assert store_problems(root) == [], crash


def _stage_args(root, corpus):
    cfg = load_config(None, ingest_overrides(root, corpus))
    return cfg, RunStore.from_config(cfg)


def test_a_running_ingests_staging_is_never_swept(corpus, tmp_path):
    """Sweeping is safe while another ingest of the same dataset runs: only the staging of
    writers that are gone is removed."""
    cfg, store = _stage_args(tmp_path / "store", corpus)
    live = ownership.claim_working_name(".staging-")
    store.write_bytes(f"datasets/t/{live}/shard-00000.npy", b"in progress")
    dead = f".staging-{ownership._HOST}~{ownership._NAMESPACE}~{2**22 + 7}~0badc0de~1"
    store.write_bytes(f"datasets/t/{dead}/shard-00000.npy", b"left by a killed ingest")
    old = store.path("datasets/t/.staging-0123456789ab")  # a writer we cannot check, long ago
    os.makedirs(old)
    open(f"{old}/shard-00000.npy", "wb").close()
    os.utime(f"{old}/shard-00000.npy", (0, 0))
    os.utime(old, (0, 0))
    try:
        ingest(cfg, store)
        names = os.listdir(store.path("datasets/t"))
        assert live in names and dead not in names and ".staging-0123456789ab" not in names
        assert live not in store.listdir("datasets/t")  # hidden from readers all the same
    finally:
        ownership.release_working_name(live)
    assert store.sweep("datasets/t") == [live]  # once its writer let go of it


# Generation -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("crash-generate") / "store"
    return train_tiny_model(root, generate_overrides(root))


def generate_overrides(root) -> list[str]:
    return tiny_overrides(root, **{"train.steps": 4, "train.sample_every": "null",
                                   "generate.batch_size": 5})  # fmt: skip


def batch_files(root) -> dict[str, bytes]:
    """The images of the one batch, by path; working files (hidden from readers) aside."""
    (batch,) = (root / "batches").iterdir()
    return {
        p.relative_to(batch).as_posix(): p.read_bytes()
        for p in sorted(batch.rglob("*"))
        if p.is_file() and "images" in p.parts and not ownership.is_working_name(p.name)
    }


def test_generate_killed_mid_batch_then_rerun_writes_each_image_once(trained, tmp_path):
    reference = tmp_path / "reference"
    shutil.copytree(trained, reference)
    cfg = load_config(None, generate_overrides(reference))
    first = generate(cfg, RunStore.from_config(cfg))
    ref_images = batch_files(reference)
    (batch,) = (reference / "batches").iterdir()
    ref_manifest = pd.read_parquet(batch / "manifest.parquet")
    assert first.count == 24 and sorted(ref_manifest["path"]) == sorted(ref_images)

    # Killed before an image of the second chunk, half-way through one, half-way through the
    # manifest (every image written).
    for crash in ["write:/images/:8", "partial:/images/:13", "partial:manifest.parquet:1"]:
        root = crash_generate(trained, tmp_path, crash)
        cfg = load_config(None, generate_overrides(root))
        again = generate(cfg, RunStore.from_config(cfg))
        assert again.batch_id == first.batch_id and again.count == 24, crash
        (batch,) = (root / "batches").iterdir()
        manifest = pd.read_parquet(batch / "manifest.parquet")
        assert list(manifest["path"]) == list(ref_manifest["path"]), crash
        assert batch_files(root) == ref_images, crash  # same images, each once, none extra
        assert store_problems(root) == [], crash


def crash_generate(trained, tmp_path, crash: str):
    """A copy of the trained store where ``ganpipe generate`` was killed at ``crash``."""
    root = tmp_path / crash.replace(":", "_").replace("/", "").replace(".", "")
    shutil.copytree(trained, root)
    overrides = generate_overrides(root) + [CRASH_PLUGIN]
    killed = ganpipe("generate", *sets(overrides), env={"GANPIPE_CRASH": crash})
    assert killed.returncode == -signal.SIGKILL, (crash, killed.stderr[-1500:])
    assert store_problems(root) == [], crash  # no manifest lists a missing image
    return root


def test_generate_rerun_sweeps_the_temporary_file_of_a_cut_image_write(trained, tmp_path):
    root = crash_generate(trained, tmp_path, "partial:/images/:3")
    assert working_files(root)  # the cut write's temporary file
    cfg = load_config(None, generate_overrides(root))
    generate(cfg, RunStore.from_config(cfg))
    assert working_files(root) == []
