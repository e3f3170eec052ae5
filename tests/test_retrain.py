"""Scheduled retraining: skip unchanged data, gate new models against the current one."""

import json
import shutil
from pathlib import Path

import pytest

from ganpipe.config import load_config
from ganpipe.data.demo import write_demo_dataset
from ganpipe.errors import ConfigError, StoreError
from ganpipe.generation.models import champion, current_model, promote
from ganpipe.stages.gate import decide
from ganpipe.store import RunStore
from tests.conftest import tiny_overrides

HIGHER = {"fd": False, "coverage": True}


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
    assert promote(store, "demo", "v-1", expected=None)
    assert not promote(store, "demo", "v-2", expected=None)  # someone promoted meanwhile
    assert champion(tiny_config, store).folder == "models/demo/v-1"
    assert current_model(tiny_config, store) == champion(tiny_config, store)


@pytest.mark.slow
def test_retrain_skips_unchanged_data_and_gates_new_models(tmp_path, prefect_harness):
    from flows.retrain import retrain

    data = write_demo_dataset(tmp_path / "data", per_style=10, size=32)
    base = tiny_overrides(tmp_path / "store", **{"dataset.sources": f"[{data}]",
                                                 "evaluate.per_style": 12})  # fmt: skip
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
    weak = load_config(None, [*base, "train.steps=2"])
    decided = retrain(config=weak.model_dump(mode="json"))
    assert decided["dataset_fingerprint"] != first["dataset_fingerprint"]
    assert decided["action"] == "kept" and decided["champion"].endswith(first["model_version"])
    assert decided["challenger_metrics"]["fd"] > decided["champion_metrics"]["fd"]
    assert store.read_text("models/demo/current").strip() == first["model_version"]
    record = json.loads(
        (tmp_path / "store" / "models/demo" / decided["model_version"] / "retrain.json").read_text()
    )
    assert record["action"] == "kept" and record["champion_metrics"]

    # The command line records the decision for scripts; this data has a model now.
    from prefect.settings import PREFECT_API_URL

    from tests.test_cli import ganpipe

    args = [a for kv in [*base, "train.steps=2"] for a in ("--set", kv)]
    done = ganpipe("retrain", *args, "--summary-json", str(tmp_path / "s.json"),
                   env={"PREFECT_API_URL": PREFECT_API_URL.value()})  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "s.json").read_text())["action"] == "skipped"
    assert "skipped" in done.stdout
