"""Degenerate datasets through every stage (issue 17, class 8): 1, 2 and 3 images, one style
with a single image, and images that are all pixel-identical. Each stage either works or says
clearly what is too small; none ends in an internal error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ganpipe.config import load_config
from ganpipe.errors import GanpipeError
from ganpipe.store import RunStore
from tests.reliability.conftest import ganpipe, sets

pytestmark = pytest.mark.timeout(600)


def image(path: Path, seed: int, identical: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0 if identical else seed)
    base = rng.integers(0, 255, (3,))
    pixels = np.clip(base + rng.normal(0, 30, (24, 24, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)


DATASETS = {
    "one image": lambda d: image(d / "a.png", 1),
    "two images": lambda d: [image(d / f"{i}.png", i) for i in range(2)],
    "three images": lambda d: [image(d / f"{i}.png", i) for i in range(3)],
    "identical images": lambda d: [image(d / f"{i}.png", i, identical=True) for i in range(6)],
    "a style of one image": lambda d: (
        [image(d / "red" / f"{i}.png", i) for i in range(5)] + [image(d / "blue" / "only.png", 99)]
    ),
}
LABELLED = {"a style of one image"}


def overrides(root: Path, folder: Path, name: str) -> list[str]:
    values = [f"store.root={root}", f"dataset.sources=[{folder}]", "dataset.image_size=16",
              "dataset.min_size=8", "train.steps=6", "train.batch_size=4",
              "train.checkpoint_every=3", "train.log_every=2", "train.max_minutes=null",
              "generate.per_style=3", "evaluate.per_style=2"]  # fmt: skip
    if name in LABELLED:
        values += ["dataset.labels=dirs", "style.source=labels"]
    return values


CLEAR = ("too small", "too few", "at least", "needs", "only", "fewer")


@pytest.mark.parametrize("name", list(DATASETS))
def test_every_stage_works_or_says_what_is_too_small(tmp_path, name):
    from ganpipe.domain.model_pointers import promote
    from ganpipe.stages.evaluate import evaluate
    from ganpipe.stages.filter import filter_batch
    from ganpipe.stages.generate import generate
    from ganpipe.stages.ingest import ingest
    from ganpipe.stages.report import model_report, report
    from ganpipe.stages.styles import styles
    from ganpipe.stages.train import train

    folder = tmp_path / "images"
    DATASETS[name](folder)
    cfg = load_config(None, overrides(tmp_path / "store", folder, name))
    store = RunStore(str(tmp_path / "store"))
    outcomes = {}

    def step(label, fn):
        try:
            outcomes[label] = fn()
            return True
        except GanpipeError as exc:
            assert any(word in exc.message for word in CLEAR), f"{label}: {exc.message}"
            outcomes[label] = exc
            return False

    if not step("ingest", lambda: ingest(cfg, store)):
        return
    if not step("styles", lambda: styles(cfg, store)):
        return
    if name == "identical images":  # automatic choice falls back to one style
        assert len(outcomes["styles"].names) == 1
    if not step("train", lambda: train(cfg, store)):
        return
    result = outcomes["train"]
    promote(store, result.model, result.version)
    if not step("generate", lambda: generate(cfg, store)):
        return
    made = outcomes["generate"]
    from ganpipe.domain.model_pointers import current_model

    model = current_model(cfg, store)
    batch = f"batches/{made.batch_id}"
    step("filter", lambda: filter_batch(cfg, store, batch, model))
    step("batch report", lambda: report(cfg, store, batch, model))
    step("evaluate", lambda: evaluate(cfg, store))
    step("model report", lambda: model_report(cfg, store, model))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["one image", "identical images"])
def test_run_and_retrain_on_degenerate_data_end_clearly(tmp_path, name):
    folder = tmp_path / "images"
    DATASETS[name](folder)
    args = sets(overrides(tmp_path / "store", folder, name))
    env = {"PREFECT_HOME": str(tmp_path / "prefect")}
    for command in (["run"], ["retrain", "--force"]):
        done = ganpipe(*command, *args, env=env, timeout=400)
        assert done.returncode in (0, 1), done.stderr[-3000:]
        if done.returncode == 1:
            assert any(word in done.stderr for word in CLEAR), done.stderr[-3000:]
