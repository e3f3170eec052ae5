"""Damaged store files (issue 17, class 3): every kind of file the store reads (pointers, JSON,
Parquet, safetensors, pixel shards, images), torn, truncated, of the wrong type and empty.

Each case damages one file of a trained tiny store, then checks what a user sees: the stage
that reads it fails with a clear error naming the file (never an internal error), and rerunning
the stage that wrote it (as the message says) makes the reader work again."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ganpipe.config import load_config
from ganpipe.errors import GanpipeError
from ganpipe.store import RunStore
from tests.conftest import tiny_overrides, train_tiny_model

pytestmark = pytest.mark.timeout(300)

DAMAGES = ("torn", "truncated", "wrong_type", "empty")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    return train_tiny_model(tmp_path_factory.mktemp("damaged") / "store")


@pytest.fixture
def store_root(trained, tmp_path) -> Path:
    root = tmp_path / "store"
    shutil.copytree(trained, root)
    return root


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "torn":  # a write cut short and overwritten in the middle
        cut = max(1, len(data) // 2)
        path.write_bytes(data[:cut] + bytes(range(256)) * 4)
    elif how == "truncated":
        path.write_bytes(data[: max(1, len(data) // 3)])
    elif how == "empty":
        path.write_bytes(b"")
    elif path.suffix in (".json", ""):  # valid content of another type
        path.write_text("[1, 2, 3]\n")
    else:  # a perfectly good file of another format
        buffer = io.BytesIO()
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(buffer, "PNG")
        path.write_bytes(buffer.getvalue())


def config(root: Path):
    return load_config(None, tiny_overrides(root))


def only(pattern: str, root: Path) -> Path:
    [found] = sorted(root.glob(pattern))
    return found


def run(fn) -> GanpipeError | None:
    """The stage's outcome as a user sees it: None, or the clear error (anything else fails)."""
    try:
        fn()
    except GanpipeError as exc:
        return exc
    return None


def stages(root: Path):
    from ganpipe.domain.model_pointers import current_model
    from ganpipe.stages.evaluate import evaluate
    from ganpipe.stages.generate import generate
    from ganpipe.stages.ingest import ingest
    from ganpipe.stages.styles import styles
    from ganpipe.stages.train import train

    cfg, store = config(root), RunStore(str(root))

    def train_and_promote():
        from ganpipe.domain.model_pointers import promote

        result = train(cfg, store)
        promote(store, result.model, result.version)

    return {
        "ingest": lambda: ingest(cfg, store),
        "styles": lambda: styles(cfg, store),
        "train": train_and_promote,
        "generate": lambda: generate(cfg, store),
        "current": lambda: current_model(cfg, store),
        "evaluate": lambda: evaluate(cfg, store, write=False),
    }


# (file pattern, the stage that reads it, the stage that writes it again)
CASES = {
    "dataset pointer (JSON)": ("datasets/demo/latest.json", "styles", "ingest"),
    "dataset manifest (Parquet)": ("datasets/demo/*/manifest.parquet", "styles", "ingest"),
    "input cache (Parquet)": ("datasets/demo/*/inputs.parquet", "ingest", "ingest"),
    "pixel shard (npy)": ("datasets/demo/*/shards/*", "evaluate", "ingest"),
    "style table (JSON)": ("styles/*/*/styles.json", "train", "styles"),
    "style assignments (Parquet)": ("styles/*/*/assignments.parquet", "train", "styles"),
    "model pointer (text)": ("models/demo/current", "generate", "train"),
    "generator description (JSON)": ("models/demo/*/generator.json", "generate", "train"),
    "generator weights (safetensors)": ("models/demo/*/generator.safetensors", "generate",
                                        "train"),
    "training record (JSON)": ("models/demo/*/training.json", "train", "train"),
}  # fmt: skip


@pytest.mark.parametrize("how", DAMAGES)
@pytest.mark.parametrize("case", list(CASES))
def test_damaged_file_is_named_and_its_writer_repairs_it(store_root, case, how):
    pattern, reader, writer = CASES[case]
    target = sorted(store_root.glob(pattern))[0]
    damage(target, how)
    steps = stages(store_root)
    first = run(steps[reader])
    if first is not None:  # a reader that cannot repair it names the file
        assert target.name in first.message or str(target) in first.message, first.message
        assert "rerun" in (first.fix or ""), first.message
        if "delete" in (first.fix or ""):  # as the message says: delete, then rerun the writer
            target.unlink()
    assert run(steps[writer]) is None
    if reader != writer:
        assert run(steps[reader]) is None


def test_a_damaged_batch_image_says_to_rerun_generate(store_root):
    from ganpipe.domain.model_pointers import current_model
    from ganpipe.stages.filter import filter_batch
    from ganpipe.stages.generate import generate

    cfg, store = config(store_root), RunStore(str(store_root))
    made = generate(cfg, store)
    folder = Path(made.uri)
    images = sorted(folder.glob("images/*/*.png"))
    images[0].unlink()
    damage(images[1], "truncated")
    model = current_model(cfg, store)
    rel = f"batches/{made.batch_id}"
    error = run(lambda: filter_batch(cfg, store, rel, model))
    assert error is not None and images[0].name in error.message
    assert "rerun 'ganpipe generate'" in error.message
    generate(cfg, store)
    error = run(lambda: filter_batch(cfg, store, rel, model))
    assert error is not None and images[1].name in error.message and "delete" in error.message
    images[1].unlink()
    generate(cfg, store)
    assert run(lambda: filter_batch(cfg, store, rel, model)) is None
    assert json.loads((folder / "filter.json").read_text())["candidates"] == made.count
