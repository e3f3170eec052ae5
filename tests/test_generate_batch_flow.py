"""Production batches through Prefect: chunked into tasks, on threads or on a Dask cluster."""

import pytest

from ganpipe.config import load_config
from ganpipe.store import RunStore
from tests.conftest import tiny_overrides, train_tiny_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("batchflow") / "store"
    return train_tiny_model(root)


def test_a_batch_is_a_few_chunk_tasks_and_reruns_write_nothing(trained, tmp_path,
                                                                 prefect_harness):  # fmt: skip
    from ganpipe_flows.generate_batch import generate_batch
    from tests.test_flow import task_states

    cfg = load_config(None, tiny_overrides(trained, **{"generate.chunk_size": 10}))
    out = str(tmp_path / "delivery")
    state = generate_batch(config=cfg.model_dump(mode="json"), counts={"style-2": 12},
                           filters=["style_match", "sharpness"], out=out,
                           return_state=True)  # fmt: skip
    summary = state.result()
    # 5 styles x 4 + 12 = 32 images, in chunks of 10: 4 chunk tasks
    assert summary["chunks"] == 4 and summary["counts"]["generated"] == 32
    assert summary["counts"]["written"] == 32
    batch = RunStore(out)
    manifest = batch.read_parquet(f"batches/{summary['batch_id']}/manifest.parquet")
    assert (manifest["style"] == "style-2").sum() == 12
    assert {"style_match", "sharpness"} <= set(manifest.columns)
    assert "realism" not in manifest.columns
    assert batch.exists(f"batches/{summary['batch_id']}/report.html")

    again = generate_batch(config=cfg.model_dump(mode="json"), counts={"style-2": 12},
                           filters=["style_match", "sharpness"], out=out)  # fmt: skip
    assert again["batch_id"] == summary["batch_id"] and again["counts"]["written"] == 0
    names = task_states(state.state_details.flow_run_id)
    assert "assemble-batch" in names and "filter-batch" in names


def test_dask_cluster_gives_the_same_manifest_as_threads(trained, tmp_path, prefect_harness,
                                                         monkeypatch):  # fmt: skip
    from distributed import LocalCluster
    from prefect.settings import PREFECT_API_URL

    from ganpipe_flows.generate_batch import generate_batch

    cfg = load_config(None, tiny_overrides(trained, **{"generate.chunk_size": 6}))
    threads = generate_batch(config=cfg.model_dump(mode="json"), out=str(tmp_path / "threads"))
    # Dask's worker processes report their task runs to the same Prefect API.
    monkeypatch.setenv("PREFECT_API_URL", PREFECT_API_URL.value())
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None, host="127.0.0.1") as cluster:  # fmt: skip
        dask_cfg = load_config(None, tiny_overrides(trained, **{
            "generate.chunk_size": 6, "orchestration.task_runner": "dask",
            "orchestration.dask_address": cluster.scheduler_address}))  # fmt: skip
        on_dask = generate_batch(config=dask_cfg.model_dump(mode="json"),
                                 out=str(tmp_path / "dask"))  # fmt: skip
    assert on_dask["batch_id"] == threads["batch_id"] and on_dask["chunks"] == 4
    a = RunStore(str(tmp_path / "threads")).read_parquet(
        f"batches/{threads['batch_id']}/manifest.parquet")  # fmt: skip
    b = RunStore(str(tmp_path / "dask")).read_parquet(
        f"batches/{on_dask['batch_id']}/manifest.parquet")  # fmt: skip
    assert a.equals(b)
    for path in a["path"]:
        assert (tmp_path / "threads" / "batches" / threads["batch_id"] / path).read_bytes() == (
            tmp_path / "dask" / "batches" / on_dask["batch_id"] / path
        ).read_bytes()
