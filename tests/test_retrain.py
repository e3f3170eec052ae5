"""Scheduled retraining: skip unchanged data, gate new models against the current one."""

import json
import shutil
from pathlib import Path

import pytest

from ganpipe.config import load_config
from ganpipe.data.demo import write_demo_dataset
from ganpipe.domain.model_pointers import champion, current_model, promote
from ganpipe.errors import ConfigError, StoreError
from ganpipe.stages.gate import decide
from ganpipe.store import RunStore
from tests.conftest import tiny_overrides

HIGHER = {"fd": False, "coverage": True}
HIGHER_ACC = {**HIGHER, "style_accuracy": True}


def test_first_model_is_promoted_and_a_worse_one_is_kept():
    first = decide("m/v-new", {"fd": 9.0, "coverage": 0.1}, None, None, ["fd", "coverage"],
                   0.05, HIGHER)  # fmt: skip
    assert first.action == "promoted" and "no current model" in first.reasons[0]
    within = decide("m/v-new", {"fd": 10.4, "coverage": 0.58}, "m/v-old",
                    {"fd": 10.0, "coverage": 0.6}, ["fd", "coverage"], 0.05, HIGHER)  # fmt: skip
    assert within.action == "promoted"  # 4% and 3.3% worse: inside the 5% tolerance
    worse = decide("m/v-new", {"fd": 10.6, "coverage": 0.9}, "m/v-old",
                   {"fd": 10.0, "coverage": 0.6}, ["fd", "coverage"], 0.05, HIGHER)  # fmt: skip
    assert worse.action == "kept" and "fd: 10.6 vs 10" in worse.reasons[0]


def test_an_unknown_gate_metric_is_a_config_error():
    with pytest.raises(ConfigError) as err:
        decide("m/v", {"fd": 1.0}, "m/w", {"fd": 1.0}, ["fid"], 0.0, HIGHER)
    assert err.value.where == "retrain.gate" and "fd" in err.value.fix


def test_the_champion_is_what_current_names(tiny_config):
    store = RunStore.from_config(tiny_config)
    assert champion(tiny_config, store) is None
    with pytest.raises(StoreError, match="has no current version"):
        current_model(tiny_config, store)
    for version in ("v-1", "v-2"):  # exported models (current must name one)
        store.write_json(f"models/demo/{version}/generator.json", {"name": "dcgan"})
    assert promote(store, "demo", "v-1", expected=None)
    assert not promote(store, "demo", "v-2", expected=None)  # someone promoted meanwhile
    assert champion(tiny_config, store).folder == "models/demo/v-1"
    assert current_model(tiny_config, store) == champion(tiny_config, store)
    promote(store, "demo", "v-9")  # a version that does not exist: a damaged pointer
    with pytest.raises(StoreError, match="current is damaged.*'v-9'"):
        champion(tiny_config, store)


def _evaluation(space_hash="aaa", fingerprint="d1", per_style=None):
    per_style = per_style or {"a": {"coverage": 0.5, "style_accuracy": 1.0}}
    return {"model": "m/v", "metrics": {"fd": 1.0},
            "settings": {"space": "texture", "space_hash": space_hash, "split": "val",
                         "dataset_fingerprint": fingerprint, "per_style": 8, "seed": 0},
            "spaces": {"texture": {"per_style": per_style}}}  # fmt: skip


def test_a_stored_evaluation_is_reused_only_in_the_same_space_on_the_same_images(tiny_config):
    from ganpipe.domain.model_pointers import ModelRef
    from ganpipe.stages.gate import keep_evaluation, stored_evaluation

    store = RunStore.from_config(tiny_config)
    model = ModelRef(store, "models/demo/v-1")
    kept = _evaluation()
    keep_evaluation(model, kept)
    assert stored_evaluation(model, kept["settings"]) == kept
    for change in ({"space_hash": "bbb"}, {"dataset_fingerprint": "d2"}, {"split": "all"},
                   {"per_style": 9}, {"seed": 1}):  # fmt: skip
        assert stored_evaluation(model, {**kept["settings"], **change}) is None, change


def test_a_challenger_that_ruins_one_style_is_caught():
    from ganpipe.stages.gate import judge_per_style, per_style_deltas

    styles = {f"s{i}": {"coverage": 0.5, "style_accuracy": 0.9} for i in range(6)}
    better = {s: {"coverage": 0.7, "style_accuracy": 0.95} for s in styles}
    better["s5"] = {"coverage": 0.05, "style_accuracy": 0.2}  # ruined
    new, old = _evaluation(per_style=better), _evaluation(per_style=styles)
    deltas = per_style_deltas(new, old, ["coverage", "style_accuracy", "fd"], 0.2, HIGHER_ACC)
    assert [s for s, rows in deltas.items() if any(r["worse"] for r in rows.values())] == ["s5"]
    assert deltas["s0"]["coverage"] == {"challenger": 0.7, "champion": 0.5, "delta": 0.2,
                                        "worse": False}  # fmt: skip
    pooled = decide("m/v-new", {"fd": 9.0}, "m/v-old", {"fd": 10.0}, ["fd"], 0.05, HIGHER)
    assert pooled.action == "promoted"
    judge_per_style(pooled, deltas, enforce=False, tolerance=0.2)
    assert pooled.action == "promoted" and "s5 (coverage 0.5 -> 0.05" in pooled.reasons[-1]
    judge_per_style(pooled, deltas, enforce=True, tolerance=0.2)
    assert pooled.action == "kept" and pooled.per_style == deltas


@pytest.mark.slow
def test_retrain_skips_unchanged_data_and_gates_new_models(tmp_path, prefect_harness):
    from ganpipe_flows.retrain import retrain

    data = write_demo_dataset(tmp_path / "data", per_style=10, size=32)
    base = tiny_overrides(tmp_path / "store", **{"dataset.sources": f"[{data}]",
                                                 "evaluate.per_style": 12,
                                                 "dataset.val_fraction": 0.3})  # fmt: skip
    cfg = load_config(None, base)
    store = RunStore.from_config(cfg)

    first = retrain(config=cfg.model_dump(mode="json"))
    assert first["action"] == "promoted" and first["champion"] is None
    assert "ganpipe model demo/" in Path(first["report_uri"]).read_text()  # the model report
    assert store.read_text("models/demo/current").strip() == first["model_version"]

    again = retrain(config=cfg.model_dump(mode="json"))
    assert again["action"] == "skipped" and again["model_version"] == first["model_version"]
    assert "already trained on this data" in again["reason"]

    # New images land; a barely trained challenger must not replace the current model.
    extra = write_demo_dataset(tmp_path / "more", per_style=12, size=32)
    for style_dir in extra.iterdir():
        for png in sorted(style_dir.glob("*.png"))[10:]:
            shutil.copy(png, data / style_dir.name / f"new-{png.name}")
    weak = load_config(None, [*base, "train.steps=2", "train.init=scratch"])  # no warm start
    decided = retrain(config=weak.model_dump(mode="json"))
    assert decided["dataset_fingerprint"] != first["dataset_fingerprint"]
    assert decided["action"] == "kept" and decided["champion"].endswith(first["model_version"])
    assert decided["challenger_metrics"]["fd"] > decided["champion_metrics"]["fd"]
    assert store.read_text("models/demo/current").strip() == first["model_version"]
    record = json.loads(
        (tmp_path / "store" / "models/demo" / decided["model_version"] / "retrain.json").read_text()
    )
    assert record["action"] == "kept" and record["champion_metrics"]
    # both were measured on the challenger's data, in the same pinned space, same settings
    assert record["dataset_fingerprint"] == decided["dataset_fingerprint"]
    assert record["space"] == "texture" and record["space_hash"]
    models = tmp_path / "store" / "models/demo"
    found = {}
    for version in (first["model_version"], decided["model_version"]):
        folder = models / version / "evaluations"
        saved = [json.loads(f.read_text()) for f in folder.iterdir()]
        on = record["dataset_fingerprint"]
        (found[version],) = [e for e in saved if e["settings"]["dataset_fingerprint"] == on]
    a, b = found.values()
    assert a["settings"] == b["settings"] and a["settings"]["split"] == "val"
    assert a["settings"]["dataset_fingerprint"] == decided["dataset_fingerprint"]
    assert set(record["per_style"]) == set(a["spaces"]["texture"]["per_style"])

    # The command line records the decision for scripts; this data has a model now.
    from prefect.settings import PREFECT_API_URL

    from tests.test_cli import ganpipe

    args = [a for kv in [*base, "train.steps=2"] for a in ("--set", kv)]
    done = ganpipe("retrain", *args, "--summary-json", str(tmp_path / "s.json"),
                   env={"PREFECT_API_URL": PREFECT_API_URL.value()})  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "s.json").read_text())["action"] == "skipped"
    assert "skipped" in done.stdout

    # More data again: by default the challenger starts from the champion (a warm start)
    later = write_demo_dataset(tmp_path / "later", per_style=14, size=32)
    for style_dir in later.iterdir():
        for png in sorted(style_dir.glob("*.png"))[12:]:  # images not in the collection yet
            shutil.copy(png, data / style_dir.name / f"more-{png.name}")
    warm = retrain(config=weak.model_dump(mode="json") | {"train": {
        **weak.model_dump(mode="json")["train"], "init": "auto"}})  # fmt: skip
    assert warm["action"] in ("promoted", "kept"), warm
    trained = json.loads((models / warm["model_version"] / "training.json").read_text())
    assert trained["init"].startswith(str(tmp_path / "store" / "models/demo" /
                                          first["model_version"]))  # fmt: skip


GATE_WITHOUT_PREFECT = """
import json, sys
sys.modules["prefect"] = None  # any import of Prefect now fails
from ganpipe.config import load_config
from ganpipe.domain.model_pointers import champion
from ganpipe.stages.gate import gate
from ganpipe.stages.ingest import ingest
from ganpipe.stages.styles import styles
from ganpipe.store import RunStore
from ganpipe.stages.train import train

overrides = json.loads(sys.argv[1])
cfg = load_config(None, overrides)
store = RunStore.from_config(cfg)
ingest(cfg, store)
styles(cfg, store)
first = train(cfg, store)
opening = gate(cfg, store, first)
weak = load_config(None, [*overrides, "train.steps=2", "train.init=scratch"])
second = train(weak, store)
later = gate(weak, store, second.version)
print(json.dumps({"first": first.version, "second": second.version,
                  "opening": opening.to_dict(), "later": later.to_dict(),
                  "current": champion(cfg, store).folder.rsplit("/", 1)[-1]}))
"""


@pytest.mark.slow
def test_the_gate_runs_from_python_without_prefect(tmp_path):
    """A notebook user gates a model with the stage alone: evaluations, decision, promotion and
    record, with Prefect unimportable."""
    import subprocess
    import sys

    overrides = tiny_overrides(tmp_path / "store", **{"evaluate.per_style": 8,
                                                      "dataset.val_fraction": 0.3})  # fmt: skip
    done = subprocess.run([sys.executable, "-c", GATE_WITHOUT_PREFECT, json.dumps(overrides)],
                          capture_output=True, text=True, timeout=540)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    opening, later = out["opening"], out["later"]
    assert opening["action"] == "promoted" and opening["champion"] is None
    assert later["champion"] == f"demo/{out['first']}" and later["champion_metrics"]
    assert later["challenger_metrics"].keys() == later["champion_metrics"].keys()
    # the pointer follows the decision, and the decision is recorded beside the challenger
    assert out["current"] == (out["second"] if later["action"] == "promoted" else out["first"])
    record = json.loads(
        (tmp_path / "store/models/demo" / out["second"] / "retrain.json").read_text()
    )
    assert record["action"] == later["action"] and record["reasons"] == later["reasons"]
