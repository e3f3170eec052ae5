"""What deploy/ holds, checked without a server or Docker: the Prefect file as Prefect reads it,
``ganpipe deploy``'s errors, the Kubernetes job template as the worker renders it, and the
compose file and Dockerfile as Docker would read them (no image is built here)."""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"


def spec() -> dict:
    return yaml.safe_load((DEPLOY / "prefect.yaml").read_text())


def ganpipe_deploy(*args, cwd=REPO, **env) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("GANPIPE_STORE")}
    base.pop("PREFECT_API_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "ganpipe", "deploy", *args],
        cwd=cwd, env={**base, **env}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


# The Prefect file ------------------------------------------------------------------------------


def test_prefect_yaml_parses_and_every_entrypoint_imports():
    for deployment in spec()["deployments"]:
        path, name = deployment["entrypoint"].split(":")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        flow = getattr(module, name)
        assert hasattr(flow, "deploy"), f"{deployment['entrypoint']} is not a Prefect flow"


def test_prefect_reads_every_deployment_with_a_valid_config_and_schedule():
    from prefect.cli.deploy._models import PrefectYamlModel
    from prefect.client.schemas.schedules import CronSchedule

    from ganpipe.config import validate_config

    raw = spec()
    # Prefect skips a file it cannot validate (with a warning, exit code 0): it must validate.
    model = PrefectYamlModel.model_validate(raw)
    by_name = {d.name: d for d in model.deployments}
    assert set(by_name) == {"pipeline", "retrain-paintings", "retrain-photos", "generate-batch"}
    process_pool = raw["work_pools"]["process"]["name"]
    assert raw["work_pools"]["kubernetes"] == {
        "name": "ganpipe-k8s",
        "type": "kubernetes",
        "base_job_template": "k8s-gpu-job-template.json",
    }
    datasets = set()
    for d in model.deployments:
        assert d.work_pool.name == process_pool
        filled = json.loads(
            json.dumps(d.parameters["config"])
            .replace("{{ $GANPIPE_STORE_ROOT }}", "s3://bucket/runs")
            .replace("{{ $GANPIPE_DATA_ROOT }}", "s3://bucket/datasets")
        )
        cfg = validate_config(filled, f"deployment {d.name}")
        assert cfg.store.root == "s3://bucket/runs"
        if d.name.startswith("retrain-"):
            assert d.entrypoint == "flows/retrain.py:retrain"
            (schedule,) = d.schedules
            CronSchedule(cron=schedule.cron, timezone=schedule.timezone)  # a valid cron
            assert cfg.dataset.sources[0].startswith("s3://bucket/datasets/")
            datasets.add(cfg.dataset.name)
        else:
            assert not d.schedules  # on demand
    assert datasets == {"paintings", "photos"}
    assert by_name["generate-batch"].parameters["model"] == "current"


def test_deploy_refuses_parameters_whose_variables_are_unset():
    done = ganpipe_deploy("--name", "retrain-paintings", "--name", "pipeline")
    assert done.returncode == 1
    assert "GANPIPE_STORE_ROOT (used by pipeline, retrain-paintings)" in done.stderr
    assert "GANPIPE_DATA_ROOT (used by retrain-paintings)" in done.stderr
    assert "Traceback" not in done.stderr


def test_deploy_names_prefect_api_url_when_no_server_answers(tmp_path):
    done = ganpipe_deploy(
        "--name", "pipeline", GANPIPE_STORE_ROOT="runs", PREFECT_HOME=str(tmp_path),
        PREFECT_API_URL="http://127.0.0.1:9/api",
    )  # fmt: skip
    assert done.returncode == 1
    assert "http://127.0.0.1:9/api does not answer" in done.stderr
    assert "PREFECT_API_URL" in done.stderr


def test_deploy_without_a_server_url_says_so(tmp_path):
    done = ganpipe_deploy(
        "--name", "pipeline", GANPIPE_STORE_ROOT="runs", PREFECT_HOME=str(tmp_path)
    )
    assert done.returncode == 1
    assert "PREFECT_API_URL is not set" in done.stderr


def test_deploy_lists_the_deployments_when_a_name_is_unknown():
    done = ganpipe_deploy("--name", "pipelin")
    assert done.returncode == 1
    assert "no deployment named pipelin" in done.stderr
    assert "pipeline, retrain-paintings, retrain-photos, generate-batch" in done.stderr


def test_deploy_finds_entrypoints_from_the_repository_root_only(tmp_path):
    prefect_file = str(DEPLOY / "prefect.yaml")
    done = ganpipe_deploy("--prefect-file", prefect_file, "--name", "pipeline", cwd=tmp_path)
    assert done.returncode == 1
    assert "flows/pipeline.py:pipeline (deployment pipeline) not found under" in done.stderr
    assert "repository root" in done.stderr


def test_gpu_job_command_outside_a_flow_run_says_what_it_needs():
    env = {k: v for k, v in os.environ.items() if k != "PREFECT__FLOW_RUN_ID"}
    done = subprocess.run(
        [sys.executable, "-m", "ganpipe_flows.deploy", "flow-run"], env=env, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1 and "PREFECT__FLOW_RUN_ID is not set" in done.stderr


# The Kubernetes GPU job template ---------------------------------------------------------------


def k8s_template() -> dict:
    return json.loads((DEPLOY / "k8s-gpu-job-template.json").read_text())


def test_k8s_template_uses_only_declared_variables():
    template = k8s_template()
    used = set(re.findall(r"{{\s*(\w+)\s*}}", json.dumps(template["job_configuration"])))
    declared = set(template["variables"]["properties"])
    assert used <= declared, f"undeclared: {used - declared}"
    assert {"gpus", "image", "env", "command", "s3_secret"} <= used


def test_k8s_template_renders_a_gpu_job():
    from prefect.utilities.templating import apply_values

    template = k8s_template()
    defaults = {k: v["default"] for k, v in template["variables"]["properties"].items()
                if "default" in v}  # fmt: skip
    job = apply_values(template["job_configuration"], {**defaults, "gpus": 4})
    (container,) = job["job_manifest"]["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 4
    assert container["args"] == job["command"] == "python -m ganpipe_flows.deploy flow-run"
    assert container["image"] == "ganpipe-worker:cu124"
    assert container["env"]["PREFECT_API_URL"].endswith(":4200/api")
    assert container["env"]["GANPIPE_HOME"] == "/opt/ganpipe"
    assert container["envFrom"] == [{"secretRef": {"name": "ganpipe-s3", "optional": True}}]
    assert {"name": "dshm", "mountPath": "/dev/shm"} in container["volumeMounts"]  # NCCL


def test_k8s_template_is_a_valid_kubernetes_worker_job():
    """With prefect-kubernetes installed, the worker's own configuration class accepts it."""
    pytest.importorskip("prefect_kubernetes")
    import asyncio
    import uuid

    from prefect.client.schemas.objects import FlowRun
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

    async def render():
        return await KubernetesWorkerJobConfiguration.from_template_and_values(
            k8s_template(), {"gpus": 2}
        )

    # The template has no Prefect variables or blocks to look up: no API is contacted.
    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        job = asyncio.run(render())
    job.prepare_for_flow_run(FlowRun(id=uuid.uuid4(), name="run", flow_id=uuid.uuid4()))
    (container,) = job.job_manifest["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["python", "-m", "ganpipe_flows.deploy", "flow-run"]
    assert any(e["name"] == "PREFECT__FLOW_RUN_ID" for e in container["env"])
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 2


# docker-compose.yml, the Dockerfile and .dockerignore ------------------------------------------


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def test_compose_services_wait_for_what_they_need():
    services = compose()["services"]
    assert set(services) == {
        "postgres", "prefect-server", "minio", "create-bucket", "deploy", "worker",
    }  # fmt: skip
    for name, service in services.items():
        for target, rule in service.get("depends_on", {}).items():
            assert target in services, f"{name} depends on unknown {target}"
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in services[target], f"{target} has no healthcheck"
            else:
                assert rule["condition"] == "service_completed_successfully"
                assert services[target].get("restart") == "no", f"{target} is not one-shot"
    assert (
        "postgresql+asyncpg://"
        in (services["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"])
    )
    assert services["deploy"]["command"][:2] == ["ganpipe", "deploy"]
    assert set(services["worker"]["depends_on"]) == {"prefect-server", "create-bucket", "deploy"}


def test_compose_worker_uses_the_bucket_through_environment_variables():
    services = compose()["services"]
    worker, deployer = services["worker"]["environment"], services["deploy"]["environment"]
    for env in (worker, deployer):
        assert env["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"} <= set(worker)
    assert worker["AWS_ENDPOINT_URL"] == "http://minio:9000"
    bucket = services["create-bucket"]["environment"]["GANPIPE_BUCKET"]
    assert deployer["GANPIPE_STORE_ROOT"] == f"s3://{bucket}/runs"
    assert deployer["GANPIPE_DATA_ROOT"] == f"s3://{bucket}/datasets"
    # The pool the image's worker polls is the one ganpipe deploy registers on.
    cmd = json.loads(re.search(r"^CMD (.+)$", dockerfile(), re.M).group(1))
    assert cmd[:3] == ["prefect", "worker", "start"]
    assert cmd[cmd.index("--pool") + 1] == spec()["work_pools"]["process"]["name"]


def test_compose_holds_no_credentials_and_documents_every_variable():
    text = (DEPLOY / "docker-compose.yml").read_text()
    secretish = re.compile(r"(PASSWORD|SECRET|ACCESS_KEY|ROOT_USER)", re.I)
    for service in compose()["services"].values():
        for key, value in service.get("environment", {}).items():
            if secretish.search(key):
                assert str(value).startswith("${"), f"{key} has a literal value"
    url = compose()["services"]["prefect-server"]["environment"]
    assert ":${POSTGRES_PASSWORD" in url["PREFECT_API_DATABASE_CONNECTION_URL"]
    used = set(re.findall(r"(?<!\$)\$\{(\w+)", text))
    example = (DEPLOY / ".env.example").read_text()
    documented = set(re.findall(r"^(\w+)=", example, re.M))
    assert used == documented, f"used but not in .env.example: {used - documented}"
    assert re.search(r"^POSTGRES_PASSWORD=$", example, re.M)  # no password shipped


def dockerfile() -> str:
    return (DEPLOY / "Dockerfile").read_text()


def test_dockerfile_copies_only_what_exists_and_is_in_the_build_context():
    ignored = (REPO / ".dockerignore").read_text().split()
    copies = re.findall(r"^COPY (.+)$", dockerfile(), re.M)
    assert copies
    for line in copies:
        *sources, _dest = line.split()
        for source in sources:
            assert (REPO / source).exists(), f"COPY source {source} does not exist"
            assert source not in ignored, f"COPY source {source} is in .dockerignore"
    assert {"**/.env", "**/.venv", ".git"} <= set(ignored)
    # The flows are copied where GANPIPE_HOME (the deployments' pull step) points.
    home = re.search(r"GANPIPE_HOME=(\S+)", dockerfile()).group(1)
    assert re.search(rf"^WORKDIR {home}$", dockerfile(), re.M)


def test_dockerfile_picks_the_torch_build_and_runs_as_a_user():
    text = dockerfile()
    assert re.search(r"^ARG TORCH_VARIANT=cpu$", text, re.M)
    assert "download.pytorch.org/whl/${TORCH_VARIANT}" in text
    assert "./plugins/*/" in text  # the plugin packages are installed
    (user,) = re.findall(r"^USER (\S+)$", text, re.M)
    assert user not in {"root", "0"}
