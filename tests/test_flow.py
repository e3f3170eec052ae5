"""The pipeline as a real Prefect flow run, under one session-scoped Prefect test API."""

import json
from pathlib import Path

import numpy as np
import pytest

from ganpipe.config import load_config
from ganpipe.store import RunStore
from tests.conftest import tiny_overrides

pytestmark = pytest.mark.slow


def test_pipeline_flow_end_to_end(tmp_path, prefect_harness):
    from prefect.client.orchestration import get_client

    from ganpipe_flows.pipeline import pipeline

    cfg = load_config(None, tiny_overrides(tmp_path / "store", **{"train.steps": 80}))
    state = pipeline(config=cfg.model_dump(mode="json"), return_state=True)
    assert state.is_completed()
    summary = state.result()
    assert set(summary) == {
        "dataset_fingerprint",
        "model_uri",
        "batch_uri",
        "report_uri",
        "metrics",
        "counts",
        "train",
    }
    counts = summary["counts"]
    assert counts["inputs"] == 72 == counts["accepted"] + counts["rejected"]
    assert counts["styles"] == 6 and counts["generated"] == 24 and counts["train_steps"] == 80
    assert summary["train"]["seconds"] > 0 and summary["train"]["images_per_second"] > 0

    store = RunStore.from_config(cfg)
    fp = summary["dataset_fingerprint"]
    dataset = store.read_parquet(f"datasets/demo/{fp}/manifest.parquet")
    assert len(dataset) == 72 and dataset["label"].nunique() == 6
    batch = summary["batch_uri"].rsplit("/", 1)[1]
    manifest = store.read_parquet(f"batches/{batch}/manifest.parquet")
    assert len(manifest) == 24 and manifest["kept"].sum() == counts["kept"]
    assert set(manifest["style"]) == {f"style-{i}" for i in range(6)}
    for folder in [f"datasets/demo/{fp}", summary["model_uri"], summary["batch_uri"]]:
        rel = folder.replace(str(store.root) + "/", "")
        assert "train:" in store.read_text(f"{rel}/config.yaml")  # resolved config beside it
    with open(summary["report_uri"]) as fh:
        assert fh.read().count('<section class="style">') == 6

    # Samples of different styles differ: compare one seed rendered in every style.
    from ganpipe.stages.filter import load_batch_images

    images = load_batch_images(store, f"batches/{batch}", manifest["path"])
    same_seed = images[np.flatnonzero(manifest["seed"] == 0)]
    gaps = (same_seed[:, None] - same_seed[None]).abs().mean(dim=(2, 3, 4))
    assert float(gaps[gaps > 0].min()) > 0.1

    # The run's figures are published as artifacts.
    import asyncio

    async def artifacts():
        async with get_client() as client:
            return await client.read_artifacts()

    keys = {a.key for a in asyncio.run(artifacts())}
    assert {"ganpipe-run-figures", "ganpipe-run-summary"} <= keys
    json.dumps(summary)  # the summary is plain JSON

    # A second run does no work: every stage after ingestion comes from the cache.
    state = pipeline(config=cfg.model_dump(mode="json"), return_state=True)
    again = state.result()
    assert again["dataset_fingerprint"] == fp and again["batch_uri"] == summary["batch_uri"]
    states = task_states(state.state_details.flow_run_id)
    assert {states[s] for s in ("styles", "train", "generate", "filter", "report")} == {"Cached"}

    # A deleted output is not trusted from the cache: its stage runs again.
    report_path = Path(summary["report_uri"])
    report_path.unlink()
    state = pipeline(config=cfg.model_dump(mode="json"), return_state=True)
    assert report_path.exists() and state.result()["metrics"] == summary["metrics"]
    states = task_states(state.state_details.flow_run_id)
    assert states["report"] == "Completed" and states["filter"] == "Cached"


def task_states(flow_run_id) -> dict[str, str]:
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async def read():
        async with get_client() as client:
            return await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )

    return {run.name.rsplit("-", 1)[0]: run.state.name for run in asyncio.run(read())}


def test_outside_plugins_selected_by_name_in_a_pipeline_run(tmp_path, prefect_harness):
    """The installed plugin packages in plugins/ (a style encoder and a loss), chosen in config."""
    from ganpipe_flows.pipeline import pipeline

    cfg = load_config(
        None,
        tiny_overrides(tmp_path / "store", **{"train.steps": 20})
        + ["style.encoder=colour_histogram", "train.loss=relativistic"],
    )
    summary = pipeline(config=cfg.model_dump(mode="json"))
    store = RunStore.from_config(cfg)
    fp = summary["dataset_fingerprint"]
    assert store.exists(f"styles/{fp}/colour_histogram/styles.parquet")
    model = summary["model_uri"].replace(str(store.root) + "/", "")
    saved = store.read_text(f"{model}/config.yaml")
    assert "loss: relativistic" in saved and "encoder: colour_histogram" in saved
    assert summary["counts"]["generated"] == 24
