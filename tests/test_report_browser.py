"""The reports as a person sees them: opened in headless Chromium, every image must load and
the console must stay clean. Set GANPIPE_SCREENSHOTS=DIR to keep the screenshots."""

import os
import shutil
from pathlib import Path

import pytest

from ganpipe.config import load_config
from ganpipe.registry import load_registry
from ganpipe.stages.evaluate import evaluate
from ganpipe.stages.filter import filter_batch
from ganpipe.stages.generate import current_model, generate, planned_batch
from ganpipe.stages.report import model_report, report
from ganpipe.store import RunStore
from tests.browser import check_page, chromium_binary
from tests.conftest import tiny_overrides, train_tiny_model

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.skipif(
        chromium_binary() is None and os.environ.get("CI") != "true",
        reason="no chromium here (CI installs it: .ci/run)",
    ),
]


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    root = tmp_path_factory.mktemp("report") / "store"
    overrides = tiny_overrides(root, **{"train.sample_every": 30, "evaluate.per_style": 12})
    train_tiny_model(root, overrides)
    cfg = load_config(None, overrides)
    store, registry = RunStore.from_config(cfg), load_registry(cfg)
    model = current_model(cfg, store)
    evaluate(cfg, store, model, registry)
    generate(cfg, store, registry)
    _, folder = planned_batch(cfg, store, registry)
    filter_batch(cfg, store, folder, model, registry)
    batch_page = Path(report(cfg, store, folder, model, registry).uri)
    model_page = Path(model_report(cfg, store, model, registry).uri)
    return {"batch": batch_page, "model": model_page}


@pytest.mark.parametrize("kind, least_images", [("batch", 6 * (8 + 4) + 6 * 8),
                                                ("model", 6 * (8 + 8) + 6 * 8 + 2)])  # fmt: skip
def test_report_loads_in_a_browser_with_every_image(reports, kind, least_images, tmp_path):
    page = check_page(reports[kind])
    assert page.loaded and page.title.startswith(f"ganpipe {kind}")
    assert page.images >= least_images  # exemplars, samples, interpolation strips, grids
    assert page.broken_images == []
    assert page.console_errors == []
    assert page.screenshot.startswith(b"\x89PNG")
    keep = os.environ.get("GANPIPE_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        (Path(keep) / f"{kind}-report.png").write_bytes(page.screenshot)
        shutil.copy(reports[kind], Path(keep) / f"{kind}-report.html")


def test_reports_show_evaluation_and_rejections(reports):
    batch = reports["batch"].read_text()
    for text in ["Why samples were rejected", "Interpolation between styles", "Model evaluation",
                 "coverage", "precision", "kid"]:  # fmt: skip
        assert text in batch
    assert "not evaluated yet" not in batch
    model = reports["model"].read_text()
    assert "Samples during training" in model and "step 00000030" in model
