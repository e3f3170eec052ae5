"""Manifests, S3, incremental re-ingest: ingestion as teams point it at what they have."""

import pandas as pd
import pytest
from PIL import Image

import ganpipe.data.inputs as input_module  # where each input is decoded
from ganpipe.errors import ConfigError
from ganpipe.store import RunStore
from tests.conftest import write_png
from tests.test_ingest import run_ingest


def run(tmp_path, sources, *extra):
    """Ingest ``sources`` into one store under ``tmp_path``: (result, manifest, rejects)."""
    return run_ingest(tmp_path, ",".join(map(str, sources)), *extra)[:3]


def test_csv_manifest_with_labels_relative_and_absolute_paths(tmp_path, labelled_folder):
    outside = write_png(tmp_path / "elsewhere" / "secret.png", seed=7)
    table = pd.DataFrame({
        "file": ["red/red-0.png", "blue/blue-1.png", str(outside), "../elsewhere/secret.png",
                 "red/../../elsewhere/secret.png", "", "red/missing.png"],
        "style": ["warm", "cool", "other", "x", "x", "x", "warm"],
    })  # fmt: skip
    manifest_path = labelled_folder / "list.csv"
    table.to_csv(manifest_path, index=False)
    result, manifest, rejects = run(
        tmp_path, [manifest_path], "dataset.path_column=file", "dataset.labels=column:style"
    )
    assert result.counts == {"inputs": 7, "accepted": 3, "rejected": 4}
    assert sorted(manifest["label"]) == ["cool", "other", "warm"]
    reasons = sorted(rejects["reason"])
    assert reasons == ["outside_root", "outside_root", "unreadable", "unreadable"]
    escaped = rejects[rejects["reason"] == "outside_root"]
    assert escaped["detail"].str.contains("outside the manifest's folder").all()


def test_parquet_manifest_and_manifest_errors(tmp_path, labelled_folder):
    path = labelled_folder / "list.parquet"
    pd.DataFrame({"path": ["red/red-1.png", "red/red-2.png"]}).to_parquet(path)
    result, manifest, _ = run(tmp_path, [path])
    assert result.counts["accepted"] == 2
    assert set(manifest["label"]) == {"red"}  # labels: dirs works inside a manifest too

    with pytest.raises(ConfigError, match="no column 'path'.*columns are: file"):
        pd.DataFrame({"file": ["a.png"]}).to_csv(tmp_path / "bad.csv", index=False)
        run(tmp_path, [tmp_path / "bad.csv"])
    with pytest.raises(ConfigError, match="no label column 'genre'"):
        run(tmp_path, [path], "dataset.labels=column:genre")
    with pytest.raises(ConfigError, match="does not exist"):
        run(tmp_path, [tmp_path / "nope.csv"])
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(ConfigError, match="cannot read manifest"):
        run(tmp_path, [tmp_path / "junk.parquet"])


def test_nullable_parquet_columns_mean_missing_values(tmp_path, labelled_folder):
    path = labelled_folder / "nullable.parquet"
    pd.DataFrame(
        {"path": pd.array(["red/red-0.png", None], dtype="string"),
         "style": pd.array([None, "x"], dtype="string")}
    ).to_parquet(path)  # fmt: skip
    result, manifest, rejects = run(tmp_path, [path], "dataset.labels=column:style")
    assert manifest["label"].isna().all()  # NA is no label, not a style called "<NA>"
    assert list(rejects["detail"]) == ["the row has no path"]


def test_several_sources_and_an_input_listed_twice(tmp_path, labelled_folder):
    result, manifest, rejects = run(
        tmp_path,
        [labelled_folder / "red", labelled_folder / "blue", f"{labelled_folder}/red/*.png"],
    )
    assert result.counts == {"inputs": 18, "accepted": 12, "rejected": 6}
    assert set(rejects["reason"]) == {"duplicate"}
    assert rejects["detail"].str.contains("listed more than once").all()


def test_reingest_decodes_nothing_and_new_files_only_what_is_new(
    tmp_path, labelled_folder, monkeypatch
):
    first, *_ = run(tmp_path, [labelled_folder])
    assert first.decoded == 12 and first.reused_inputs == 0

    def no_decoding(*args, **kwargs):
        raise AssertionError("unchanged inputs must not be decoded")

    monkeypatch.setattr(input_module, "decode_image", no_decoding)
    again, *_ = run(tmp_path, [labelled_folder])
    assert again.reused and again.decoded == 0 and again.fingerprint == first.fingerprint
    monkeypatch.undo()

    write_png(labelled_folder / "blue" / "new.png", (30, 30, 250), seed=77)
    (labelled_folder / "blue" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    calls = []
    real = input_module.decode_image
    monkeypatch.setattr(input_module, "decode_image", lambda d, s: calls.append(1) or real(d, s))
    grown, manifest, rejects = run(tmp_path, [labelled_folder])
    assert len(calls) == 2 and grown.decoded == 2 and grown.reused_inputs == 12
    assert grown.fingerprint != first.fingerprint and len(manifest) == 13
    assert list(rejects["reason"]) == ["not_image"]

    # A rejected input is remembered too: the next run does not read it again.
    calls.clear()
    run(tmp_path, [labelled_folder])
    assert calls == []


def test_pixels_of_known_inputs_come_from_the_old_shards(tmp_path, labelled_folder):
    first, manifest1, _ = run(tmp_path, [labelled_folder])
    store = RunStore(str(tmp_path / "store"))
    old = store.read_npy(f"datasets/t/{first.fingerprint}/shards/shard-00000.npy")
    write_png(labelled_folder / "red" / "zz.png", (250, 0, 0), seed=5)
    second, manifest2, _ = run(tmp_path, [labelled_folder])
    new = store.read_npy(f"datasets/t/{second.fingerprint}/shards/shard-00000.npy")
    by_id_old = dict(zip(manifest1["id"], manifest1["offset"]))
    for image_id, offset in zip(manifest2["id"], manifest2["offset"]):
        if image_id in by_id_old:
            assert (new[offset] == old[by_id_old[image_id]]).all()

    # With the old version deleted, known inputs are decoded again rather than lost.
    store.remove(f"datasets/t/{first.fingerprint}")
    store.remove(f"datasets/t/{second.fingerprint}")
    third, manifest3, _ = run(tmp_path, [labelled_folder])
    assert third.fingerprint == second.fingerprint and len(manifest3) == 13
    assert not third.reused and third.decoded == 13


def test_resize_policies_and_background(tmp_path):
    root = tmp_path / "wide"
    root.mkdir()
    img = Image.new("RGB", (40, 20), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 10, 20))  # red stripe on the far left
    img.save(root / "wide.png")
    store = RunStore(str(tmp_path / "store"))

    def pixels(*extra):
        result, *_ = run(tmp_path, [root], *extra)
        return store.read_npy(f"datasets/t/{result.fingerprint}/shards/shard-00000.npy")[0]

    crop = pixels("dataset.resize=center_crop")
    assert crop[:, 0, 0].max() < 60  # the red stripe is cropped away
    stretch = pixels("dataset.resize=stretch")
    assert stretch[8, 0, 0] > 200  # the red stripe survives, squeezed
    pad = pixels("dataset.resize=pad", "dataset.background=[0,255,0]")
    assert pad[0, 8, 1] > 200 and pad[8, 8, 2] > 200  # green bars above, blue in the middle


def test_oversized_files_are_refused_unread(tmp_path, labelled_folder, monkeypatch):
    big = labelled_folder / "red" / "big.png"
    Image.effect_noise((200, 200), 100).convert("RGB").save(big)  # noise: does not compress
    reads = []
    real_cat = type(__import__("fsspec").filesystem("file")).cat_file
    monkeypatch.setattr(
        type(__import__("fsspec").filesystem("file")),
        "cat_file",
        lambda self, path, *a, **k: reads.append(path) or real_cat(self, path, *a, **k),
    )
    result, _, rejects = run(tmp_path, [labelled_folder], "dataset.max_bytes=50000")
    assert result.counts == {"inputs": 13, "accepted": 12, "rejected": 1}
    assert list(rejects["reason"]) == ["too_large"] and "max_bytes=50000" in rejects["detail"][0]
    assert str(big) not in reads
    again, *_ = run(tmp_path, [labelled_folder], "dataset.max_bytes=50000")
    assert again.reused and again.decoded == 0  # the refused file does not defeat the cache


def test_s3_folder_and_a_manifest_on_s3_listing_s3_images(tmp_path, labelled_folder, s3_options):
    import s3fs

    bucket, options = s3_options
    fs = s3fs.S3FileSystem(**options)
    fs.put(str(labelled_folder), f"{bucket}/images", recursive=True)
    fs.pipe(f"{bucket}/images/red/empty.png", b"")
    listed = pd.DataFrame({"path": ["red/red-0.png", f"s3://{bucket}/images/blue/blue-2.png",
                                    "../escape.png"], "style": ["a", "b", "c"]})  # fmt: skip
    fs.pipe(f"{bucket}/images/list.csv", listed.to_csv(index=False).encode())

    secret = options["secret"]
    creds = [f"dataset.storage_options={{endpoint_url: {options['endpoint_url']}, "
             f"key: {options['key']}, secret: {secret}, "
             "client_kwargs: {region_name: us-east-1}}"]  # fmt: skip
    result, manifest, rejects = run(tmp_path, [f"s3://{bucket}/images"], *creds)
    assert result.counts == {"inputs": 14, "accepted": 12, "rejected": 2}
    assert manifest["source"].str.startswith(f"s3://{bucket}/images/").all()
    assert sorted(manifest["label"].unique()) == ["blue", "red"]
    assert sorted(rejects["reason"]) == ["empty", "not_image"]  # empty.png and list.csv

    again, *_ = run(tmp_path, [f"s3://{bucket}/images"], *creds)
    assert again.reused and again.decoded == 0  # ETags recognised

    result, manifest, rejects = run(
        tmp_path, [f"s3://{bucket}/images/list.csv"], "dataset.labels=column:style", *creds
    )
    assert sorted(manifest["label"]) == ["a", "b"] and list(rejects["reason"]) == ["outside_root"]

    # The credentials are nowhere in what ingestion wrote.
    written = [p for p in (tmp_path / "store").rglob("*") if p.is_file()]
    assert written and all(secret.encode() not in p.read_bytes() for p in written)
