"""Shared fixtures: an isolated Prefect home, a tiny config, tiny image folders."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# Isolate Prefect and the demo cache before anything imports them.
_HOME = tempfile.mkdtemp(prefix="ganpipe-tests-")
os.environ["PREFECT_HOME"] = os.path.join(_HOME, "prefect")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "90"
os.environ["GANPIPE_CACHE"] = os.path.join(_HOME, "cache")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
FAST = os.environ.get("GANPIPE_TEST_FAST") == "1"  # `make test-fast`: nothing that trains


@pytest.fixture(scope="session", autouse=True)
def _no_training_in_fast_runs():
    """Under ``make test-fast`` a test that would train a model in this process is skipped at
    the moment it starts training (session-scoped, so before any fixture trains); end-to-end
    tests that train in subprocesses are marked ``slow`` and deselected."""
    if not FAST:
        yield
        return
    from ganpipe.training.trainer import Trainer

    def refuse(self):
        pytest.skip("trains a model: left to 'make test'")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Trainer, "fit", refuse)
        yield


@pytest.fixture(scope="session")
def prefect_harness():
    """One Prefect test API for the whole session (its cold start costs ~15 s)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """A real Prefect server on 127.0.0.1 with its own home and SQLite database; its API URL.

    Subprocesses reach it through PREFECT_API_URL in their own environment (this process keeps
    the test harness's settings)."""
    import socket
    import subprocess
    import sys
    import time

    import httpx

    home = tmp_path_factory.mktemp("prefect-server")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_API_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{home}/prefect.db",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_UI_ENABLED="false",
    )
    log = home / "server.log"
    with open(log, "w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
             "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the Prefect server did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        stop_process_group(server)


def stop_process_group(proc, grace: float = 20) -> None:
    """Stop a subprocess started with ``start_new_session=True`` and everything it started."""
    import signal
    import subprocess

    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:  # the whole group has already exited
        return
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def tiny_overrides(root: Path, **extra) -> list[str]:
    """A config small enough to train in seconds: 16 px, 6 demo styles x 12 images."""
    values = {
        "store.root": str(root),
        "dataset.image_size": 16,
        "dataset.demo_per_style": 12,
        "style.num_styles": 6,
        "train.steps": 60,
        "train.batch_size": 24,
        "train.checkpoint_every": 30,
        "train.log_every": 10,
        "train.max_minutes": "null",
        "generate.per_style": 4,
    }
    values.update(extra)
    return [f"{k}={v}" for k, v in values.items()]


def prepare_tiny_store(root: Path) -> Path:
    """Ingest the tiny demo into ``root`` and find its styles: the starting point of tests that
    train themselves. Returns ``root``."""
    from ganpipe.config import load_config
    from ganpipe.stages.ingest import ingest
    from ganpipe.stages.styles import styles
    from ganpipe.store import RunStore

    cfg = load_config(None, tiny_overrides(root))
    store = RunStore.from_config(cfg)
    ingest(cfg, store)
    styles(cfg, store)
    return root


def train_tiny_model(root: Path, overrides: list[str] | None = None) -> Path:
    """Ingest the tiny demo into ``root``, find its styles, train and promote a model: the
    starting point of every test that needs a trained model. Returns ``root``."""
    from ganpipe.config import load_config
    from ganpipe.domain.model_pointers import promote
    from ganpipe.stages.ingest import ingest
    from ganpipe.stages.styles import styles
    from ganpipe.stages.train import train
    from ganpipe.store import RunStore

    cfg = load_config(None, overrides if overrides is not None else tiny_overrides(root))
    store = RunStore.from_config(cfg)
    ingest(cfg, store)
    styles(cfg, store)
    result = train(cfg, store)
    promote(store, result.model, result.version)
    return root


RANDOM_MODELS = {"dcgan": "v-dcgan-2", "stylegan": "v-stylegan-2", "embedding": "v-stylegan-3"}


def random_models(root: Path) -> Path:
    """The tiny demo and its styles at 16 px, with three untrained generators exported as
    versions of model ``demo`` (``RANDOM_MODELS``: a DCGAN, which is current, a style
    generator, and one taking a style embedding): for tests of what happens after training.
    Weights are perturbed and batch norm statistics gathered, so images vary."""
    import torch

    from ganpipe.config import load_config
    from ganpipe.data.dataset import load_dataset
    from ganpipe.domain.model_pointers import promote
    from ganpipe.domain.style_table import load_styles
    from ganpipe.registry import load_registry
    from ganpipe.stages.ingest import ingest
    from ganpipe.stages.styles import styles
    from ganpipe.store import RunStore, layout
    from ganpipe.store.checkpoints import export_network

    cfg = load_config(None, tiny_overrides(root))
    store = RunStore.from_config(cfg)
    ingest(cfg, store)
    styles(cfg, store)
    registry = load_registry(cfg)
    dataset = load_dataset(store, cfg.dataset.name)
    table, _ = load_styles(store, dataset.fingerprint, cfg.style.encoder)
    num_styles = len(table.names)
    for name, options in [("dcgan", {}), ("stylegan", {}),
                          ("stylegan", {"style_embedding_dim": 64})]:  # fmt: skip
        torch.manual_seed(0)
        options = {"num_styles": num_styles, "image_size": 16, **options}
        generator = registry.create("generator", name, **options)
        with torch.no_grad():
            for p in generator.parameters():
                p.add_(torch.randn_like(p) * 0.05)
            generator.train()
            for _ in range(10):
                generator(torch.randn(64, generator.z_dim), torch.randint(0, num_styles, (64,)))
        version = f"v-{name}-{len(options)}"
        meta = {"styles": table.to_json(), "dataset_fingerprint": dataset.fingerprint,
                "version": version, "model": "demo", "steps": 0}  # fmt: skip
        export_network(store, layout.model_dir("demo", version), "generator", name, options,
                       generator.eval(), meta)  # fmt: skip
    promote(store, "demo", RANDOM_MODELS["dcgan"])
    return root


@pytest.fixture
def tiny_config(tmp_path):
    from ganpipe.config import load_config

    return load_config(None, tiny_overrides(tmp_path / "store"))


def write_png(path: Path, rgb=(200, 30, 30), size=(24, 24), seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arr = np.clip(np.array(rgb)[None, None, :] + rng.normal(0, 20, (*size[::-1], 3)), 0, 255)
    Image.fromarray(arr.astype(np.uint8)).save(path)
    return path


@pytest.fixture
def labelled_folder(tmp_path) -> Path:
    """Two labelled styles of six distinct images each, in sub-folders."""
    root = tmp_path / "images"
    for label, rgb in (("red", (210, 40, 40)), ("blue", (40, 40, 210))):
        for i in range(6):
            write_png(
                root / label / f"{label}-{i}.png", rgb, seed=i + (100 if label == "red" else 0)
            )
    return root


@pytest.fixture(scope="session")
def s3_endpoint():
    """A real S3 HTTP endpoint: moto's standalone server on loopback, as s3fs tests it."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_options(s3_endpoint):
    import uuid

    import boto3

    bucket = f"ganpipe-{uuid.uuid4().hex[:8]}"
    boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_bucket(Bucket=bucket)
    options = {
        "endpoint_url": s3_endpoint,
        "key": "testing",
        "secret": "testing",
        "client_kwargs": {"region_name": "us-east-1"},
    }
    return bucket, options


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """The root of a store holding the tiny demo, its styles and a trained, promoted model
    (``train_tiny_model``), once per test module: what filter and report tests start from."""
    return train_tiny_model(tmp_path_factory.mktemp("tiny-model") / "store")
