"""The deployments of deploy/prefect.yaml on a real Prefect server, as an operator runs them:
registered with ``ganpipe deploy``, picked up by a real process worker (and, for the Kubernetes
pool, run with the GPU job's command), results read back through the Prefect API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from uuid import UUID

import pytest
import yaml

from ganpipe.config import load_config
from tests.conftest import stop_process_group, tiny_overrides

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def env(prefect_server, tmp_path_factory):
    """What a worker machine has: the API URL, the checkout (GANPIPE_HOME), its own home."""
    home = tmp_path_factory.mktemp("prefect-client")
    return {
        **os.environ,
        "PREFECT_API_URL": prefect_server,
        "PREFECT_HOME": str(home),
        "GANPIPE_HOME": str(REPO),
        "GANPIPE_STORE_ROOT": str(home / "default-store"),
        "PREFECT_WORKER_QUERY_SECONDS": "1",
    }


@pytest.fixture(scope="module")
def client(prefect_server):
    from prefect.client.orchestration import SyncPrefectClient

    with SyncPrefectClient(prefect_server) as c:
        yield c


def ganpipe_deploy(env, *args) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "ganpipe", "deploy", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def tiny_config(root: Path, **extra) -> dict:
    return load_config(None, tiny_overrides(root, **{"train.steps": 30, **extra})).model_dump(
        mode="json"
    )


def wait_final(client, flow_run_id: UUID, timeout: float = 300):
    deadline = time.monotonic() + timeout
    while True:
        state = client.read_flow_run(flow_run_id).state
        if state is not None and state.is_final():
            return state
        assert time.monotonic() < deadline, f"flow run still {state.name} after {timeout} s"
        time.sleep(1)


def test_pipeline_deployment_runs_on_a_process_worker(env, client, tmp_path):
    out = ganpipe_deploy(env, "--name", "pipeline")
    assert "ganpipe-pipeline/pipeline" in out and "ganpipe-process" in out
    deployment = client.read_deployment_by_name("ganpipe-pipeline/pipeline")
    assert deployment.work_pool_name == "ganpipe-process"
    # {{ $GANPIPE_STORE_ROOT }} was filled in at registration, GANPIPE_HOME is left to the worker.
    assert deployment.parameters["config"]["store"]["root"] == env["GANPIPE_STORE_ROOT"]
    assert "{{ $GANPIPE_HOME }}" in json.dumps(deployment.pull_steps)

    log = tmp_path / "worker.log"
    with open(log, "w") as fh:
        worker = subprocess.Popen(
            [sys.executable, "-m", "prefect", "worker", "start", "--pool", "ganpipe-process",
             "--type", "process"],
            cwd=tmp_path, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        store = tmp_path / "store"
        run = client.create_flow_run_from_deployment(
            deployment.id, parameters={"config": tiny_config(store)}
        )
        state = wait_final(client, run.id)
        assert state.is_completed(), f"{state.name}: {state.message}\n{log.read_text()[-4000:]}"
    finally:
        stop_process_group(worker)

    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    artifacts = {
        a.key: a
        for a in client.read_artifacts(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id]))
        )
    }
    assert {"ganpipe-run-figures", "ganpipe-run-summary"} <= set(artifacts)
    table = artifacts["ganpipe-run-figures"].data
    figures = {
        row["figure"]: row["value"]
        for row in (json.loads(table) if isinstance(table, str) else table)
    }
    assert figures["inputs"] == 72 and figures["styles"] == 6 and figures["train_steps"] == 30
    assert figures["generated"] == 24
    summary = artifacts["ganpipe-run-summary"].data
    report = summary.split("- report: `", 1)[1].split("`", 1)[0]
    assert Path(report).is_file() and Path(report).is_relative_to(store)
    assert "of 24 samples" in summary


def test_gpu_job_command_trains_on_two_ranks_in_one_flow_run(env, client, tmp_path):
    """The Kubernetes pool registers without Kubernetes libraries; its job command, run here
    as the pod would run it (two CPU ranks standing in for two GPUs), trains data-parallel
    inside the flow run, and leaves at once when the flow run does not train."""
    out = ganpipe_deploy(env, "--name", "pipeline", "--pool-type", "kubernetes")
    assert "ganpipe-k8s" in out
    pool = client.read_work_pool("ganpipe-k8s")
    template = json.loads((REPO / "deploy/k8s-gpu-job-template.json").read_text())
    assert pool.type == "kubernetes" and pool.base_job_template == template
    deployment = client.read_deployment_by_name("ganpipe-pipeline/pipeline")
    assert deployment.work_pool_name == "ganpipe-k8s"

    ranks = tmp_path / "ranks"
    ranks.mkdir()
    config = tiny_config(tmp_path / "store", plugins="[tests.fixture_plugins.ranks]")
    pod_env = {**env, "GPUS": "2", "GANPIPE_TEST_RANK_DIR": str(ranks)}
    command = template["variables"]["properties"]["command"]["default"].split()
    assert command[1:] == ["-m", "ganpipe_flows.deploy", "flow-run"]

    def run_pod():
        run = client.create_flow_run_from_deployment(deployment.id, parameters={"config": config})
        pod = subprocess.run(
            [sys.executable, *command[1:]], cwd=REPO, capture_output=True, text=True,
            env={**pod_env, "PREFECT__FLOW_RUN_ID": str(run.id)}, timeout=300,
        )  # fmt: skip
        assert pod.returncode == 0, pod.stdout[-3000:] + pod.stderr[-3000:]
        state = client.read_flow_run(run.id).state
        assert state.is_completed(), state.message
        return pod.stdout + pod.stderr

    first = run_pod()
    assert "training data-parallel under torchrun" in first
    weights = {r: (ranks / f"weights-{r}.txt").read_text() for r in (0, 1)}
    assert weights[0] == weights[1]  # rank 1 trained in step with the flow run's rank 0

    # Same data, same config: the model is reused, so rank 1 has nothing to join and leaves.
    for f in ranks.iterdir():
        f.unlink()
    started = time.monotonic()
    second = run_pod()
    assert "without training here" in second
    assert not list(ranks.iterdir())
    assert time.monotonic() - started < 120


def test_every_deployment_registers_with_its_schedule_and_dataset(env, client):
    out = ganpipe_deploy({**env, "GANPIPE_DATA_ROOT": "s3://bucket/datasets"})
    assert "work pool ganpipe-process" in out
    registered = {}
    for flow, name in [("ganpipe-pipeline", "pipeline"), ("ganpipe-retrain", "retrain-paintings"),
                       ("ganpipe-retrain", "retrain-photos"),
                       ("ganpipe-generate-batch", "generate-batch")]:  # fmt: skip
        registered[name] = d = client.read_deployment_by_name(f"{flow}/{name}")
        assert d.work_pool_name == "ganpipe-process" and f"{flow}/{name}" in out
    crons = {n: [s.schedule.cron for s in d.schedules] for n, d in registered.items()}
    assert crons == {"pipeline": [], "retrain-paintings": ["0 2 * * *"],
                     "retrain-photos": ["0 3 * * 0"], "generate-batch": []}  # fmt: skip
    for name in ("retrain-paintings", "retrain-photos"):
        config = registered[name].parameters["config"]
        assert config["dataset"]["sources"] == [f"s3://bucket/datasets/{name.split('-')[1]}"]
        assert config["store"]["root"] == env["GANPIPE_STORE_ROOT"]
    assert registered["generate-batch"].parameters["model"] == "current"


def test_deploy_reports_what_prefect_refused(env, tmp_path):
    """A deployment Prefect cannot register is one paragraph naming it and Prefect's reason."""
    raw = yaml.safe_load((REPO / "deploy/prefect.yaml").read_text())
    raw["deployments"][0]["entrypoint"] = "flows/pipeline.py:no_such_flow"
    bad = tmp_path / "prefect.yaml"
    bad.write_text(yaml.safe_dump(raw))
    done = subprocess.run(
        [sys.executable, "-m", "ganpipe", "deploy", "--prefect-file", str(bad), "--name",
         "pipeline"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "did not register deployment pipeline" in done.stderr
    assert "no_such_flow" in done.stderr
    assert "Traceback" not in done.stderr, done.stderr
