"""Secrets: S3 credentials given as literal config values or as ``${ENV}`` references never appear
in logs, Prefect's database (flow parameters, artifacts, logs, results), reports, saved configs
or anything else a run writes. A whole ``ganpipe run`` against moto's S3 server, with
recognisable fake secrets, then every output is searched for them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import s3fs
import yaml

from ganpipe.config import load_config, redact
from ganpipe.errors import ConfigError
from tests.conftest import tiny_overrides
from tests.reliability.conftest import ganpipe

LITERAL_KEY, LITERAL_SECRET = "GPFAKEKEYLITERAL0001", "gp-fake-secret-LITERAL-7Q2X9"
ENV_KEY, ENV_SECRET = "GPFAKEKEYFROMENV0002", "gp-fake-secret-FROMENV-9R4Z1"
SECRETS = [LITERAL_KEY, LITERAL_SECRET, ENV_KEY, ENV_SECRET]


def leaks(data: bytes) -> list[str]:
    return [s for s in SECRETS if s.encode() in data]


def secret_config(root: str, endpoint: str, images: str) -> dict:
    """The tiny pipeline on S3: the store with literal credentials, the dataset's sources with
    credentials named by environment variables."""
    cfg = load_config(None, tiny_overrides(root, **{"train.steps": 10}))
    data = cfg.model_dump(mode="json")
    region = {"client_kwargs": {"region_name": "us-east-1"}, "endpoint_url": endpoint}
    data["store"]["storage_options"] = {"key": LITERAL_KEY, "secret": LITERAL_SECRET, **region}
    data["dataset"].update(
        sources=[images], labels="dirs",
        storage_options={"key": "${GP_TEST_KEY}", "secret": "${GP_TEST_SECRET}", **region},
    )  # fmt: skip
    return data


@pytest.mark.slow
def test_a_pipeline_run_on_s3_writes_and_logs_no_credentials(tmp_path, moto_proxy):
    from ganpipe.data.demo import write_demo_dataset

    moto, proxy, make_bucket = moto_proxy
    endpoint = f"http://127.0.0.1:{moto.port}"
    bucket = make_bucket()
    fs = s3fs.S3FileSystem(
        key="testing",
        secret="testing",
        endpoint_url=endpoint,
        client_kwargs={"region_name": "us-east-1"},
        skip_instance_cache=True,
    )
    local_images = write_demo_dataset(tmp_path / "demo", per_style=12, size=32)
    fs.put(str(local_images), f"{bucket}/images", recursive=True)

    config_file = tmp_path / "secret-config.yaml"  # holds the literal secret, by design
    config_file.write_text(yaml.safe_dump(secret_config(f"s3://{bucket}/runs", endpoint,
                                                        f"s3://{bucket}/images")))  # fmt: skip
    outputs = tmp_path / "outputs"
    (outputs / "prefect").mkdir(parents=True)
    env = {"GP_TEST_KEY": ENV_KEY, "GP_TEST_SECRET": ENV_SECRET,
           "PREFECT_HOME": str(outputs / "prefect"), "GANPIPE_CACHE": str(outputs / "cache"),
           "PREFECT_LOGGING_EXTRA_LOGGERS": "ganpipe,s3fs,fsspec"}  # fmt: skip
    done = ganpipe("run", str(config_file), "--summary-json", str(outputs / "summary.json"),
                   env=env, timeout=500)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "report: s3://" in done.stdout

    # Everything the run produced: its console output, every object in the bucket, and every
    # file of Prefect's home (database with parameters, logs and artifacts; stored results).
    found = {"stdout": leaks(done.stdout.encode()), "stderr": leaks(done.stderr.encode())}
    keys = fs.find(f"{bucket}/runs")
    for key in keys:
        found[f"s3://{key}"] = leaks(fs.cat_file(key))
    local = [p for p in outputs.rglob("*") if p.is_file()]
    for path in local:
        found[str(path)] = leaks(path.read_bytes())
    assert {where: hits for where, hits in found.items() if hits} == {}
    assert len(keys) > 20 and any(p.name.endswith(".db") for p in local)
    print(
        f"\nsecrets figures: searched stdout, stderr, {len(keys)} bucket objects and "
        f"{len(local)} local files ({sum(p.stat().st_size for p in local):,} bytes)"
    )

    # The searches looked where the secrets would be: the run's parameters and artifacts are in
    # Prefect's database, the saved configs in the bucket, masked or as references.
    database = b"".join(p.read_bytes() for p in local if ".db" in p.name)
    assert b"ganpipe-run-summary" in database and b"storage_options" in database
    saved = [k for k in keys if k.endswith("config.yaml")]
    assert saved
    for key in saved:
        text = fs.cat_file(key).decode()
        assert "secret: '***'" in text and "${GP_TEST_SECRET}" in text, key


def test_flow_parameters_reach_prefect_masked_and_a_masked_secret_is_refused(tmp_path):
    from ganpipe_flows.pipeline import pipeline, validated_config

    data = secret_config(str(tmp_path), "http://127.0.0.1:9", "s3://b/images")
    stored = pipeline.serialize_parameters({"config": data})
    assert leaks(repr(stored).encode()) == []
    assert stored["config"]["dataset"]["storage_options"]["secret"] == "${GP_TEST_SECRET}"
    # A run started from a deployment receives what Prefect stored: refused, clearly.
    with pytest.raises(ConfigError) as err:
        validated_config(stored["config"])
    assert "store.storage_options.secret" in err.value.message and "${ENV_VAR}" in err.value.fix


def test_the_retrain_flow_stores_its_parameters_masked(tmp_path):
    from ganpipe_flows.retrain import retrain

    data = secret_config(str(tmp_path), "http://127.0.0.1:9", "s3://b/images")
    assert leaks(repr(retrain.serialize_parameters({"config": data})).encode()) == []


def test_saved_and_printed_configs_mask_literal_secrets_keep_references(tmp_path):
    data = secret_config(str(tmp_path), "http://127.0.0.1:9", "s3://b/images")
    os.environ.setdefault("GP_TEST_KEY", ENV_KEY)
    text = yaml.safe_dump(redact(data))
    assert leaks(text.encode()) == [] and "${GP_TEST_SECRET}" in text
    assert leaks(load_config(None, []).to_yaml().encode()) == []
    path = Path(tmp_path / "c.yaml")
    path.write_text(yaml.safe_dump(data))
    done = ganpipe("config", str(path))  # what a user prints to check a config
    assert done.returncode == 0 and leaks((done.stdout + done.stderr).encode()) == []
