"""Concurrency: pipeline runs at once on one store (separate processes, the same config twice and
a different one) never corrupt each other's outputs; two ingests finishing the same dataset
version take turns; and ``RunStore.lock`` gives writers that race on one pointer (``current``)
mutual exclusion, locally and on S3, surviving a holder that was killed."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import pandas as pd
import pytest

from ganpipe.config import load_config
from ganpipe.errors import StoreError
from ganpipe.stages.ingest import ingest
from ganpipe.store import RunStore
from tests.conftest import tiny_overrides
from tests.reliability.conftest import REPO, cli_env, s3_store_options, store_problems
from tests.reliability.conftest import working_files as leftovers

# A promotion gate in miniature: read current, decide, write current and the history.
GATE = """
import json, sys, time
from ganpipe.store import RunStore
root, me, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
options = json.loads(sys.argv[4]) if len(sys.argv) > 4 else None
store = RunStore(root, options)
for i in range(rounds):
    with store.lock("models/m/.lock-current", timeout=60):
        found = store.exists("models/m/history.json")
        history = store.read_json("models/m/history.json") if found else []
        time.sleep(0.002)  # the evaluation between reading and writing
        store.write_text("models/m/current", f"{me}-{i}\\n")
        store.write_json("models/m/history.json", history + [f"{me}-{i}"])
"""


def run_gates(root: str, writers: int, rounds: int, options: dict | None = None) -> list[str]:
    """``writers`` processes each promoting ``rounds`` times under the lock; the history."""
    extra = [json.dumps(options)] if options else []
    procs = [
        subprocess.Popen([sys.executable, "-c", GATE, root, f"w{w}", str(rounds), *extra],
                         env=cli_env(), cwd=REPO, stderr=subprocess.PIPE, text=True)
        for w in range(writers)
    ]  # fmt: skip
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read()[-2000:]
    return RunStore(root, options).read_json("models/m/history.json")


def test_the_lock_serialises_read_decide_write_across_processes(tmp_path):
    history = run_gates(str(tmp_path / "store"), writers=3, rounds=15)
    assert len(history) == 45 and len(set(history)) == 45  # no promotion lost or doubled
    store = RunStore(str(tmp_path / "store"))
    assert store.read_text("models/m/current").strip() == history[-1]
    assert store.listdir("models/m") == ["current", "history.json"]  # the lock is gone


def test_the_lock_serialises_writers_on_s3(moto_proxy):
    moto, proxy, make_bucket = moto_proxy
    root, options = f"s3://{make_bucket()}/runs", s3_store_options(proxy.endpoint)
    history = run_gates(root, writers=2, rounds=6, options=options)
    assert len(history) == 12 and len(set(history)) == 12


def test_threads_take_turns_and_the_lock_is_reentrant(tmp_path):
    store = RunStore(str(tmp_path / "store"))
    store.write_json("n.json", 0)

    def bump():
        for _ in range(20):
            with store.lock(".lock-n"), store.lock(".lock-n"):  # re-entrant in a thread
                n = store.read_json("n.json")
                store.write_json("n.json", n + 1)

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.read_json("n.json") == 80


def test_a_lock_left_by_a_killed_or_expired_holder_is_broken_a_live_one_is_not(tmp_path):
    from ganpipe.store import ownership

    store = RunStore(str(tmp_path / "store"))
    here = f"{ownership._HOST}~{ownership._NAMESPACE}"
    killed = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                            capture_output=True, text=True).stdout.strip()  # fmt: skip
    for owner, expires in [(f"{here}~{killed}~0badc0de", time.time() + 3600),  # dead process
                           ("otherhost~1~2~0badc0de", time.time() - 1)]:  # lease over  # fmt: skip
        store.write_json(".lock-x", {"owner": owner, "id": "old", "expires": expires,
                                     "acquired": time.time() - 10})  # fmt: skip
        started = time.monotonic()
        with store.lock(".lock-x", timeout=5):
            assert store.read_json(".lock-x")["owner"] == ownership.owner_token()
        assert time.monotonic() - started < 1 and not store.exists(".lock-x")

    live = {"owner": "otherhost~1~2~0badc0de", "id": "live", "expires": time.time() + 600,
            "acquired": time.time()}  # fmt: skip
    store.write_json(".lock-x", live)
    with pytest.raises(StoreError) as err, store.lock(".lock-x", timeout=0.3):
        pass
    assert "held by otherhost" in err.value.message and "delete the lock" in err.value.fix
    assert store.read_json(".lock-x")["id"] == "live"  # a live holder's lock is left alone


def test_promote_takes_the_current_lock(tmp_path, monkeypatch):
    from ganpipe.domain.model_pointers import promote

    taken = []
    original = RunStore.lock

    def spy(self, rel, **kwargs):
        taken.append(rel)
        return original(self, rel, **kwargs)

    monkeypatch.setattr(RunStore, "lock", spy)
    promote(RunStore(str(tmp_path)), "m", "v-1")
    assert taken == ["models/m/.lock-current"]


def test_concurrent_ingests_of_the_same_data_take_turns(tmp_path, labelled_folder):
    overrides = [f"dataset.sources=[{labelled_folder}]", "dataset.name=t",
                 "dataset.image_size=16", "dataset.shard_mb=0.002"]  # fmt: skip
    for round_ in range(4):
        root = tmp_path / f"store-{round_}"
        cfg = load_config(None, [f"store.root={root}", *overrides])
        results, errors = [], []

        def run(cfg=cfg, results=results, errors=errors):
            try:
                results.append(ingest(cfg, RunStore.from_config(cfg)))
            except Exception as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=run) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == [] and len({r.fingerprint for r in results}) == 1
        assert store_problems(root) == [] and leftovers(root) == []
        manifest = pd.read_parquet(
            root / "datasets/t" / results[0].fingerprint / "manifest.parquet"
        )
        assert len(manifest) == 12 and manifest["id"].is_unique


# Whole runs at once -------------------------------------------------------------------------

# The pipeline's stages, each run's batch made by the model that run trained (see
# test_a_pipeline_run_generates_from_the_model_it_trained for why not from "current").
RUN = """
import json, sys
from ganpipe.store import layout
from ganpipe.config import load_config
from ganpipe.stages.filter import filter_batch
from ganpipe.domain.model_pointers import ModelRef, promote
from ganpipe.stages.generate import generate
from ganpipe.stages.ingest import ingest
from ganpipe.registry import load_registry
from ganpipe.stages.report import report
from ganpipe.store import RunStore
from ganpipe.stages.styles import styles
from ganpipe.stages.train import train
cfg = load_config(None, json.loads(sys.argv[1]))
store, registry = RunStore.from_config(cfg), load_registry(cfg)
ingested = ingest(cfg, store, registry)
styles(cfg, store, registry)
trained = train(cfg, store, registry)
promote(store, trained.model, trained.version)
model = ModelRef(store, layout.model_dir(trained.model, trained.version))
generated = generate(cfg, store, registry, model=model)
folder = layout.batch_dir(generated.batch_id)
filtered = filter_batch(cfg, store, folder, model, registry)
reported = report(cfg, store, folder, model, registry)
print(json.dumps({"fingerprint": ingested.fingerprint, "version": trained.version,
                  "batch": generated.batch_id, "kept": filtered.kept, "report": reported.uri}))
"""


@pytest.mark.slow
def test_pipeline_runs_at_once_on_one_store_never_corrupt_each_other(tmp_path):
    root = tmp_path / "store"
    base = tiny_overrides(
        root,
        **{
            "train.steps": 6,
            "train.checkpoint_every": 2,
            "train.sample_every": "null",
            "generate.per_style": 2,
        },
    )
    configs = {"a": base, "a-again": base, "b": [*base, "train.seed=1"]}  # fmt: skip
    logs = {name: (tmp_path / f"{name}.log").open("w") for name in configs}
    procs = {
        name: subprocess.Popen([sys.executable, "-c", RUN, json.dumps(overrides)],
                               env=cli_env(), cwd=REPO, stdout=subprocess.PIPE,
                               stderr=logs[name], text=True)
        for name, overrides in configs.items()
    }  # fmt: skip
    out = {}
    for name, proc in procs.items():
        stdout, _ = proc.communicate(timeout=400)
        assert proc.returncode == 0, (tmp_path / f"{name}.log").read_text()[-3000:]
        out[name] = json.loads(stdout.strip().splitlines()[-1])

    # The same request twice: one dataset version, one model version, one batch, same images.
    assert out["a"] == out["a-again"]
    assert out["b"]["fingerprint"] == out["a"]["fingerprint"]
    assert out["b"]["version"] != out["a"]["version"] and out["b"]["batch"] != out["a"]["batch"]
    assert len(list((root / "datasets" / "demo").iterdir())) == 2  # the version + latest.json
    # Every output complete and readable; nothing half-written, no working files left.
    assert store_problems(root) == [] and leftovers(root) == []
    for run in ("a", "b"):
        folder = root / "models" / "demo" / out[run]["version"]
        assert (folder / "training.json").is_file() and (folder / "generator.safetensors").is_file()
        batch = root / "batches" / out[run]["batch"]
        manifest = pd.read_parquet(batch / "manifest.parquet")
        assert len(manifest) == 12 and manifest["path"].is_unique
        assert (batch / "report.html").is_file()
    current = (root / "models" / "demo" / "current").read_text().strip()
    assert current in (out["a"]["version"], out["b"]["version"])  # one of them, whole


@pytest.mark.slow
def test_a_pipeline_run_generates_from_the_model_it_trained(tmp_path, prefect_harness):
    from ganpipe.stages.styles import styles
    from ganpipe_flows.pipeline import generate_task, train_task

    root = tmp_path / "store"
    base = tiny_overrides(root, **{"train.steps": 2, "train.sample_every": "null",
                                   "generate.per_style": 1})  # fmt: skip
    run_a = load_config(None, base)
    run_b = load_config(None, [*base, "train.seed=1"])
    store = RunStore.from_config(run_a)
    ingest(run_a, store)
    styles(run_a, store)
    trained_a = train_task(run_a.model_dump(mode="json"), styled={})
    train_task(run_b.model_dump(mode="json"), styled={})  # run B promotes meanwhile
    generated_a = generate_task(run_a.model_dump(mode="json"), trained_a)
    assert generated_a.model == f"demo/{trained_a.version}"
