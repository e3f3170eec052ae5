import os

import numpy as np
import pandas as pd
import pytest

from ganpipe.errors import StoreError
from ganpipe.store import RunStore


def test_local_writes_are_atomic_and_leave_no_temp_files(tmp_path):
    store = RunStore(str(tmp_path / "runs"))
    store.write_json("a/b/c.json", {"x": 1})
    store.write_parquet("a/m.parquet", pd.DataFrame({"id": ["p", "q"], "n": [1, 2]}))
    store.write_npy("a/px.npy", np.arange(12, dtype=np.uint8).reshape(2, 2, 3))
    store.write_json("a/b/c.json", {"x": 2})  # overwrite in place
    assert store.read_json("a/b/c.json") == {"x": 2}
    assert list(store.read_parquet("a/m.parquet")["id"]) == ["p", "q"]
    assert store.read_npy("a/px.npy").shape == (2, 2, 3)
    leftovers = [f for _, _, files in os.walk(tmp_path) for f in files if ".tmp-" in f]
    assert leftovers == []
    assert store.listdir("a") == ["b", "m.parquet", "px.npy"]
    assert store.listdir("missing") == []


def test_a_crash_mid_write_leaves_the_old_file(tmp_path, monkeypatch):
    store = RunStore(str(tmp_path))
    store.write_text("f.txt", "old")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        store.write_text("f.txt", "new")
    monkeypatch.undo()
    assert store.read_text("f.txt") == "old"


def test_pickled_arrays_are_refused(tmp_path):
    store = RunStore(str(tmp_path))
    np.save(tmp_path / "evil.npy", np.array([object()], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="allow_pickle"):
        store.read_npy("evil.npy")


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        RunStore(str(tmp_path)).read_text("nope.txt")


def test_s3_store_round_trip(s3_options):
    bucket, options = s3_options
    store = RunStore(f"s3://{bucket}/runs", options)
    uri = store.write_parquet("datasets/x/manifest.parquet", pd.DataFrame({"id": ["a"]}))
    assert uri == f"s3://{bucket}/runs/datasets/x/manifest.parquet"
    assert store.exists("datasets/x/manifest.parquet")
    assert list(store.read_parquet("datasets/x/manifest.parquet")["id"]) == ["a"]
    assert store.listdir("datasets/x") == ["manifest.parquet"]
