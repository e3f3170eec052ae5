"""S3 faults against moto's server behind a loopback proxy: throttling (503 SlowDown), server
errors (500), writes cut off mid-body, the server stopped mid-write and started again (its
buckets kept, as a real object store keeps them), and a server that stays down."""

from __future__ import annotations

import pytest
import s3fs

from ganpipe.config import load_config
from ganpipe.errors import GanpipeError
from ganpipe.stages.ingest import ingest
from ganpipe.store import RunStore, StoreUnavailable
from tests.reliability.conftest import ganpipe, s3_store_options, sets


def s3_config(bucket: str, endpoint: str, source, **extra) -> list[str]:
    import json

    options = json.dumps(s3_store_options(endpoint))
    values = {"store.root": f"s3://{bucket}/runs", "store.storage_options": options,
              "dataset.sources": f"[{source}]", "dataset.name": "t", "dataset.image_size": 16,
              "dataset.shard_mb": 0.005, **extra}  # fmt: skip
    return [f"{k}={v}" for k, v in values.items()]


def dataset(store: RunStore):
    fp = store.read_json("datasets/t/latest.json")["fingerprint"]
    manifest = store.read_parquet(f"datasets/t/{fp}/manifest.parquet")
    pixels = [store.read_npy(f"datasets/t/{fp}/{s}").tolist() for s in sorted(set(manifest.shard))]
    return fp, manifest.to_dict("list"), pixels


def leftovers(endpoint: str, bucket: str) -> list[str]:
    """Working files (temporaries, staging folders) anywhere in the bucket."""
    fs = s3fs.S3FileSystem(**s3_store_options(endpoint))
    return [k for k in fs.find(bucket) if ".staging-" in k or ".tmp-" in k]


@pytest.mark.slow
def test_throttling_errors_and_cut_writes_are_retried_and_lose_nothing(moto_proxy, labelled_folder):
    moto, proxy, make_bucket = moto_proxy
    clean, faulty = make_bucket(), make_bucket()
    cfg = load_config(None, s3_config(clean, proxy.endpoint, labelled_folder))
    reference = ingest(cfg, RunStore.from_config(cfg))

    # One store operation at a time first: each fault is absorbed by the client's retries.
    store = RunStore(f"s3://{faulty}/probe", s3_store_options(proxy.endpoint))
    proxy.inject("503", 4)
    store.write_bytes("a.bin", b"a" * 1000)
    proxy.inject("500", 2, method="GET")
    assert store.read_bytes("a.bin") == b"a" * 1000
    proxy.inject("cut", 2, method="PUT")  # the body stops half-way: nothing half-stored
    store.write_bytes("b.bin", bytes(range(256)) * 1000)
    assert store.read_bytes("b.bin") == bytes(range(256)) * 1000

    # Then a whole ingest with faults spread over its requests.
    for after in (0, 8, 16, 22):  # a fault-free ingest makes 31 requests
        proxy.inject("503", 2, after=after)
    proxy.inject("cut", 1, method="PUT", after=2)
    proxy.inject("cut", 1, method="PUT", after=6)
    proxy.inject("500", 2, method="GET", after=3)
    cfg = load_config(None, s3_config(faulty, proxy.endpoint, labelled_folder))
    store = RunStore.from_config(cfg)
    result = ingest(cfg, store)
    assert proxy.pending == 0  # every injected fault was met
    assert result.fingerprint == reference.fingerprint and result.counts == reference.counts
    assert dataset(store) == dataset(RunStore.from_config(load_config(
        None, s3_config(clean, proxy.endpoint, labelled_folder))))  # fmt: skip
    assert leftovers(proxy.endpoint, faulty) == []
    assert proxy.served["503"] == 12 and proxy.served["500"] == 4 and proxy.served["cut"] == 4


@pytest.mark.slow
def test_server_stopped_mid_write_and_restarted_the_flow_task_retries_and_completes(
    moto_proxy, labelled_folder, prefect_harness
):
    from prefect.client.orchestration import get_client

    from ganpipe_flows.pipeline import ingest_task

    moto, proxy, make_bucket = moto_proxy
    bucket = make_bucket()
    cfg = load_config(None, s3_config(bucket, proxy.endpoint, labelled_folder))
    # Moto stops as the third shard upload arrives (that upload fails) and starts 12 s later:
    # far longer than the client's own retries (a few seconds even on a loaded machine), so the
    # ingest task fails and Prefect retries it; its retry delays (2 s, then 10 s) outlast it.
    proxy.inject("stop:12", 1, method="PUT", after=2)
    state = ingest_task(cfg.model_dump(mode="json"), return_state=True)
    assert state.is_completed(), state.message
    with get_client(sync_client=True) as client:
        attempts = client.read_task_run(state.state_details.task_run_id).run_count
    assert attempts >= 2 and proxy.served["stop"] == 1 and proxy.served["refused"] >= 1

    result = state.result()
    store = RunStore.from_config(cfg)
    fp, manifest, _ = dataset(store)
    assert fp == result.fingerprint and len(manifest["id"]) == 12 == result.counts["accepted"]
    assert len(set(manifest["id"])) == 12  # nothing twice
    assert leftovers(proxy.endpoint, bucket) == []  # the failed attempt's staging is swept


def test_a_store_that_stays_down_ends_in_a_clear_message(
    moto_proxy, labelled_folder, prefect_harness, monkeypatch
):
    import ganpipe_flows.pipeline as pipeline_module

    moto, proxy, make_bucket = moto_proxy
    overrides = s3_config(make_bucket(), proxy.endpoint, labelled_folder)
    moto.stop()

    # One stage from the command line: one paragraph, exit code 1, no traceback.
    done = ganpipe("ingest", *sets(overrides), timeout=120)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "could not be reached" in done.stderr and "store.root" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout

    # The pipeline flow: the ingest task is tried three times (short delays here), then the
    # run fails with the same message.
    fast = pipeline_module.ingest_task.with_options(retry_delay_seconds=[0.1, 0.1])
    monkeypatch.setattr(pipeline_module, "ingest_task", fast)
    cfg = load_config(None, overrides)
    state = pipeline_module.pipeline(config=cfg.model_dump(mode="json"), return_state=True)
    assert state.is_failed()
    with pytest.raises(StoreUnavailable) as err:
        state.result()
    assert "could not be reached" in err.value.message and "endpoint" in err.value.fix


def test_a_missing_bucket_is_a_store_error_that_is_not_retried(moto_proxy, prefect_harness):
    from ganpipe_flows.pipeline import _transient

    moto, proxy, _ = moto_proxy
    store = RunStore("s3://no-such-bucket-here/runs", s3_store_options(proxy.endpoint))
    with pytest.raises(GanpipeError) as err:
        store.write_json("x.json", {})
    assert "does not exist" in err.value.message and "create the bucket" in err.value.fix

    class Failed:
        data = err.value

    assert not _transient(None, None, Failed)  # a user error: retrying cannot help
    Failed.data = StoreUnavailable("down")
    assert _transient(None, None, Failed)
