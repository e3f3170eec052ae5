"""Data-parallel training with real torch.distributed processes: torchrun, 2 ranks, gloo."""

import os
import subprocess
import sys

import pytest

from ganpipe.config import load_config
from ganpipe.stages.ingest import ingest
from ganpipe.stages.styles import styles
from ganpipe.store import RunStore
from tests.conftest import tiny_overrides

pytestmark = pytest.mark.slow


def test_two_ranks_train_identical_weights_and_only_rank_0_writes(tmp_path):
    """With every stateful component on, so a checkpoint (rank 0's state) resumes any rank."""
    overrides = tiny_overrides(tmp_path / "store", **{
        "train.steps": 6, "train.checkpoint_every": 3, "train.log_every": 1,
        "plugins": "[tests.fixture_plugins.ranks]",
        "train.augmentations": "{ada: {interval: 2, speed: 50}}",
        "train.regularizers":
            "{lecam: {}, style_moments: {interval: 1}, diversity: {target: data}}",
    })  # fmt: skip
    cfg = load_config(None, overrides)
    store = RunStore.from_config(cfg)
    ingest(cfg, store)
    styles(cfg, store)

    records = tmp_path / "ranks"
    records.mkdir()
    sets = [a for kv in overrides for a in ("--set", kv)]
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "ganpipe", "train", *sets],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "GANPIPE_TEST_RANK_DIR": str(records)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]

    weights = {r: (records / f"weights-{r}.txt").read_text() for r in (0, 1)}
    assert weights[0] == weights[1]  # both ranks hold identical weights
    # ...and identical component state: ADA's p, LeCam's anchors, style_moments' statistics,
    # diversity's real pair gaps (each rank sees its own reals: the sums are over both)
    states = {r: (records / f"components-{r}.txt").read_text() for r in (0, 1)}
    assert states[0].count("\n") == 3, states[0]  # four stateful components recorded
    assert states[0] == states[1]
    assert (records / "saved-0.txt").read_text().count("step-") == 2  # steps 3 and 6
    assert not (records / "saved-1.txt").exists()  # rank 1 never wrote a checkpoint
    version = store.read_text("models/demo/current").strip()
    assert store.exists(f"models/demo/{version}/generator.safetensors")
    checkpoints = store.listdir(f"models/demo/{version}/checkpoints")
    assert checkpoints == ["step-00000003.pt", "step-00000006.pt"]
