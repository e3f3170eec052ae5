"""A real ``ganpipe train`` process killed with SIGKILL at a random step (several seeds, killed
from inside at a hook, from outside at a random moment, and mid-way through writing a
checkpoint): rerun with ``resume: auto``, it continues from its last checkpoint and ends with
exactly the weights of a run that was never interrupted."""

from __future__ import annotations

import random
import shutil
import signal
import subprocess

import pytest
import torch
from safetensors.torch import load_file

from ganpipe.store import RunStore
from ganpipe.store.checkpoints import newest_valid_checkpoint
from tests.conftest import prepare_tiny_store, tiny_overrides
from tests.reliability.conftest import (
    GANPIPE,
    REPO,
    cli_env,
    ganpipe,
    sets,
    store_problems,
    wait_for,
    working_files,
)

pytestmark = pytest.mark.slow

STEPS, EVERY = 12, 3
TRAIN = [f"train.steps={STEPS}", f"train.checkpoint_every={EVERY}", "train.log_every=1",
         "train.sample_every=null", "train.resume=auto",
         "plugins=[tests.fixture_plugins.crash_points]"]  # fmt: skip


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A store with the tiny demo dataset ingested and its styles found."""
    return prepare_tiny_store(tmp_path_factory.mktemp("crash-train") / "store")


def train_args(root) -> list[str]:
    return ["train", *sets(tiny_overrides(root) + TRAIN)]


def exported(root):
    (folder,) = [p for p in (root / "models" / "demo").iterdir() if p.is_dir()]
    return folder.name, load_file(folder / "generator.safetensors")


def beacon_steps(path) -> list[int]:
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def test_sigkill_at_random_steps_resumes_to_the_uninterrupted_weights(prepared, tmp_path):
    rng = random.Random(8)
    cases = [
        ("inside", f"step:{rng.randint(2, STEPS - 1)}"),  # SIGKILL at the end of a step
        ("outside", rng.randint(2, STEPS - 2)),  # SIGKILL from the parent at a random moment
        ("inside", f"partial:checkpoints/step-:{rng.randint(1, STEPS // EVERY - 1)}"),
    ]
    reference_root = tmp_path / "reference"
    shutil.copytree(prepared, reference_root)
    reference_log = (tmp_path / "reference.log").open("w")
    reference = subprocess.Popen(  # runs beside the first crash: two cores
        [*GANPIPE, *train_args(reference_root)], env=cli_env(), cwd=REPO,
        stdout=reference_log, stderr=subprocess.STDOUT,
    )  # fmt: skip

    outcomes = []
    for i, (how, where) in enumerate(cases):
        root = tmp_path / f"crash-{i}"
        shutil.copytree(prepared, root)
        beacon = tmp_path / f"beacon-{i}"
        env = {"GANPIPE_BEACON": str(beacon)}
        if how == "inside":
            crashed = ganpipe(*train_args(root), env={**env, "GANPIPE_CRASH": where})
            rc = crashed.returncode
        else:
            proc = subprocess.Popen(
                [*GANPIPE, *train_args(root)], env=cli_env(env), cwd=REPO,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            reached = lambda b=beacon, k=where: max(beacon_steps(b), default=0) >= k  # noqa: E731
            assert wait_for(reached, timeout=120)
            proc.send_signal(signal.SIGKILL)
            rc = proc.wait()
        assert rc == -signal.SIGKILL, f"case {i} was not killed (exit {rc})"
        killed_at = max(beacon_steps(beacon), default=0)

        # What the crash left: checkpoints that load, nothing torn under a final name.
        assert store_problems(root) == []
        version = next(p.name for p in (root / "models" / "demo").iterdir() if p.is_dir())
        folder = f"models/demo/{version}/checkpoints"
        store = RunStore(str(root))
        last = newest_valid_checkpoint(store, folder)
        last_step = last[0] if last else 0
        assert last_step % EVERY == 0 and last_step <= killed_at
        if how == "inside" and where.startswith("step:"):
            # Killed at the end of step n, before that step's checkpoint: the one before it.
            assert last_step == EVERY * ((int(where.split(":")[1]) - 1) // EVERY)
        if how == "inside" and where.startswith("partial:"):
            assert last_step == EVERY * (int(where.rsplit(":", 1)[1]) - 1)
        assert working_files(root) == []  # the cut checkpoint's temporary file is swept

        # Rerun with resume: auto.
        beacon.unlink(missing_ok=True)
        resumed = ganpipe(*train_args(root), env=env)
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        assert beacon_steps(beacon)[0] == last_step + 1  # continued, not restarted
        outcomes.append((how, where, killed_at, last_step, exported(root)))

    assert reference.wait(timeout=240) == 0, (tmp_path / "reference.log").read_text()[-2000:]
    ref_version, ref_weights = exported(reference_root)
    for how, where, killed_at, _, (version, weights) in outcomes:
        assert version == ref_version
        assert weights.keys() == ref_weights.keys()
        different = [k for k in weights if not torch.equal(weights[k], ref_weights[k])]
        assert different == [], f"{how} {where} (killed at {killed_at}): {different[:3]} differ"
        assert store_problems(tmp_path) == []
