import os
import shutil

import numpy as np
import pytest
from PIL import Image

from ganpipe.config import load_config
from ganpipe.errors import ConfigError, GanpipeError
from ganpipe.stages.ingest import ingest
from ganpipe.store import RunStore
from tests.conftest import write_png


def run_ingest(tmp_path, source, *extra):
    cfg = load_config(
        None,
        [
            f"store.root={tmp_path / 'store'}",
            f"dataset.sources=[{source}]",
            "dataset.image_size=16",
            "dataset.name=t",
            *extra,
        ],
    )
    store = RunStore.from_config(cfg)
    result = ingest(cfg, store)
    folder = f"datasets/t/{result.fingerprint}"
    return (
        result,
        store.read_parquet(f"{folder}/manifest.parquet"),
        store.read_parquet(f"{folder}/rejects.parquet"),
        store,
        folder,
    )


@pytest.fixture
def messy_folder(labelled_folder):
    root = labelled_folder
    (root / "red" / "empty.png").write_bytes(b"")
    (root / "red" / "notes.png").write_text("these are my notes, not a picture")
    good = (root / "red" / "red-0.png").read_bytes()
    (root / "red" / "truncated.png").write_bytes(good[: len(good) // 2])
    damaged = bytearray((root / "red" / "red-1.png").read_bytes())
    damaged[60:140] = b"\xff" * 80  # scribble over the compressed pixel data
    (root / "red" / "corrupt.png").write_bytes(bytes(damaged))
    write_png(root / "blue" / "tiny.png", size=(4, 4))
    shutil.copy(root / "blue" / "blue-1.png", root / "blue" / "copy-of-blue-1.png")
    Image.new("1", (8000, 8000)).save(root / "blue" / "bomb.png")
    os.symlink(root / "nowhere.png", root / "blue" / "broken-link.png")
    return root


def test_every_input_is_accepted_or_quarantined_with_a_reason(tmp_path, messy_folder):
    result, manifest, rejects, _, _ = run_ingest(tmp_path, messy_folder)
    reasons = dict(zip(rejects["source"].map(os.path.basename), rejects["reason"]))
    assert reasons == {
        "empty.png": "empty",
        "notes.png": "not_image",
        "truncated.png": "truncated",
        "corrupt.png": "corrupt",
        "tiny.png": "too_small",
        "copy-of-blue-1.png": "duplicate",
        "bomb.png": "too_large",
        "broken-link.png": "unreadable",
    }
    assert rejects["detail"].str.len().min() > 5
    assert result.counts == {"inputs": 20, "accepted": 12, "rejected": 8}
    assert result.counts["inputs"] == len(manifest) + len(rejects)
    assert sorted(manifest["label"].unique()) == ["blue", "red"]
    assert list(manifest.columns[:8]) == [
        "id",
        "source",
        "sha256",
        "width",
        "height",
        "mode",
        "label",
        "split",
    ]
    assert set(manifest["split"]) <= {"train", "val"}


def test_reingest_is_reused_and_new_data_gives_a_new_fingerprint(tmp_path, labelled_folder):
    first, manifest1, _, store, folder = run_ingest(tmp_path, labelled_folder)
    mtime = os.path.getmtime(store.path(f"{folder}/manifest.parquet"))
    again, *_ = run_ingest(tmp_path, labelled_folder)
    assert again.fingerprint == first.fingerprint and again.reused
    assert os.path.getmtime(store.path(f"{folder}/manifest.parquet")) == mtime

    write_png(labelled_folder / "red" / "new.png", (220, 60, 60), seed=999)
    grown, manifest2, *_ = run_ingest(tmp_path, labelled_folder)
    assert grown.fingerprint != first.fingerprint and grown.counts["accepted"] == 13
    old_split = dict(zip(manifest1["id"], manifest1["split"]))
    assert all(
        old_split[i] == s for i, s in zip(manifest2["id"], manifest2["split"]) if i in old_split
    )

    changed, *_ = run_ingest(tmp_path, labelled_folder, "dataset.resize=pad")
    assert changed.fingerprint != grown.fingerprint


def test_modes_are_normalised_to_rgb(tmp_path):
    root = tmp_path / "modes"
    root.mkdir()
    rgba = Image.new("RGBA", (20, 20), (255, 0, 0, 0))  # fully transparent red
    rgba.save(root / "transparent.png")
    Image.new("L", (20, 20), 128).save(root / "gray.png")
    Image.new("P", (20, 20), 3).save(root / "palette.png")
    Image.fromarray(np.full((20, 20), 65535, np.uint16)).save(root / "sixteen.png")
    Image.new("CMYK", (20, 20), (0, 255, 255, 0)).save(root / "cmyk.jpg")
    result, manifest, rejects, store, folder = run_ingest(tmp_path, root)
    assert result.counts["rejected"] == 0
    pixels = store.read_npy(f"{folder}/shards/shard-00000.npy")
    assert pixels.shape == (5, 16, 16, 3)
    by_name = dict(zip(manifest["source"].map(os.path.basename), manifest["offset"]))
    assert (pixels[by_name["transparent.png"]] == 255).all()  # composited on white
    assert (pixels[by_name["sixteen.png"]] == 255).all()  # 16-bit full scale stays white
    assert set(manifest["mode"]) == {"RGBA", "L", "P", "I;16", "CMYK"}


def test_exif_orientation_is_applied(tmp_path):
    root = tmp_path / "exif"
    root.mkdir()
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    img.paste((0, 0, 255), (0, 10, 40, 20))  # top red, bottom blue as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    img.save(root / "rotated.jpg", exif=exif, quality=95)
    _, manifest, _, store, folder = run_ingest(tmp_path, root)
    px = store.read_npy(f"{folder}/shards/shard-00000.npy")[0].astype(int)
    left, right = px[:, :6].mean((0, 1)), px[:, -6:].mean((0, 1))
    # After rotation the red/blue split runs left-right, not top-bottom.
    assert abs(left[0] - right[0]) > 150 and abs(left[2] - right[2]) > 150
    assert (manifest.loc[0, "width"], manifest.loc[0, "height"]) == (40, 20)


def test_glob_sources_and_errors(tmp_path, labelled_folder):
    result, manifest, *_ = run_ingest(tmp_path, f"{labelled_folder}/red/*.png")
    assert result.counts["accepted"] == 6 and set(manifest["label"].dropna()) == set()
    with pytest.raises(ConfigError, match="does not exist"):
        run_ingest(tmp_path, tmp_path / "no-such-folder")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(GanpipeError, match="list no files"):
        run_ingest(tmp_path, empty)
    (empty / "x.txt").write_text("no image")
    with pytest.raises(GanpipeError, match="no usable images.*not_image: 1"):
        run_ingest(tmp_path, empty)
