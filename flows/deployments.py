"""Registering ganpipe's Prefect deployments: what ``ganpipe deploy`` does.

It registers what ``deploy/prefect.yaml`` declares through Prefect's own ``prefect deploy``, so
the file means exactly what Prefect's documentation says. Around it, it does what ``prefect
deploy`` leaves to the user and gets wrong silently: the work pool is created first (a Kubernetes
pool from the job template in ``deploy/``, which needs no Kubernetes libraries), ``{{ $VAR }}``
placeholders left unset would be registered as literal text, and a missing API or entrypoint is
one clear error instead of a traceback (docs/architecture.md, "Orchestration").
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ganpipe.errors import GanpipeError

POOL_TYPES = ("process", "kubernetes")
_EXCEPTION_LINE = re.compile(r"^[\w.]+(Error|Exception|Exit)\b(: |$)")
_ENV_PLACEHOLDER = re.compile(r"{{\s*\$(\w+)\s*}}")
_CREATED = re.compile(r"Deployment '[^']+/[^']+' successfully created with id '([0-9a-f-]+)'")


class DeployError(GanpipeError):
    """The deployments cannot be registered: the Prefect file, the API or a work pool."""


@dataclass
class Registered:
    """One deployment as the Prefect API now holds it."""

    flow: str
    name: str
    id: str
    work_pool: str
    schedules: list[str] = field(default_factory=list)

    @property
    def full_name(self) -> str:
        return f"{self.flow}/{self.name}"


@dataclass
class DeployResult:
    api_url: str
    work_pool: str
    pool_created: bool
    deployments: list[Registered]


# Reading the Prefect file --------------------------------------------------------------------


def read_prefect_file(path: Path) -> dict[str, Any]:
    """The Prefect file, checked for what ``prefect deploy`` would otherwise skip with a
    warning (it registers nothing from a file it cannot parse, and still exits 0)."""
    where = str(path)
    if not path.is_file():
        raise DeployError(
            f"Prefect file {path} does not exist",
            where="--prefect-file",
            fix="run ganpipe deploy from the repository root, or pass --prefect-file",
        )
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise DeployError(f"the Prefect file is not valid YAML ({exc})", where=where) from None
    deployments = spec.get("deployments") if isinstance(spec, dict) else None
    if not isinstance(deployments, list) or not deployments:
        raise DeployError(
            "the Prefect file declares no deployments", where=where, fix="add a deployments: list"
        )
    for i, d in enumerate(deployments):
        if not isinstance(d, dict) or not d.get("name") or not d.get("entrypoint"):
            raise DeployError(
                f"deployment #{i + 1} needs a name and an entrypoint (file.py:flow_function)",
                where=f"{where}: deployments[{i}]",
            )
    pools = spec.get("work_pools")
    if not isinstance(pools, dict) or not pools:
        raise DeployError(
            "the Prefect file has no work_pools section naming the pools to deploy to",
            where=where,
            fix="add work_pools: {process: {name: ganpipe-process, type: process}}",
        )
    return spec


def select_deployments(spec: dict[str, Any], names: list[str]) -> list[dict[str, Any]]:
    available = [d["name"] for d in spec["deployments"]]
    unknown = [n for n in names if n not in available]
    if unknown:
        raise DeployError(
            f"no deployment named {', '.join(unknown)} in the Prefect file",
            where="--name",
            fix=f"choose among {', '.join(available)}",
        )
    return [d for d in spec["deployments"] if not names or d["name"] in names]


def check_entrypoints(deployments: list[dict[str, Any]], root: Path) -> None:
    missing = [d for d in deployments if not (root / d["entrypoint"].split(":")[0]).is_file()]
    if missing:
        raise DeployError(
            "entrypoint "
            + ", ".join(f"{d['entrypoint']} (deployment {d['name']})" for d in missing)
            + f" not found under {root}",
            where="deployments[].entrypoint",
            fix="run ganpipe deploy from the repository root (entrypoints are relative to it), "
            "or deploy only the others with --name",
        )


def runtime_variables(spec: dict[str, Any]) -> set[str]:
    """Variables of ``{{ $VAR }}`` in pull steps: they describe the worker (GANPIPE_HOME is
    where *it* keeps the code), so they must reach the deployment unresolved. Prefect fills in
    any that the registering shell happens to have set."""
    pulls = [spec.get("pull"), *(d.get("pull") for d in spec["deployments"])]
    return set(_ENV_PLACEHOLDER.findall(json.dumps(pulls)))


def unset_placeholders(deployments: list[dict[str, Any]]) -> dict[str, list[str]]:
    """``{{ $VAR }}`` in a deployment's parameters whose variable is not set: Prefect would
    register the placeholder itself as the value. Pull steps are left out: they are read on
    the worker when a run starts."""
    missing: dict[str, list[str]] = {}
    for d in deployments:
        text = json.dumps([d.get("parameters"), d.get("work_pool")])
        for var in _ENV_PLACEHOLDER.findall(text):
            if var not in os.environ and d["name"] not in missing.get(var, []):
                missing.setdefault(var, []).append(d["name"])
    return missing


# Talking to Prefect --------------------------------------------------------------------------


def api_url() -> str:
    """The Prefect API the deployments go to; without one Prefect would register them in a
    temporary API that disappears when this command ends."""
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    if not url:
        raise DeployError(
            "PREFECT_API_URL is not set, so there is no Prefect server to register the "
            "deployments with",
            where="PREFECT_API_URL",
            fix="start one (prefect server start, or docker compose in deploy/) and export "
            "PREFECT_API_URL=http://127.0.0.1:4200/api",
        )
    return url


def prefect_client():
    """A synchronous client of the configured API (also used by the GPU flow-run commands)."""
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def check_api(url: str) -> None:
    with prefect_client() as client:
        problem = client.api_healthcheck()
    if problem is not None:
        raise DeployError(
            f"the Prefect API at {url} does not answer ({type(problem).__name__}: {problem})",
            where="PREFECT_API_URL",
            fix="start the server (prefect server start) or correct PREFECT_API_URL",
        )


def pool_template(pool: dict[str, Any], prefect_file: Path) -> dict[str, Any]:
    """The base job template a new pool is created with: the file the Prefect file names, or
    the process worker's default. Other types need their Prefect integration installed."""
    if pool.get("base_job_template"):
        path = prefect_file.parent / pool["base_job_template"]
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise DeployError(
                f"cannot read the base job template of work pool {pool['name']}: {exc}",
                where=f"{prefect_file}: work_pools.{pool['type']}.base_job_template",
            ) from None
    if pool["type"] == "process":
        from prefect.workers.process import ProcessWorker

        return ProcessWorker.get_default_base_job_template()
    integration = f"prefect-{pool['type']}"
    raise DeployError(
        f"work pool {pool['name']} of type {pool['type']} has no base job template",
        where=f"{prefect_file}: work_pools",
        fix=f"name a base_job_template file for it, or pip install {integration} and create the "
        f"pool with prefect work-pool create {pool['name']} --type {pool['type']}",
    )


def ensure_pool(pool: dict[str, Any], prefect_file: Path) -> bool:
    """Create the work pool unless it exists; True if it was created. A pool of another type
    under the same name is an error: runs would land on the wrong kind of infrastructure."""
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with prefect_client() as client:
        try:
            existing = client.read_work_pool(pool["name"])
        except ObjectNotFound:
            existing = None
        if existing is not None:
            if existing.type != pool["type"]:
                raise DeployError(
                    f"work pool {pool['name']} exists with type {existing.type}, "
                    f"not {pool['type']}",
                    where=str(prefect_file),
                    fix=f"delete it (prefect work-pool delete {pool['name']}) or rename the "
                    "pool in the Prefect file",
                )
            return False
        template = pool_template(pool, prefect_file)
        try:
            client.create_work_pool(
                WorkPoolCreate(name=pool["name"], type=pool["type"], base_job_template=template)
            )
        except ObjectAlreadyExists:  # a worker starting at the same moment created it
            return False
    return True


def register(
    prefect_file: Path, name: str, pool: str, root: Path, url: str, keep: set[str] = frozenset()
) -> str:
    """One deployment through ``prefect deploy``; returns its id.
    Variables in ``keep`` are hidden from it so their placeholders stay for the worker."""
    command = [
        sys.executable, "-m", "prefect", "--no-prompt", "deploy",
        "--prefect-file", str(prefect_file.resolve()), "--name", name, "--pool", pool,
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in keep}
    env.update(PREFECT_API_URL=url, COLUMNS="300", PREFECT_CLI_PROMPT="false")
    done = subprocess.run(
        command, cwd=root, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    output = done.stdout + done.stderr
    found = _CREATED.search(output)
    if done.returncode != 0 or not found:
        raise DeployError(
            f"prefect deploy did not register deployment {name}: {_reason(output)}",
            where=f"{prefect_file}: deployment {name}",
            fix="correct what Prefect names above; rerun with --name to register only some",
        )
    return found.group(1)


def _reason(output: str) -> str:
    """Prefect's own words: the exception line of a traceback, else its last lines."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if _EXCEPTION_LINE.match(line)]
    if not errors:
        return " ".join(lines[-8:]) or "no output"
    kind, _, message = errors[-1].partition(": ")
    kind = kind.rsplit(".", 1)[-1]  # MissingFlowError, not prefect.exceptions.MissingFlowError
    return f"{kind}: {message}" if message else kind


def read_back(deployment_id: str) -> Registered:
    """The deployment as the API holds it: proof it was registered, not just printed."""
    from uuid import UUID

    with prefect_client() as client:
        d = client.read_deployment(UUID(deployment_id))
        flow = client.read_flow(d.flow_id)
    schedules = [getattr(s.schedule, "cron", None) or str(s.schedule) for s in d.schedules]
    return Registered(flow.name, d.name, str(d.id), d.work_pool_name or "", schedules)


def deploy(
    prefect_file: Path,
    pool_type: str = "process",
    names: list[str] | None = None,
    root: Path | None = None,
    progress=None,
) -> DeployResult:
    """Create the work pool of ``pool_type`` if missing and register the deployments (all, or
    those in ``names``) on it. ``root`` is where entrypoints are found (default: the current
    directory)."""
    root = (root or Path.cwd()).resolve()
    spec = read_prefect_file(prefect_file)
    pool = spec["work_pools"].get(pool_type)
    if not isinstance(pool, dict) or not pool.get("name"):
        raise DeployError(
            f"the Prefect file defines no {pool_type} work pool",
            where=f"{prefect_file}: work_pools",
            fix=f"add work_pools.{pool_type} with a name and type, or pick another --pool-type",
        )
    pool = {"type": pool_type, **pool}
    chosen = select_deployments(spec, names or [])
    check_entrypoints(chosen, root)
    unset = unset_placeholders(chosen)
    if unset:
        raise DeployError(
            "environment variables the deployments' parameters refer to are not set: "
            + "; ".join(f"{var} (used by {', '.join(ds)})" for var, ds in unset.items()),
            where=str(prefect_file),
            fix="export them before ganpipe deploy, e.g. export GANPIPE_STORE_ROOT=s3://bucket/"
            "runs or a folder on the worker",
        )
    url = api_url()
    check_api(url)
    created = ensure_pool(pool, prefect_file)
    registered = []
    for d in chosen:
        if progress:
            progress(f"registering {d['name']} ({d['entrypoint']}) on {pool['name']}")
        deployment_id = register(
            prefect_file, d["name"], pool["name"], root, url, runtime_variables(spec)
        )
        registered.append(read_back(deployment_id))
    return DeployResult(url, pool["name"], created, registered)
