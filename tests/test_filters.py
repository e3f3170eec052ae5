"""Quality filters on a real context: a tiny demo dataset, its styles and a tiny trained model.

Real pictures stand in for candidates where the right verdict is known: new demo drawings (real
images the model never saw) must pass, and blurred ones, copies inside a batch and copies of
training images must not."""

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from ganpipe import hookimpl
from ganpipe.builtin.filters import (
    MIN_PER_STYLE,
    MIN_REFERENCE,
    Memorisation,
    NearDuplicate,
    Realism,
    Sharpness,
    batch_limits,
)
from ganpipe.config import DEFAULT_FILTERS, load_config
from ganpipe.data.dataset import Dataset, load_dataset, to_tensor
from ganpipe.data.decode import fit_square
from ganpipe.data.demo import STYLES, render
from ganpipe.data.images import encode
from ganpipe.domain.model_pointers import ModelRef, current_model
from ganpipe.domain.style_table import load_styles
from ganpipe.errors import ConfigError, PluginError
from ganpipe.registry import load_registry
from ganpipe.stages.filter import build_context, filter_batch, load_batch_images, open_batch
from ganpipe.stages.generate import generate, planned_batch
from ganpipe.stages.report import report
from ganpipe.store import RunStore
from tests.conftest import tiny_overrides

SIZE = 16  # the tiny config's image size


def cfg_for(root, *extra):
    return load_config(None, tiny_overrides(root) + list(extra))


class Data:
    """The tiny store's dataset, styles and model, and new drawings of each demo style."""

    def __init__(self, root):
        self.cfg = cfg_for(root)
        self.store = RunStore.from_config(self.cfg)
        self.registry = load_registry(self.cfg)
        self.model = current_model(self.cfg, self.store)
        self.dataset = load_dataset(self.store, "demo")
        self.table, assignments = load_styles(self.store, self.dataset.fingerprint, "texture")
        manifest = self.dataset.manifest
        self.style_of_row = manifest["id"].map(dict(zip(assignments["id"], assignments["style"])))
        labels = manifest["label"].astype(str)
        # The discovered style (cluster) that holds most images of each drawn demo style.
        self.style_of_label = {
            label: self.style_of_row[labels == label].mode()[0] for label in STYLES
        }

    def fresh(self, per_style: int, start: int = 1000) -> tuple[np.ndarray, list[str]]:
        """New drawings (indices the dataset does not hold), prepared as ingestion does."""
        pixels, styles = [], []
        for label in STYLES:
            for i in range(start, start + per_style):
                img = fit_square(render(label, i), SIZE, "center_crop", (255, 255, 255))
                pixels.append(np.asarray(img))
                styles.append(self.style_of_label[label])
        return np.stack(pixels), styles

    def context(self, pixels: np.ndarray, styles: list[str]):
        index = torch.tensor([self.table.index(s) for s in styles])
        return build_context(self.cfg, self.store, self.registry, self.model, to_tensor(pixels),
                             index)  # fmt: skip

    def training_images(self, style: str) -> np.ndarray:
        manifest = self.dataset.manifest
        rows = manifest[(manifest["split"] == "train") & (self.style_of_row == style)]
        return self.dataset.load_pixels(rows)


@pytest.fixture(scope="module")
def data(tiny_model):
    return Data(tiny_model)


def noisy(pixels: np.ndarray, seed: int = 0) -> np.ndarray:
    """A lightly changed copy: every value moved by up to +-2/255."""
    rng = np.random.default_rng(seed)
    return np.clip(pixels.astype(int) + rng.integers(-2, 3, pixels.shape), 0, 255).astype(np.uint8)


def blurred(pixels: np.ndarray, radius: float = 1.5) -> np.ndarray:
    return np.stack(
        [np.asarray(Image.fromarray(p).filter(ImageFilter.GaussianBlur(radius))) for p in pixels]
    )


# The filters on their own ------------------------------------------------------------------


def test_new_real_images_pass_each_new_filter(data):
    pixels, styles = data.fresh(per_style=8)
    context = data.context(pixels, styles)
    for qf in (Sharpness(), NearDuplicate(), Memorisation()):
        scores, passed = qf.score(context)
        assert scores.shape == passed.shape == (len(pixels),)
        assert np.isfinite(scores).all()
        assert passed.mean() >= 0.9, (type(qf).__name__, passed.mean())


def test_training_images_are_sharp_and_distinct_but_memorised(data):
    manifest = data.dataset.manifest
    context = data.context(data.dataset.load_pixels(), list(data.style_of_row))
    for qf in (Sharpness(), NearDuplicate()):
        assert qf.score(context)[1].mean() >= 0.9, type(qf).__name__
    scores, passed = Memorisation().score(context)
    train = (manifest["split"] == "train").to_numpy()
    assert not passed[train].any() and np.allclose(scores[train], 0, atol=1e-3)
    assert passed[~train].all()  # the held-out images are new pictures


def test_blurred_images_fail_sharpness(data):
    pixels, styles = data.fresh(per_style=4)
    scores, passed = Sharpness().score(data.context(pixels, styles))
    blur_scores, blur_passed = Sharpness().score(data.context(blurred(pixels), styles))
    assert passed.mean() >= 0.9
    assert not blur_passed.any()
    assert (blur_scores < scores).all()


def test_copies_inside_a_batch_keep_the_first(data):
    pixels, styles = data.fresh(per_style=4)
    # Row 0 again at rows 2 and 9 (another style asked for), a lightly changed copy at row 5.
    pixels[2], pixels[9], pixels[5] = pixels[0], pixels[0], noisy(pixels[0])
    scores, passed = NearDuplicate().score(data.context(pixels, styles))
    assert passed[0] and not passed[[2, 5, 9]].any()
    assert passed[np.setdiff1d(np.arange(len(pixels)), [2, 5, 9])].all()
    assert scores[[2, 9]].max() < 1e-3 <= scores[0]


def test_copies_of_training_images_are_memorised(data, monkeypatch):
    # Two real images per style in the context's sample: the filter must still search every
    # training image, so copy one that is not in the sample.
    monkeypatch.setattr("ganpipe.contracts.contexts.REAL_PER_STYLE", 2)
    pixels, styles = data.fresh(per_style=2)
    sample = data.context(pixels, styles).real_images
    assert len(sample) == 12
    exact = next(
        px
        for px in data.training_images(styles[0])
        if not (sample == to_tensor(px[None])).flatten(1).all(dim=1).any()
    )
    pixels[0], pixels[-1] = exact, noisy(data.training_images(styles[-1])[1])
    context = data.context(pixels, styles)
    scores, passed = Memorisation().score(context)
    assert not passed[0] and not passed[-1]
    assert passed[1:-1].all()
    assert scores[0] < 1e-3 and scores[-1] < 0.02 < scores[1:-1].min()


def test_thresholds_from_options_are_honoured(data):
    pixels, styles = data.fresh(per_style=2)
    pixels[0] = data.training_images(styles[0])[0]
    context = data.context(pixels, styles)
    assert Sharpness(threshold=-1.0).score(context)[1].all()
    assert not Sharpness(threshold=1e9).score(context)[1].any()
    assert Memorisation().score(context)[1].tolist() == [False] + [True] * 11
    assert Memorisation(threshold=0.0).score(context)[1].all()  # taken as given, even 0
    assert not Memorisation(threshold=10.0).score(context)[1].any()  # RMS distances are < 2
    # Every embedding within 10 of every other: only the very first candidate is kept.
    assert NearDuplicate(threshold=10.0).score(context)[1].tolist() == [True] + [False] * 11
    # A looser quantile rejects more real images than the default one does.
    default = Sharpness().score(context)[1].sum()
    assert Sharpness(quantile=0.9).score(context)[1].sum() < default


# Realism: calibrated on images the discriminator never trained on ----------------------------


class Memoriser(torch.nn.Module):
    """A discriminator overfit as one is at the end of training: its own training images score
    10 and more, any other picture about its mean grey level in [-1, 1] (dark drawings low,
    light ones high, as a style-blind stand-in for a real logit)."""

    def __init__(self, memorised: torch.Tensor):
        super().__init__()
        self.memorised = memorised.flatten(1)

    def forward(self, images, styles):
        seen = torch.cdist(images.flatten(1), self.memorised).min(dim=1).values < 1e-3
        grey = images.mean(dim=(1, 2, 3))
        return torch.where(seen, 10.0 + grey, grey)


def memorising(data, context, train_rows, hold_out_the_rest: bool = True):
    """``context`` with a ``Memoriser`` of ``train_rows`` as discriminator and (unless told
    not to) the dataset's other images as its held-out (val) split."""
    manifest, dataset = data.dataset.manifest, data.dataset
    if hold_out_the_rest:
        split = manifest["split"].where(manifest.index.isin(train_rows), "val")
        dataset = Dataset(data.store, "demo", dataset.fingerprint, manifest.assign(split=split))
    memoriser = Memoriser(to_tensor(data.dataset.load_pixels(manifest.loc[train_rows])))
    return dataclasses.replace(context, dataset=dataset, discriminator=memoriser), memoriser


def test_realism_passes_new_real_images_that_an_overfit_discriminator_scores_low(data):
    # The discriminator trained on 3 images of each style; the other 54 are held out, 8 to 10
    # of each style, so every style gets its own limit. They are the candidates too.
    manifest = data.dataset.manifest
    train_rows = manifest.groupby(data.style_of_row).head(3).index
    val = manifest.drop(index=train_rows)
    assert len(val) >= MIN_REFERENCE
    assert data.style_of_row[val.index].value_counts().min() >= MIN_PER_STYLE
    context = data.context(data.dataset.load_pixels(val), list(data.style_of_row[val.index]))
    context, memoriser = memorising(data, context, train_rows)
    assert len(context.held_out_images()) == 54

    realism = Realism()
    scores, passed = realism.score(context)
    assert realism.calibration.startswith("limit at the 0.02 quantile of 54 held-out")
    assert realism.calibration.endswith("per style for 6 of 6 styles")
    # Real pictures the discriminator never saw all pass: the lower 2% quantile of 8 to 10
    # images is the lowest of them, so each style's darkest picture is its limit.
    assert passed.all() and scores.max() < 1
    # A limit from the images it trained on (all above 10) would have rejected every one.
    trained_on = memoriser(memoriser.memorised.view(-1, 3, SIZE, SIZE), None)
    assert torch.quantile(trained_on, 0.02) > 9 > scores.max()

    # Per style: the darkest style's pictures, asked for as the lightest style, all fail,
    # where one limit over all styles (the 2nd darkest of the 54) would pass most of them.
    means = [scores[(context.styles == s).numpy()].mean() for s in range(context.num_styles)]
    dark, light = int(np.argmin(means)), int(np.argmax(means))
    darks = (context.styles == dark).numpy()
    assert (scores[darks] >= np.quantile(scores, 0.02, method="lower")).mean() >= 0.8
    asked = torch.where(context.styles == dark, light, context.styles)
    passed = Realism().score(dataclasses.replace(context, styles=asked))[1]
    assert not passed[darks].any() and passed[~darks].all()


def test_realism_without_enough_held_out_images_rejects_the_batch_outliers(data):
    # The tiny dataset holds out 5 images, too few for a limit: each candidate is compared
    # with its style's other candidates. The discriminator trained on every training image.
    manifest = data.dataset.manifest
    assert (manifest["split"] == "val").sum() < MIN_REFERENCE
    pixels, styles = data.fresh(per_style=8)
    pixels[0] = 0  # a black frame, as a dead generator draws
    pixels[9] = fresh_of("dots", 1)[0]  # a dark dots drawing among the light checker ones
    assert styles[9] == data.style_of_label["checker"]
    train_rows = manifest.index[manifest["split"] == "train"]
    context = memorising(data, data.context(pixels, styles), train_rows, False)[0]
    realism = Realism()
    scores, passed = realism.score(context)
    assert realism.calibration.startswith("only 5 held-out (val) images, fewer than 32")
    assert np.flatnonzero(~passed).tolist() == [0, 9]
    # By hand: the black frame's logit is its grey level, -1. The other 7 of its style lie in
    # [0.12, 0.39]; with it, the median of the 8 is 0.1755 and MAD 0.035, so the limit is
    # 0.1755 - 3 * 1.4826 * 0.035 = 0.02.
    assert scores[0] == -1.0
    limits = batch_limits(torch.tensor(scores), context.styles, context.num_styles, 3.0)
    assert limits[0] == pytest.approx(0.02, abs=0.002)
    # mad_k counts robust standard deviations: the dots drawing is 4.1 below its style's median
    # (0.013, spread 1.4826 * 0.0855), the black frame 22.6 below: k = 8 rejects only the frame.
    assert np.flatnonzero(~Realism(mad_k=8).score(context)[1]).tolist() == [0]


def test_batch_limits_by_hand():
    # Style 0: 9 candidates, median 4, MAD 2 (deviations 0 1 1 2 2 3 3 4 14): limit
    # 4 - 3 * 1.4826 * 2 = -4.8956, so -10 fails and 1 passes. Style 1 has 2 candidates, too few
    # for its own limit: the whole batch's is used, median 4 and MAD 3 of all 11: -9.3434.
    scores = torch.tensor([1, 2, 3, 4, 5, 6, 7, 8, -10, 100, 0], dtype=torch.float64)
    styles = torch.tensor([0] * 9 + [1] * 2)
    limits = batch_limits(scores, styles, 2, 3.0)
    assert limits[:9].tolist() == pytest.approx([4 - 3 * 1.4826 * 2] * 9)
    assert limits[9:].tolist() == pytest.approx([4 - 3 * 1.4826 * 3] * 2)
    assert (scores >= limits).tolist() == [True] * 8 + [False, True, True]
    # More than half equal: MAD is 0, the mean absolute deviation (105 / 10) stands in:
    # 0 - 3 * 1.2533 * 10.5 = -39.48, so only -100 fails.
    flat = torch.tensor([0.0] * 8 + [-100.0, 5.0])
    limits = batch_limits(flat, torch.zeros(10, dtype=torch.long), 1, 3.0)
    assert limits[0] == pytest.approx(-3 * 1.2533 * 10.5)
    assert (flat >= limits).tolist() == [True] * 8 + [False, True]


def test_an_explicit_realism_threshold_wins(data):
    manifest = data.dataset.manifest
    pixels, styles = data.fresh(per_style=8)
    pixels[0] = 0
    train_rows = manifest.index[manifest["split"] == "train"]
    few = memorising(data, data.context(pixels, styles), train_rows, False)[0]  # 5 held out
    many = memorising(data, few, manifest.groupby(data.style_of_row).head(3).index)[0]
    for context in (few, many):
        scores = Realism().score(context)[0]
        assert not Realism().score(context)[1][0]  # the black frame, by any derived limit
        realism = Realism(threshold=-1.0)
        assert realism.score(context)[1].all()  # -1 >= -1: even the black frame, as given
        assert realism.calibration == "the threshold given, -1"
        median = float(np.median(scores))
        assert (Realism(threshold=median).score(context)[1] == (scores >= median)).all()
        assert not Realism(threshold=1e9).score(context)[1].any()
    with pytest.raises(ValueError, match="mad_k"):
        Realism(mad_k=-1)


# Through the filter stage ------------------------------------------------------------------


def plant(store, folder, rows, pixels) -> None:
    """Overwrite the images of ``rows`` of a generated batch, as if the model had drawn them."""
    manifest = store.read_parquet(f"{folder}/manifest.parquet")
    for row, px in zip(rows, pixels):
        store.write_bytes(f"{folder}/{manifest.at[row, 'path']}", encode(px, "png"))


def test_the_stage_names_each_planted_copy_and_keeps_every_candidate(data, tiny_model):
    cfg = cfg_for(tiny_model, "generate.seed=500",
                  "filter.filters=[near_duplicate, memorisation, sharpness]")  # fmt: skip
    store, registry = data.store, data.registry
    generate(cfg, store, registry)
    model, folder = planned_batch(cfg, store, registry)
    manifest = store.read_parquet(f"{folder}/manifest.parquet")
    # A new real drawing of the requested style in every slot, then the planted copies.
    label_of = {style: label for label, style in data.style_of_label.items()}
    drawings = {style: iter(fresh_of(label)) for style, label in label_of.items()}
    pixels = np.stack([next(drawings[style]) for style in manifest["style"]])
    pixels[1], pixels[3] = pixels[0], pixels[0]
    pixels[4] = data.training_images(manifest.at[4, "style"])[0]
    pixels[6] = noisy(data.training_images(manifest.at[6, "style"])[1])
    plant(store, folder, range(len(pixels)), pixels)

    result = filter_batch(cfg, store, folder, model, registry)
    manifest = store.read_parquet(f"{folder}/manifest.parquet")
    assert len(manifest) == result.candidates == 24
    for name in ("near_duplicate", "memorisation", "sharpness"):
        assert manifest[name].notna().all()
    reasons = manifest["reject_reason"]
    assert list(reasons[[1, 3]]) == ["near_duplicate"] * 2
    assert list(reasons[[4, 6]]) == ["memorisation"] * 2
    assert reasons.isna().equals(manifest["kept"])
    others = manifest.drop(index=[1, 3, 4, 6])
    assert others["kept"].mean() >= 0.9 and reasons.fillna("kept")[0] != "near_duplicate"
    assert result.rejected_by_reason["near_duplicate"] == 2
    assert result.pass_rates["memorisation"] == round(22 / 24, 4)


def fresh_of(label: str, n: int = 4) -> list[np.ndarray]:  # drawings 2000 and on
    return [
        np.asarray(fit_square(render(label, 2000 + i), SIZE, "center_crop", (255, 255, 255)))
        for i in range(n)
    ]


def test_options_reach_the_filters_and_bad_ones_name_the_key(data, tiny_model):
    cfg = cfg_for(tiny_model, "filter.filters=[sharpness]",
                  "filter.options={sharpness: {threshold: 1.0e9}}")  # fmt: skip
    generate(cfg, data.store, data.registry)
    model, folder = planned_batch(cfg, data.store, data.registry)
    result = filter_batch(cfg, data.store, folder, model, data.registry)
    assert result.kept == 0 and result.rejected_by_reason == {"sharpness": 24}
    bad = cfg_for(tiny_model, "filter.filters=[memorisation]",
                  "filter.options={memorisation: {quantile: 2}}")  # fmt: skip
    with pytest.raises(
        ConfigError, match="memorisation.*quantile must be.*filter.options.memorisation"
    ):
        filter_batch(bad, data.store, folder, model, data.registry)


class Explodes:
    higher_is_better = True

    def score(self, context):
        raise RuntimeError("lost the plot")


@hookimpl
def ganpipe_quality_filters():
    return {"explodes": Explodes}


def test_a_failing_filter_plugin_is_named(data, tiny_model):
    cfg = cfg_for(tiny_model, "filter.filters=[explodes]", "plugins=[tests.test_filters]")
    registry = load_registry(cfg)
    generate(cfg, data.store, registry)
    model, folder = planned_batch(cfg, data.store, registry)
    named = r"'explodes' \(tests.test_filters\) failed: RuntimeError: lost the plot.*Where: "
    with pytest.raises(PluginError, match=named + "ganpipe_quality_filters"):
        filter_batch(cfg, data.store, folder, model, registry)


# Any batch, by its folder ------------------------------------------------------------------


def test_a_batch_made_elsewhere_is_found_by_its_folder(data, tmp_path):
    out = RunStore(str(tmp_path / "out"))
    ref = ModelRef(RunStore(data.model.uri), "")
    made = generate(data.cfg, data.store, data.registry, model=ref, styles=["style-1"], out=out)
    model, target, folder = open_batch(made.uri)
    assert model.uri == data.model.uri and target.uri(folder) == made.uri
    result = filter_batch(data.cfg, data.store, folder, model, data.registry, out=target)
    manifest = target.read_parquet(f"{folder}/manifest.parquet")
    assert result.candidates == len(manifest) == 4
    # The default config runs all five filters: each leaves a score per candidate and a pass
    # rate, and any rejection names one of them.
    assert len(DEFAULT_FILTERS) == 5 and list(result.pass_rates) == list(DEFAULT_FILTERS)
    assert manifest[list(DEFAULT_FILTERS)].notna().all().all()
    assert set(manifest["reject_reason"].dropna()) <= set(DEFAULT_FILTERS)
    assert {"kept", "reject_reason"} <= set(manifest.columns)
    images = load_batch_images(target, folder, manifest["path"])
    assert images.shape == (4, 3, SIZE, SIZE)

    with pytest.raises(ConfigError, match="not a batch folder.*pass one of .*batches"):
        open_batch(str(tmp_path / "out"))
    with pytest.raises(ConfigError, match="not a batch folder"):
        open_batch(str(tmp_path / "nothing-here"))


def test_a_batch_in_s3_is_filtered_and_reported_in_place(data, s3_options):
    bucket, options = s3_options
    out = RunStore(f"s3://{bucket}/review", options)
    ref = ModelRef(RunStore(data.model.uri), "")
    made = generate(data.cfg, data.store, data.registry, model=ref, styles=["style-0"], out=out)
    assert made.uri.startswith(f"s3://{bucket}/review/batches/")
    model, target, folder = open_batch(made.uri, options)
    filter_batch(data.cfg, data.store, folder, model, data.registry, out=target)
    report(data.cfg, data.store, folder, model, data.registry, out=target)
    manifest = out.read_parquet(f"batches/{folder}/manifest.parquet")
    assert manifest["sharpness"].notna().all() and len(manifest) == 4
    assert out.exists(f"batches/{folder}/report.html")


def ganpipe(*args):
    return subprocess.run([sys.executable, "-m", "ganpipe", *args], capture_output=True,
                          text=True, timeout=600, env={**os.environ, "COLUMNS": "200"})  # fmt: skip


@pytest.mark.slow
def test_filter_and_report_commands_take_a_batch_folder(data, tiny_model, tmp_path):
    sets = [a for kv in tiny_overrides(tiny_model) for a in ("--set", kv)]
    out = tmp_path / "out"
    made = ganpipe("generate", "--model", data.model.uri, "--style", "style-2", "--per-style", "3",
                   "--out", str(out), *sets)  # fmt: skip
    assert made.returncode == 0, made.stderr[-2000:]
    (batch,) = (out / "batches").iterdir()

    filtered = ganpipe("filter", "--batch", str(batch), *sets)
    assert filtered.returncode == 0, filtered.stderr[-2000:]
    record = json.loads(filtered.stdout.split("filtered", 1)[1])
    assert record["candidates"] == 3 and set(record["pass_rates"]) == {
        "realism", "style_match", "sharpness", "near_duplicate", "memorisation"
    }  # fmt: skip
    manifest = RunStore(str(batch)).read_parquet("manifest.parquet")
    assert manifest["memorisation"].notna().all() and len(manifest) == 3

    reported = ganpipe("report", "--batch", str(batch), *sets)
    assert reported.returncode == 0, reported.stderr[-2000:]
    assert reported.stdout.split("report: ", 1)[1].split()[0] == str(batch / "report.html")
    assert (batch / "report.html").is_file()

    wrong = ganpipe("filter", "--batch", str(out), *sets)
    assert wrong.returncode == 1 and "not a batch folder" in wrong.stderr
    assert "Traceback" not in wrong.stderr
