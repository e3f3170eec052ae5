import html.parser

import numpy as np
import pytest
import torch

from ganpipe.config import load_config
from ganpipe.domain.model_pointers import ModelRef, current_model
from ganpipe.errors import ConfigError, PluginError, StoreError
from ganpipe.registry import load_registry
from ganpipe.stages.filter import filter_batch
from ganpipe.stages.generate import generate, planned_batch
from ganpipe.stages.report import report
from ganpipe.store import RunStore
from tests.conftest import tiny_overrides, train_tiny_model


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen") / "store"
    return train_tiny_model(root)


def cfg_for(root, *extra):
    return load_config(None, tiny_overrides(root) + list(extra))


def test_generation_is_reproducible_and_resumable(trained, tmp_path):
    cfg = cfg_for(trained)
    store = RunStore.from_config(cfg)
    mine = RunStore(str(tmp_path / "mine"))  # other tests of the module generate into `store`
    first = generate(cfg, store, out=mine)
    assert first.count == 24 and first.written == 24
    folder = f"batches/{first.batch_id}"
    manifest = mine.read_parquet(f"{folder}/manifest.parquet")
    assert list(manifest.columns) == ["path", "style", "seed", "model", "kept", "reject_reason"]
    assert sorted(set(manifest["seed"])) == [0, 1, 2, 3]
    blob = mine.read_bytes(f"{folder}/{manifest.loc[5, 'path']}")

    mine.remove(f"{folder}/{manifest.loc[5, 'path']}")  # as if interrupted before this image
    again = generate(cfg, store, out=mine)
    assert again.batch_id == first.batch_id and again.written == 1
    assert mine.read_bytes(f"{folder}/{manifest.loc[5, 'path']}") == blob

    # Same request into another store, with a different chunking: byte-identical images.
    other = RunStore(str(tmp_path / "elsewhere"))
    copy = generate(cfg_for(trained, "generate.batch_size=5"), store, out=other)
    assert copy.batch_id == first.batch_id
    assert other.read_bytes(f"{folder}/{manifest.loc[5, 'path']}") == blob


def test_styles_differ_in_generated_samples(trained):
    cfg = cfg_for(trained, "generate.per_style=6")
    store = RunStore.from_config(cfg)
    result = generate(cfg, store)
    from ganpipe.stages.filter import load_batch_images

    manifest = store.read_parquet(f"batches/{result.batch_id}/manifest.parquet")
    images = load_batch_images(store, f"batches/{result.batch_id}", manifest["path"])
    # One latent rendered in each style: every pair of styles gives visibly different images.
    for seed in range(6):
        rows = images[np.flatnonzero(manifest["seed"] == seed)]
        gaps = (rows[:, None] - rows[None]).abs().mean(dim=(2, 3, 4))
        off_diagonal = gaps[~torch.eye(len(rows), dtype=torch.bool)]
        assert float(off_diagonal.min()) > 0.1, gaps


def test_generate_for_chosen_styles_from_a_model_uri(trained, tmp_path):
    cfg = cfg_for(trained, "generate.per_style=2")
    store = RunStore.from_config(cfg)
    model = current_model(cfg, store)
    ref = ModelRef(RunStore(model.uri), "")
    result = generate(cfg, store, model=ref, styles=["style-1", "4"], out=RunStore(str(tmp_path)))
    manifest = RunStore(str(tmp_path)).read_parquet(f"batches/{result.batch_id}/manifest.parquet")
    assert sorted(set(manifest["style"])) == ["style-1", "style-4"] and len(manifest) == 4
    with pytest.raises(ConfigError, match="unknown style 'nope'"):
        generate(cfg, store, model=ref, styles=["nope"])
    with pytest.raises(StoreError, match="no exported generator"):
        generate(cfg, store, model=ModelRef(RunStore(str(tmp_path / "empty")), ""))


def test_filter_scores_every_candidate_and_keeps_a_policy(trained):
    cfg = cfg_for(trained, "filter.keep=top_k:2")
    store = RunStore.from_config(cfg)
    registry = load_registry(cfg)
    generate(cfg, store, registry)
    model, folder = planned_batch(cfg, store, registry)
    result = filter_batch(cfg, store, folder, model, registry)
    manifest = store.read_parquet(f"{folder}/manifest.parquet")
    assert result.candidates == 24 == len(manifest)
    assert {"realism", "style_match", "kept", "reject_reason"} <= set(manifest.columns)
    assert manifest["realism"].notna().all() and manifest["style_match"].notna().all()
    assert (manifest.groupby("style")["kept"].sum() <= 2).all()
    assert manifest.loc[manifest["kept"], "reject_reason"].isna().all()
    assert manifest.loc[~manifest["kept"], "reject_reason"].notna().all()
    assert set(manifest["reject_reason"].dropna()) <= {*cfg.filter.filters, "top_k"}
    assert result.kept + sum(result.rejected_by_reason.values()) == result.candidates

    # Rerunning generate on the finished batch keeps the filter's verdicts.
    generate(cfg, store, registry)
    assert "realism" in store.read_parquet(f"{folder}/manifest.parquet").columns

    # top_k keeps the best: with one filter that passes everything, the k highest scores.
    best = cfg_for(trained, "filter.filters=[realism]", "filter.keep=top_k:2",
                   "filter.options={realism: {threshold: -1.0e+9}}")  # fmt: skip
    filter_batch(best, store, folder, model, registry)
    manifest = store.read_parquet(f"{folder}/manifest.parquet")
    for _, group in manifest.groupby("style"):
        top = group.nlargest(2, "realism").index
        assert sorted(group.index[group["kept"]]) == sorted(top)

    strict = cfg_for(trained, "filter.options={realism: {threshold: 1.0e9}}")
    filter_batch(strict, store, folder, model, registry)
    manifest = store.read_parquet(f"{folder}/manifest.parquet")
    assert not manifest["kept"].any() and set(manifest["reject_reason"]) == {"realism"}


def test_a_filter_returning_the_wrong_shape_is_named(trained):
    cfg = cfg_for(
        trained, "filter.filters=[bad_shape]", "plugins=[tests.fixture_plugins.bad_filter]"
    )
    store = RunStore.from_config(cfg)
    registry = load_registry(cfg)
    generate(cfg, store, registry)
    model, folder = planned_batch(cfg, store, registry)
    with pytest.raises(PluginError, match="bad_shape.*expected \\(24,\\)"):
        filter_batch(cfg, store, folder, model, registry)


class _Images(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.sections = [], 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
        if tag == "section":
            self.sections += 1


def test_report_shows_each_style_with_exemplars_and_samples(trained):
    cfg = cfg_for(trained)
    store = RunStore.from_config(cfg)
    registry = load_registry(cfg)
    generate(cfg, store, registry)
    model, folder = planned_batch(cfg, store, registry)
    filter_batch(cfg, store, folder, model, registry)
    result = report(cfg, store, folder, model, registry)
    page = store.read_text(f"{folder}/report.html")
    parser = _Images()
    parser.feed(page)
    assert parser.sections == 6
    assert len(parser.images) >= 6 * (8 + 4)  # exemplars + every sample, kept or rejected
    assert all(src.startswith("data:image/png;base64,") for src in parser.images)
    assert "<svg" in page and "loss_d" in page
    for key in ["style_accuracy", "frechet_distance", "kept_fraction", "styles_nmi"]:
        assert key in result.metrics and np.isfinite(result.metrics[key])
    assert store.read_json(f"{folder}/metrics.json") == result.metrics
