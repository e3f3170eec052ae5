"""Controllable, chunked, resumable generation: what a user asks for is what lands in the store,
byte for byte the same however the work is split or resumed."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from ganpipe.config import load_config
from ganpipe.data.dataset import load_dataset, to_pixels
from ganpipe.domain.model_pointers import ModelRef
from ganpipe.domain.style_table import StyleTable, load_styles
from ganpipe.errors import ConfigError, StoreError
from ganpipe.generation.render import RENDER_ROWS, latent
from ganpipe.generation.request import BatchRequest
from ganpipe.registry import load_registry
from ganpipe.stages.generate import assemble_batch, generate, generate_chunk, plan_batch
from ganpipe.store import RunStore, layout
from tests.conftest import RANDOM_MODELS, random_models, tiny_overrides

NUM_STYLES = 6


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """The demo dataset and its styles at 16 px, with untrained generators (``random_models``):
    generation does not care about training."""
    return random_models(tmp_path_factory.mktemp("generate") / "store")


def cfg_for(root, *extra):
    return load_config(None, tiny_overrides(root) + list(extra))


def model(root, name: str) -> ModelRef:
    return ModelRef(RunStore(str(root)), layout.model_dir("demo", RANDOM_MODELS[name]))


def files(store: RunStore, folder: str) -> dict[str, bytes]:
    manifest = store.read_parquet(f"{folder}/manifest.parquet")
    return {p: store.read_bytes(f"{folder}/{p}") for p in manifest["path"]}


def pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB")).astype(int)


def direct(ref: ModelRef, seeds: list[int], style: int) -> np.ndarray:
    """What the generator's own forward() gives, outside ganpipe's generation path, on a pass
    of the shape and memory layout generation uses (CPU kernels round differently for others)."""
    from ganpipe.store.checkpoints import load_network

    generator, _ = load_network(ref.store, ref.folder, "generator", load_registry(load_config()))
    generator = generator.to(memory_format=torch.channels_last)
    padded = seeds + [seeds[-1]] * (RENDER_ROWS - len(seeds))
    z = torch.stack([latent(s, generator.z_dim) for s in padded])
    with torch.inference_mode():
        images = generator(z, torch.full((len(padded),), style))
    return to_pixels(images)[: len(seeds)].astype(int)


# Requests ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["dcgan", "stylegan"])
def test_same_request_same_bytes_whatever_the_batch_and_chunk_size(root, tmp_path, name):
    cfg = cfg_for(root, "generate.per_style=5", "generate.truncation=0.7")
    first = generate(
        cfg, RunStore(str(root)), model=model(root, name), out=RunStore(str(tmp_path / "a"))
    )
    other = cfg_for(root, "generate.per_style=5", "generate.truncation=0.7",
                    "generate.batch_size=3", "generate.chunk_size=7", "generate.workers=1",
                    "generate.threads=2")  # fmt: skip
    second = generate(
        other, RunStore(str(root)), model=model(root, name), out=RunStore(str(tmp_path / "b"))
    )
    assert first.batch_id == second.batch_id and second.chunks == 5
    folder = layout.batch_dir(first.batch_id)
    a, b = (
        files(RunStore(str(tmp_path / "a")), folder),
        files(RunStore(str(tmp_path / "b")), folder),
    )
    assert len(a) == 30 and a == b
    assert len(set(a.values())) == 30  # every style and seed is its own image


def test_counts_per_style_explicit_seeds_and_styles_by_index(root, tmp_path):
    out = RunStore(str(tmp_path))
    cfg = cfg_for(root, "generate.styles=[style-1, 3, 4]", "generate.per_style=2",
                  "generate.counts={style-1: 4, 4: 0}", "generate.seed=10")  # fmt: skip
    result = generate(cfg, RunStore(str(root)), out=out)
    manifest = out.read_parquet(f"batches/{result.batch_id}/manifest.parquet")
    assert manifest.groupby("style").size().to_dict() == {"style-1": 4, "style-3": 2}
    assert list(manifest["seed"][manifest["style"] == "style-3"]) == [10, 11]
    assert list(manifest.columns) == ["path", "style", "seed", "model", "kept", "reject_reason"]
    request = out.read_json(f"batches/{result.batch_id}/request.json")
    assert request["styles"] == ["style-1", "style-3"] and request["model"].endswith("v-dcgan-2")

    seeded = generate(cfg_for(root, "generate.seeds=[42, 7]"), RunStore(str(root)), out=out)
    manifest = out.read_parquet(f"batches/{seeded.batch_id}/manifest.parquet")
    assert len(manifest) == 2 * NUM_STYLES and set(manifest["seed"]) == {42, 7}
    assert "images/style-5/00000042.png" in set(manifest["path"])
    # Seed 42 of style-2 is the same image whichever request it belongs to.
    plain = generate(cfg_for(root, "generate.seed=42", "generate.per_style=1"),
                     RunStore(str(root)), out=out)  # fmt: skip
    path = "images/style-2/00000042.png"
    assert out.read_bytes(f"batches/{plain.batch_id}/{path}") == out.read_bytes(
        f"batches/{seeded.batch_id}/{path}"
    )


def test_request_errors_name_the_key(root):
    store = RunStore(str(root))
    with pytest.raises(ConfigError, match="unknown style 'nope'.*Where: generate.counts"):
        generate(cfg_for(root, "generate.counts={nope: 3}"), store)
    with pytest.raises(ConfigError, match="counts and generate.seeds are both set"):
        generate(cfg_for(root, "generate.counts={0: 3}", "generate.seeds=[1]"), store)
    with pytest.raises(ConfigError, match="asks for no images"):
        generate(cfg_for(root, "generate.styles=[0]", "generate.counts={0: 0}"), store)
    with pytest.raises(ConfigError, match="generate.seeds"):
        cfg_for(root, "generate.seeds=[3, 3]")
    with pytest.raises(ConfigError, match="nothing to move between"):
        generate(cfg_for(root, "generate.interpolate={seeds: [4]}"), store)


# Batch ids of requests made before the request was typed: folders in stores carry them.
PINNED_IDS = {
    "plain": ([], "demo-v-abc-b4c71580"),
    "counts": (["generate.styles=[style-1, 3, 4]", "generate.per_style=2",
                "generate.counts={style-1: 4, 4: 0}", "generate.seed=10"], "demo-v-abc-8a50445d"),
    "seeds, truncation, webp": (["generate.seeds=[5, 9]", "generate.truncation=0.7",
                                 "generate.format=webp", "generate.quality=80"],
                                "demo-v-abc-b6714a28"),
    "png level": (["generate.png_level=9"], "demo-v-abc-2c5d0abd"),
    "mixing style": (["generate.mixing={style: 2, crossover: 1}"], "demo-v-abc-0d8ba70e"),
    "mixing seed": (["generate.mixing={seed: 9}"], "demo-v-abc-bce56d92"),
    "between styles": (["generate.interpolate={styles: [style-0, 3], frames: 5}",
                        "generate.seed=6"], "demo-v-abc-d5a8b668"),
    "between seeds": (["generate.interpolate={seeds: [3, 8], frames: 4}", "generate.styles=[1]"],
                      "demo-v-abc-0ba87ad2"),
    "reference": (["generate.reference=[REF]", "generate.reference_temperature=0.5"],
                  "demo-v-abc-1c1e64b0"),
}  # fmt: skip


def six_styles() -> StyleTable:
    names = [f"style-{i}" for i in range(6)]
    return StyleTable(names, [1] * 6, torch.zeros(6, 2), [[]] * 6, "texture", {})


@pytest.mark.parametrize("case", list(PINNED_IDS))
def test_batch_request_identity_keeps_the_batch_ids_it_always_had(tmp_path, case):
    ref = tmp_path / "ref.bin"
    ref.write_bytes(b"reference bytes")  # only its hash enters the request
    sets, expected = PINNED_IDS[case]
    g = load_config(None, [s.replace("REF", str(ref)) for s in sets]).generate
    request = BatchRequest.from_config(g, six_styles())
    assert request.batch_id({"model": "demo", "version": "v-abc"}) == expected
    # request.json reads back as the same request, whatever else it describes for readers
    written = json.loads(json.dumps(request.to_json("s3://b/models/demo/v-abc", {"style-0": 1.0})))
    assert BatchRequest.from_json(written) == request
    assert BatchRequest.from_json(request.to_json()) == request
    assert written["model"] == "s3://b/models/demo/v-abc" and "model" not in request.identity()


def test_batch_request_styles_from_the_command_line_keep_their_ids():
    g = load_config().generate
    request = BatchRequest.from_config(g, six_styles(), ["4", "style-2"])
    assert request.styles == ("style-4", "style-2")
    assert request.batch_id({"model": "demo", "version": "v-abc"}) == "demo-v-abc-dab1b07a"
    with pytest.raises(ConfigError, match="unknown style 'nope'.*Where: --style"):
        BatchRequest.from_config(g, six_styles(), ["nope"])


# Resuming ------------------------------------------------------------------------------------


def test_a_rerun_writes_only_what_is_missing(root, tmp_path):
    cfg = cfg_for(root, "generate.chunk_size=4")  # 24 images, 6 chunks
    store, out = RunStore(str(root)), RunStore(str(tmp_path))
    threads = torch.get_num_threads()
    first = generate(cfg, store, out=out)
    assert torch.get_num_threads() == threads  # rendering's thread count is given back
    folder = layout.batch_dir(first.batch_id)
    before = files(out, folder)
    assert first.written == 24 and first.chunks == 6
    assert len(out.listdir(folder, "chunks")) == 6

    paths = sorted(before)
    for p in (paths[1], paths[9], paths[10]):  # in two chunks
        out.remove(f"{folder}/{p}")
    out.remove(f"{folder}/chunks/00000016-00000020.parquet")
    again = generate(cfg, store, out=out)
    assert again.written == 3 and files(out, folder) == before
    assert out.exists(f"{folder}/chunks/00000016-00000020.parquet")
    assert generate(cfg, store, out=out).written == 0


class FailingStore(RunStore):
    """A store whose connection drops after a number of image writes."""

    def __init__(self, root: str, allowed: int):
        super().__init__(root)
        self.allowed = allowed

    def write_bytes(self, rel, data):
        if "/images/" in rel:
            if self.allowed <= 0:
                raise OSError("connection reset")
            self.allowed -= 1
        return super().write_bytes(rel, data)


def test_an_interrupted_batch_resumes_with_identical_bytes(root, tmp_path):
    cfg = cfg_for(root, "generate.chunk_size=5", "generate.batch_size=2", "generate.workers=1")
    store = RunStore(str(root))
    whole = generate(cfg, store, out=RunStore(str(tmp_path / "whole")))
    expected = files(RunStore(str(tmp_path / "whole")), layout.batch_dir(whole.batch_id))

    with pytest.raises(OSError, match="connection reset"):
        generate(cfg, store, out=FailingStore(str(tmp_path / "cut"), allowed=13))
    cut = RunStore(str(tmp_path / "cut"))
    folder = layout.batch_dir(whole.batch_id)
    assert not cut.exists(f"{folder}/manifest.parquet")
    # Chunks 0 and 1 were written in full (their manifests may follow), chunk 2 was not.
    assert set(cut.listdir(folder, "chunks")) <= {"00000000-00000005.parquet",
                                                  "00000005-00000010.parquet"}  # fmt: skip
    resumed = generate(cfg, store, out=cut)
    assert resumed.written == 24 - 13
    assert files(cut, folder) == expected


def test_chunks_one_at_a_time_as_tasks_would(root, tmp_path):
    cfg = cfg_for(root, "generate.chunk_size=10")
    store, out = RunStore(str(root)), RunStore(str(tmp_path))
    plan = plan_batch(cfg, store)
    assert plan.num_chunks == 3
    with pytest.raises(StoreError, match="chunk 0 .* has not been generated"):
        assemble_batch(cfg, store, out=out)
    results = [generate_chunk(cfg, store, i, out=out) for i in (2, 0, 1)]
    assert [r.count for r in results] == [4, 10, 10] and sum(r.written for r in results) == 24
    assert generate_chunk(cfg, store, 1, out=out).skipped
    with pytest.raises(ConfigError, match="chunk 3 does not exist"):
        generate_chunk(cfg, store, 3, out=out)
    result = assemble_batch(cfg, store, out=out, written=24)
    single = generate(cfg, store, out=RunStore(str(tmp_path / "single")))
    assert result.batch_id == single.batch_id and result.count == 24
    folder = layout.batch_dir(result.batch_id)
    assert files(out, folder) == files(RunStore(str(tmp_path / "single")), folder)
    assert out.read_parquet(f"{folder}/manifest.parquet").equals(
        RunStore(str(tmp_path / "single")).read_parquet(f"{folder}/manifest.parquet")
    )


def test_a_batch_can_be_written_to_an_s3_store(root, s3_options):
    bucket, options = s3_options
    cfg = cfg_for(root, "generate.chunk_size=8", "generate.per_style=2")
    out = RunStore(f"s3://{bucket}/gen", options)
    result = generate(cfg, RunStore(str(root)), out=out)
    assert result.uri.startswith("s3://") and result.written == 12
    manifest = out.read_parquet(f"batches/{result.batch_id}/manifest.parquet")
    assert len(manifest) == 12 and out.exists(f"batches/{result.batch_id}/{manifest.path[0]}")
    assert generate(cfg, RunStore(str(root)), out=out).written == 0


# Controls ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["dcgan", "stylegan"])
def test_truncation_pulls_samples_to_their_style_mean(root, tmp_path, name):
    store, out, ref = RunStore(str(root)), RunStore(str(tmp_path)), model(root, name)

    def images(psi: float) -> np.ndarray:
        cfg = cfg_for(root, f"generate.truncation={psi}", "generate.styles=[2]")
        result = generate(cfg, store, model=ref, out=out)
        return np.stack([pixels(b) for b in files(out, f"batches/{result.batch_id}").values()])

    untruncated, half, mean = images(1.0), images(0.5), images(0.0)
    assert np.array_equal(untruncated, direct(ref, [0, 1, 2, 3], style=2))  # psi 1: exactly
    assert all(np.array_equal(mean[0], m) for m in mean)  # psi 0: the style's one mean image
    spread = lambda x: np.abs(x - x.mean(0)).mean()  # noqa: E731
    assert spread(untruncated) > spread(half) > spread(mean) == 0


def test_interpolation_between_styles_writes_frames_strip_and_gif(root, tmp_path):
    out = RunStore(str(tmp_path))
    cfg = cfg_for(root, "generate.interpolate={styles: [style-0, 3], frames: 5}", "generate.seed=6")
    result = generate(cfg, RunStore(str(root)), out=out)
    folder = layout.batch_dir(result.batch_id)
    frames = [pixels(b) for b in files(out, folder).values()]
    assert len(frames) == 5
    assert np.array_equal(frames[0], direct(model(root, "dcgan"), [6], style=0)[0])
    assert np.array_equal(frames[-1], direct(model(root, "dcgan"), [6], style=3)[0])
    steps = [np.abs(frames[i + 1] - frames[i]).mean() for i in range(4)]
    assert all(0 < s < np.abs(frames[-1] - frames[0]).mean() for s in steps)
    manifest = out.read_parquet(f"{folder}/manifest.parquet")
    assert list(manifest["style"]) == ["style-0"] * 2 + ["style-3"] * 3
    with Image.open(io.BytesIO(out.read_bytes(f"{folder}/animation.gif"))) as gif:
        assert gif.n_frames == 5 and gif.size == (128, 128)
    with Image.open(io.BytesIO(out.read_bytes(f"{folder}/strip.png"))) as strip:
        assert strip.size == (5 * (128 + 2 * 8) + 2 * 8, 128 + 4 * 8)
    assert result.animation.endswith("animation.gif") and result.strip.endswith("strip.png")


def test_interpolation_between_seeds_slerps_the_latent(root, tmp_path):
    out, ref = RunStore(str(tmp_path)), model(root, "stylegan")
    cfg = cfg_for(root, "generate.interpolate={seeds: [3, 8], frames: 4}", "generate.styles=[1]")
    result = generate(cfg, RunStore(str(root)), model=ref, out=out)
    frames = [pixels(b) for b in files(out, layout.batch_dir(result.batch_id)).values()]
    ends = direct(ref, [3, 8], style=1)
    assert np.array_equal(frames[0], ends[0]) and np.array_equal(frames[-1], ends[1])
    assert not any(np.array_equal(frames[i], frames[i + 1]) for i in range(3))


def test_style_mixing_takes_fine_levels_from_another_style_or_seed(root, tmp_path):
    out, store, ref = RunStore(str(tmp_path)), RunStore(str(root)), model(root, "stylegan")

    def images(*extra) -> np.ndarray:
        cfg = cfg_for(root, "generate.styles=[4]", "generate.per_style=2", *extra)
        result = generate(cfg, store, model=ref, out=out)
        return np.stack([pixels(b) for b in files(out, f"batches/{result.batch_id}").values()])

    own = direct(ref, [0, 1], style=4)
    # Crossover past the last level: nothing is mixed in; at 0: everything comes from seed 9.
    assert np.array_equal(images("generate.mixing={seed: 9, crossover: 3}"), own)
    assert np.array_equal(images("generate.mixing={seed: 9, crossover: 0}")[1],
                          direct(ref, [9], style=4)[0])  # fmt: skip
    mixed = images("generate.mixing={seed: 9, crossover: 1}")
    assert not np.array_equal(mixed, own)
    other_style = images("generate.mixing={style: style-0, crossover: 2}")
    assert not np.array_equal(other_style, own) and not np.array_equal(other_style, mixed)

    dcgan = cfg_for(root, "generate.mixing={seed: 9}")
    with pytest.raises(ConfigError, match="'dcgan' does not support style mixing.*generate.mixing"):
        generate(dcgan, store, model=model(root, "dcgan"), out=out)
    with pytest.raises(ConfigError, match="crossover=7 is beyond the 3 levels"):
        generate(cfg_for(root, "generate.mixing={seed: 1, crossover: 7}"), store, model=ref)


def exemplar_png(root, style: str) -> bytes:
    store = RunStore(str(root))
    dataset = load_dataset(store, "demo")
    table, _ = load_styles(store, dataset.fingerprint, "texture")
    rows = dataset.rows_for(table.exemplars[table.names.index(style)][:1])
    buf = io.BytesIO()
    Image.fromarray(dataset.load_pixels(rows)[0]).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("name", ["dcgan", "embedding"])
def test_reference_image_steers_the_style(root, tmp_path, name):
    ref_file = tmp_path / "reference.png"
    ref_file.write_bytes(exemplar_png(root, "style-4"))
    out, store, ref = RunStore(str(tmp_path / "out")), RunStore(str(root)), model(root, name)

    def batch(temperature: float):
        cfg = cfg_for(root, f"generate.reference=[{ref_file}]", "generate.per_style=3",
                      f"generate.reference_temperature={temperature}")  # fmt: skip
        result = generate(cfg, store, model=ref, out=out)
        folder = layout.batch_dir(result.batch_id)
        return out.read_parquet(f"{folder}/manifest.parquet"), out, folder

    manifest, out, folder = batch(0.01)
    assert set(manifest["style"]) == {"style-4"} and len(manifest) == 3
    assert manifest["path"][0] == "images/reference/00000000.png"
    weights = out.read_json(f"{folder}/request.json")["reference_weights"]
    assert max(weights, key=weights.get) == "style-4" and weights["style-4"] > 0.99
    sharp = np.stack([pixels(b) for b in files(out, folder).values()])
    plain = direct(ref, [0, 1, 2], style=4)
    if name == "dcgan":  # conditioning: (almost) exactly style-4's
        assert np.abs(sharp - plain).max() <= 1
    else:  # the reference's embedding enters the conditioning too
        assert np.abs(sharp - plain).mean() > 0.2
    _, _, blended_folder = batch(100.0)
    blended = np.stack([pixels(b) for b in files(out, blended_folder).values()])
    assert np.abs(blended - plain).mean() > np.abs(sharp - plain).mean() + 1

    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(ConfigError, match="reference image .*bad.png cannot be used"):
        generate(cfg_for(root, f"generate.reference=[{bad}]"), store, model=ref, out=out)
    with pytest.raises(ConfigError, match="reference image .* does not exist"):
        generate(cfg_for(root, f"generate.reference=[{tmp_path / 'gone.png'}]"), store)


def test_old_checkpoints_load_and_forward_is_unchanged(root):
    """The conditioning API added methods, not weights or arithmetic."""
    from ganpipe.store.checkpoints import load_network

    registry = load_registry(load_config())
    for name in ("dcgan", "stylegan"):
        generator, _ = load_network(RunStore(str(root)), model(root, name).folder, "generator",
                                    registry)  # fmt: skip
        z, s = torch.randn(4, generator.z_dim), torch.tensor([0, 1, 2, 5])
        with torch.inference_mode():
            cond = generator.condition(s)
            assert torch.equal(generator(z, s), generator.render(z, cond))
            one_hot = torch.nn.functional.one_hot(s, NUM_STYLES).float()
            assert torch.equal(generator.condition(one_hot), cond)


# Command line --------------------------------------------------------------------------------


def test_cli_interpolation_truncation_and_seeds(root, tmp_path):
    from ganpipe.cli import app

    runner = CliRunner()
    sets = [a for kv in tiny_overrides(root) for a in ("--set", kv)]
    done = runner.invoke(app, ["generate", "--between-styles", "style-1", "style-2",
                               "--between-seeds", "0", "5", "--frames", "3",
                               "--out", str(tmp_path), *sets])  # fmt: skip
    assert done.exit_code == 0, done.output
    record = json.loads(done.stdout[done.stdout.index("{") :])
    assert record["count"] == 3 and record["animation"].endswith("animation.gif")
    done = runner.invoke(app, ["generate", "--seeds", "5,9", "--truncation", "0.7", "--style", "1",
                               "--out", str(tmp_path), *sets])  # fmt: skip
    assert done.exit_code == 0, done.output
    assert sorted(p.name for p in (tmp_path / "batches").rglob("style-1/*.png")) == [
        "00000005.png", "00000009.png"]  # fmt: skip
    done = runner.invoke(app, ["generate", "--mix-seed", "3", *sets])
    assert done.exit_code == 1 and "does not support style mixing" in done.output
    # A bad value is reported under its option, with how to fix it.
    done = runner.invoke(app, ["generate", "--seeds", "3,3", *sets])
    assert done.exit_code == 1 and "--seeds 3,3: give distinct seeds" in done.output
    assert "Where: --seeds" in done.output and "Fix: give distinct whole numbers" in done.output
    done = runner.invoke(app, ["generate", "--between-styles", "style-1", "nope", *sets])
    assert done.exit_code == 1 and "Where: --between-styles" in done.output


def test_each_mode_makes_jobs_that_name_where_their_latent_and_style_come_from(tmp_path):
    """One class per mode, each with its own jobs; a job says where each end comes from
    (``LatentFrom`` / ``StyleFrom``) instead of sentinel style indices."""
    import numpy as np

    from ganpipe.domain.latent_codes import ProjectedCode
    from ganpipe.generation.plan import LatentFrom, StyleCode, StyleFrom, jobs_for
    from ganpipe.generation.request import (
        Around,
        FromReference,
        Interpolation,
        RequestInputs,
        Samples,
    )

    table = six_styles()
    code = ProjectedCode("z", np.full(6, 1 / 6, np.float32), "demo/v-abc", z=np.zeros(8),
                         info={"nearest_index": 2})  # fmt: skip
    around = tmp_path / "code.npz"
    around.write_bytes(code.to_bytes())
    cases = {
        "samples": (["generate.per_style=2", "generate.styles=[1, 4]"], Samples),
        "reference": (["generate.reference=[REF]"], FromReference),
        "interpolation": (["generate.interpolate={styles: [0, 5], frames: 3}"], Interpolation),
        "around": ([f"generate.around={around}", "generate.spread=0.4"], Around),
        "around frames": ([f"generate.around={around}",
                           "generate.interpolate={styles: [5], seeds: [7], frames: 3}"], Around),
    }  # fmt: skip
    (tmp_path / "ref.bin").write_bytes(b"reference bytes")
    seen = {}
    for case, (sets, mode) in cases.items():
        g = load_config(None, [s.replace("REF", str(tmp_path / "ref.bin")) for s in sets]).generate
        request = BatchRequest.from_config(g, table, inputs=RequestInputs.read(g))
        assert isinstance(request.mode, mode), case
        assert BatchRequest.from_json(request.to_json()) == request, case
        ref = StyleCode([1 / 6] * 6, [0.0], "style-3") if mode is FromReference else None
        seen[case] = jobs_for(request, table, ref)
    samples = seen["samples"]
    assert [(j.style, j.seed, j.style_from.index) for j in samples] == [
        ("style-1", 0, 1), ("style-1", 1, 1), ("style-4", 0, 4), ("style-4", 1, 4)]  # fmt: skip
    assert all(j.latent_from.source is LatentFrom.SEED and j.one_style is not None
               for j in samples)  # fmt: skip
    assert {j.style_from.source for j in seen["reference"]} == {StyleFrom.REFERENCE}
    assert {j.style for j in seen["reference"]} == {"style-3"}  # the nearest style names them
    frames = seen["interpolation"]
    assert [j.t for j in frames] == [0.0, 0.5, 1.0]
    assert (frames[0].style_from.index, frames[0].style_to.index) == (0, 5)
    assert all(j.one_style is None for j in frames)  # a blend of two styles
    variations = seen["around"]
    assert all(j.latent_from.source is LatentFrom.PROJECTED and j.t == 0.4 for j in variations)
    assert {j.style for j in variations} == {"style-2"}  # the code's nearest style
    to_style = seen["around frames"]
    assert to_style[-1].style_to.index == 5 and to_style[-1].latent_to.seed == 7
    assert to_style[0].style_from.source is StyleFrom.PROJECTED
    # a request built without inputs reads the files itself, to the same request
    g = load_config(None, cases["around"][0]).generate
    assert BatchRequest.from_config(g, table) == BatchRequest.from_config(
        g, table, inputs=RequestInputs.read(g)
    )
