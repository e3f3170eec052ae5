"""Round two of the red-team pass (issue 17), class by class, several members each: every
input becomes a row or a clear error, never exit 3, a hang or a leak.

Subprocesses run with a timeout, so a hang fails the test instead of stalling the suite."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from ganpipe.config import load_config, redact
from ganpipe.errors import ConfigError, StoreError
from tests.reliability.conftest import ganpipe, sets

pytestmark = pytest.mark.timeout(300)


def png(path: Path, seed: int = 0, size: int = 24) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path)
    return path


def ingest(tmp_path: Path, source: str, *extra: str, timeout: float = 120):
    args = ["ingest", *sets([f"store.root={tmp_path / 'store'}", f"dataset.sources=[{source}]",
                             "dataset.image_size=16", "dataset.min_size=8", *extra])]  # fmt: skip
    return ganpipe(*args, timeout=timeout)


def rows(tmp_path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(accepted, rejected) rows of the newest dataset version."""
    root = tmp_path / "store" / "datasets" / "demo"
    fingerprint = json.loads((root / "latest.json").read_text())["fingerprint"]
    folder = root / fingerprint
    return pd.read_parquet(folder / "manifest.parquet"), pd.read_parquet(folder / "rejects.parquet")


# 1. Names that are not UTF-8 --------------------------------------------------------------


@pytest.mark.parametrize("raw", [b"caf\xe9.png", b"\xff\xfe.png", b"ok-\x80\\x.png"])
def test_names_that_are_not_utf8_become_rows(tmp_path, raw):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        png(folder / f"plain-{i}.png", seed=i)
    png(Path(os.fsdecode(os.path.join(os.fsencode(folder), raw))), seed=9)
    (Path(os.fsdecode(os.path.join(os.fsencode(folder), b"bad\xe9.txt")))).write_bytes(b"no")
    done = ingest(tmp_path, str(folder))
    assert done.returncode == 0, done.stderr
    accepted, rejected = rows(tmp_path)
    assert len(accepted) + len(rejected) == 5  # every name is a row
    from ganpipe.builtin.sources import escaped_name, name_bytes

    shown = escaped_name(os.fsdecode(raw))
    uris = list(accepted["source"]) + list(rejected["source"])
    [uri] = [u for u in uris if u.endswith("/" + shown)]
    assert uri.isprintable() and name_bytes(uri.rsplit("/", 1)[1]) == raw  # lossless
    assert len([u for u in uris if "bad" in u]) == 1


# 2. Special files -------------------------------------------------------------------------


def special_files(folder: Path) -> dict[str, str]:
    """Things named like images that are not regular files; name -> expected kind."""
    made = {}
    os.mkfifo(folder / "pipe.png")
    made["pipe.png"] = "FIFO"
    (folder / "zero.png").symlink_to("/dev/zero")
    made["zero.png"] = "character device"
    (folder / "null.png").symlink_to("/dev/null")
    made["null.png"] = "character device"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(folder / "socket.png"))
    made["socket.png"] = "socket"
    return made


def test_special_files_are_rejected_without_reading(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        png(folder / f"ok-{i}.png", seed=i)
    made = special_files(folder)
    done = ingest(tmp_path, str(folder), timeout=60)  # a FIFO read would hang: the timeout fails
    assert done.returncode == 0, done.stderr
    accepted, rejected = rows(tmp_path)
    assert len(accepted) == 3
    by_name = {u.rsplit("/", 1)[1]: (r, d) for u, r, d in
               zip(rejected["source"], rejected["reason"], rejected["detail"])}  # fmt: skip
    for name, kind in made.items():
        assert by_name[name][0] == "not_a_file" and kind in by_name[name][1], by_name


def test_a_manifest_row_naming_a_device_or_folder_is_rejected(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    png(folder / "ok.png")
    (folder / "folder.png").mkdir()
    os.mkfifo(folder / "pipe.png")
    manifest = tmp_path / "list.csv"
    pd.DataFrame({"path": ["images/ok.png", "/dev/zero", "/dev/urandom", "images/folder.png",
                           "images/pipe.png"]}).to_csv(manifest, index=False)  # fmt: skip
    done = ingest(tmp_path, str(manifest), timeout=60)
    assert done.returncode == 0, done.stderr
    accepted, rejected = rows(tmp_path)
    assert len(accepted) == 1 and len(rejected) == 4
    assert set(rejected["reason"]) <= {"not_a_file", "outside_root"}
    device_rows = rejected[rejected["source"].str.startswith("/dev/")]
    assert (device_rows["reason"] != "too_large").all()


def test_reads_stop_at_max_bytes_whatever_the_listing_says(tmp_path):
    from ganpipe.data.file_reads import BoundedReader, NotRegularFile, read_local

    big = tmp_path / "big.png"
    big.write_bytes(b"\0" * 10_000)
    assert len(read_local(str(big), limit=101)) == 101
    with pytest.raises(NotRegularFile, match="character device"):
        read_local("/dev/zero", limit=10)
    import fsspec

    reader = BoundedReader(fsspec.filesystem("file"), str(big), local=True)
    assert len(reader(limit=5)) == 5 and len(reader()) == 10_000


# 5. Options for names that are not selected ----------------------------------------------


@pytest.mark.parametrize("override", [
    "filter.options={realsim: {quantile: 0.05}}",
    "filter.options={realism: {quantile: 0.05}, sharpnes: {}}",
    "evaluate.feature_options={contrastive: {steps: 10}}",
    "evaluate.features=[texture]",  # with feature_options for another name below
])  # fmt: skip
def test_options_for_unselected_names_are_errors(override):
    extra = ["evaluate.feature_options={colour: {}}"] if "features=" in override else []
    with pytest.raises(ConfigError) as caught:
        load_config(None, [override, *extra])
    message = caught.value.message
    assert "not among the selected" in message and "--set" in message


# 6. Store roots that cannot persist ------------------------------------------------------


@pytest.mark.parametrize(("root", "says"), [
    ("memory://runs", "lost when it ends"),
    ("https://example.com/runs", "read-only"),
    ("zip://runs.zip", "read-only"),
    ("", "empty"),
    ("   ", "empty"),
])  # fmt: skip
def test_store_roots_that_cannot_work_are_refused(tmp_path, root, says):
    done = ganpipe("ingest", "--set", f"store.root={root!r}" if root.strip() else "store.root=''",
                   timeout=60)  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert says in done.stderr and "supported" in done.stderr.lower()


def test_a_store_that_refuses_connections_is_a_clear_error():
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = ganpipe("ingest", "--set", f"store.root=ftp://127.0.0.1:{port}/runs", timeout=60)
    assert done.returncode == 1, done.stderr
    assert "cannot open the run store" in done.stderr and "store.root" in done.stderr


def test_store_error_lists_supported_protocols():
    from ganpipe.store import RunStore

    with pytest.raises(StoreError, match="s3://"):
        RunStore("memory://x")


# 7. Credentials under other names ---------------------------------------------------------

BACKEND_SECRETS = {
    "s3fs": {"key": "AKIA-S3", "secret": "s3-secret", "token": "s3-session",
             "client_kwargs": {"aws_secret_access_key": "s3-nested", "region_name": "eu"},
             "config_kwargs": {"aws_session_token": "s3-nested-token"}},
    "gcsfs": {"token": {"type": "service_account", "private_key": "gcs-private"},
              "project": "visible-project"},
    "adlfs": {"account_name": "visible-account", "account_key": "az-account-key",
              "connection_string": "DefaultEndpointsProtocol=https;AccountKey=az-conn",
              "sas_token": "sv=az-sas", "client_secret": "az-client-secret",
              "credential": "az-credential", "tenant_id": "visible-tenant"},
    "http": {"headers": {"Authorization": "Bearer http-bearer", "X-Api-Key": "http-apikey",
                         "Cookie": "session=http-cookie", "Accept": "visible/accept"}},
    "sftp": {"username": "visible-user", "password": "sftp-password", "passwd": "sftp-passwd",
             "pkey": "sftp-pkey", "passphrase": "sftp-passphrase"},
    "other": {"apikey": "other-apikey", "API_KEY": "other-API-KEY", "PassWord": "other-pw"},
}  # fmt: skip
VISIBLE = ["visible-project", "visible-account", "visible-tenant", "visible/accept",
           "visible-user", "eu"]  # fmt: skip


def all_values(data) -> list[str]:
    if isinstance(data, dict):
        return [v for value in data.values() for v in all_values(value)]
    if isinstance(data, list):
        return [v for value in data for v in all_values(value)]
    return [str(data)]


@pytest.mark.parametrize("backend", list(BACKEND_SECRETS))
def test_backend_credentials_are_masked_by_name(tmp_path, backend):
    options = BACKEND_SECRETS[backend]
    secrets = [v for v in all_values(options) if v not in VISIBLE and v != "service_account"]
    shown = yaml.safe_dump(redact({"store": {"storage_options": options}}))
    assert not [s for s in secrets if s in shown], shown
    assert all(v in shown for v in all_values(options) if v in VISIBLE)
    # and through the command line, as `ganpipe config` prints it
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"store": {"root": str(tmp_path / "s"),
                                                "storage_options": options}}))  # fmt: skip
    done = ganpipe("config", str(config), timeout=60)
    assert done.returncode == 0, done.stderr
    assert not [s for s in secrets if s in done.stdout + done.stderr]


# Messages: where a value came from, YAML mistakes, long values ---------------------------


def test_errors_name_the_set_option_or_the_file_line(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(None, ["train.steps=-5"])
    assert "--set train.steps" in caught.value.message
    assert "built-in defaults" not in caught.value.message
    config = tmp_path / "c.yaml"
    config.write_text("store:\n  root: runs\ntrain:\n  lr: 0.001\n  steps: -5\n")
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert f"{config} line 5" in caught.value.message
    with pytest.raises(ConfigError) as caught:
        load_config(config, ["train.steps=-7"])
    assert "--set train.steps" in caught.value.message and "line 5" not in caught.value.message


@pytest.mark.parametrize("text", [
    "train:\n  steps: 10\n  steps: 20\n",
    "train:\n  steps: 10\ntrain:\n  lr: 0.1\n",
    "generate:\n  mixing:\n    crossover: 1\n    crossover: 2\n",
])  # fmt: skip
def test_duplicate_keys_are_errors_with_lines(tmp_path, text):
    config = tmp_path / "c.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert "appears twice" in caught.value.message and " line " in caught.value.message


def test_tabs_give_line_and_column(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("train:\n\tsteps: 10\n")
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert "line 2, column 1" in caught.value.message and "tabs" in caught.value.message


@pytest.mark.parametrize("override", [
    "dataset.name=" + "x" * 100_000,
    "generate.styles=[" + "y" * 100_000 + "]",
    "store.root=memory://" + "z" * 100_000,
])  # fmt: skip
def test_huge_values_give_short_messages(tmp_path, override):
    done = ganpipe("generate", "--set", f"store.root={tmp_path / 'store'}", "--set", override,
                   timeout=120)  # fmt: skip
    assert done.returncode == 1, done.stderr[-2000:]
    assert len(done.stderr) < 4000  # the value, if shown, is cut in the middle


# 4. Values validation passes must be values their consumers accept -------------------------


NUMBERS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, -1, 0.999999, 1.0000001, 2**63, 2**64, 1e-45, 1e308]),
)
# every config value that reaches torch (or a loop bound) directly
TORCH_FIELDS = ["train.lr_g", "train.lr_d", "train.seed", "train.ema_decay", "train.grad_clip",
                "train.batch_size", "train.rollback_lr_factor", "train.data_memory_mb",
                "train.max_minutes", "generate.seed", "generate.truncation", "evaluate.seed",
                "style.seed", "project.lr", "project.seed", "project.steps",
                "project.candidates", "project.w_plus_from", "generate.mixing.seed"]  # fmt: skip


def build_what_training_and_generation_build(cfg) -> None:
    """The objects the stages make from these values, with the values (not the data)."""
    import torch

    from ganpipe.generation.render import latent
    from ganpipe.projection.optimise import learning_rate
    from ganpipe.registry import load_registry
    from ganpipe.training.components import build_networks
    from ganpipe.training.mixed_precision import resolve_precision
    from ganpipe.training.steps import ema_decay_at

    t = cfg.train
    torch.manual_seed(t.seed)
    precision = resolve_precision("fp32", False, torch.device("cpu"))
    nets = build_networks(cfg, load_registry(cfg), 2, precision, torch.device("cpu"))
    for net, lr in ((nets.G, t.lr_g), (nets.D, t.lr_d)):
        opt = torch.optim.Adam(net.parameters(), lr=lr, betas=t.betas)
        opt.param_groups[0]["lr"] = lr * t.rollback_lr_factor
        if t.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(net.parameters(), t.grad_clip)
    ema_decay_at(t.ema_decay, 10, True)
    torch.randn(min(t.batch_size, 4), 8)
    for seed in (cfg.generate.seed, cfg.evaluate.seed, cfg.style.seed, cfg.project.seed):
        latent(seed + 1000, 4)
        torch.Generator().manual_seed(seed)
    if cfg.generate.mixing is not None and cfg.generate.mixing.seed is not None:
        latent(cfg.generate.mixing.seed, 4)
    torch.lerp(torch.zeros(3), torch.ones(3), cfg.generate.truncation)
    learning_rate(0.5, cfg.project.lr)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(TORCH_FIELDS + ["train.betas"]), NUMBERS), max_size=4))
def test_fuzzed_values_either_fail_validation_or_build(values):
    overrides = ["dataset.image_size=16"]
    for key, number in values:
        value = f"[{number!r}, {number!r}]" if key == "train.betas" else repr(number)
        value = value.replace("inf", ".inf").replace("nan", ".nan")
        overrides.append(f"{key}={value}")
    try:
        cfg = load_config(None, overrides)
    except ConfigError:
        return
    build_what_training_and_generation_build(cfg)


@pytest.mark.parametrize("override", ["train.betas=[2, 3]", "train.betas=[0.5, 1.0]",
                                      "train.betas=[-0.1, 0.9]", "train.lr_g=.inf",
                                      "train.lr_d=.nan", "train.seed=-1",
                                      "train.seed=99999999999999999999999",
                                      "generate.seeds=[1, 99999999999999999999999]"])  # fmt: skip
def test_values_torch_refuses_are_config_errors(tmp_path, override):
    done = ganpipe("train", "--set", f"store.root={tmp_path}", "--set", override, timeout=120)
    assert done.returncode == 1, done.stderr
    assert override.split("=")[0] in done.stderr and "--set" in done.stderr


# 32-bit images -----------------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "values", "usable"), [
    ("F", np.linspace(0, 1, 32 * 32), True),
    ("F", np.linspace(-500, 2000, 32 * 32), True),
    ("F", np.r_[np.linspace(0, 1, 32 * 32 - 1), np.nan], False),
    ("F", np.r_[np.linspace(0, 1, 32 * 32 - 1), np.inf], False),
    ("I", np.linspace(0, 2**31 - 1, 32 * 32), True),
    ("I", np.linspace(-(2**20), 2**20, 32 * 32), True),
    ("I", np.linspace(0, 255, 32 * 32), True),
])  # fmt: skip
def test_32_bit_images_are_scaled_or_rejected_with_a_reason(mode, values, usable):
    import io

    from ganpipe.data.decode import Decoded, DecodeSettings, decode_image

    dtype = np.float32 if mode == "F" else np.int32
    buffer = io.BytesIO()
    Image.fromarray(values.reshape(32, 32).astype(dtype), mode).save(buffer, "TIFF")
    result = decode_image(buffer.getvalue(), DecodeSettings(image_size=16, min_size=8))
    if usable:
        assert isinstance(result, Decoded)
        grey = result.pixels[..., 0].astype(int)
        assert grey.max() - grey.min() > 200  # a gradient, not a solid square
    else:
        assert result.reason == "corrupt" and "NaN or infinite" in result.detail


@pytest.mark.parametrize(("args", "named"), [
    (["generate", "--out", "memory://batches"], "--out"),
    (["export", "--out", "memory://exports"], "--out"),
    (["filter", "--batch", "memory://b/batches/x"], "--batch"),
    (["evaluate", "--model", "https://example.com/model"], "--model"),
])  # fmt: skip
def test_store_errors_name_the_option_that_gave_the_location(tmp_path, args, named):
    done = ganpipe(*args, "--set", f"store.root={tmp_path}", timeout=60)
    assert done.returncode == 1, done.stderr
    assert f"Where: {named}" in done.stderr, done.stderr
    assert "store.root" not in done.stderr.split("Where:")[1].split(".")[0]


# Ctrl-C, sent as a terminal sends it -------------------------------------------------------


def _sigint_default() -> None:
    """A background job of a non-interactive shell starts with SIGINT ignored, which would make
    a Ctrl-C test pass without testing anything: restore the default before exec."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
def test_ctrl_c_in_train_answers_at_once_and_resumes(tmp_path):
    import signal
    import subprocess
    import time

    from tests.conftest import prepare_tiny_store, tiny_overrides
    from tests.reliability.conftest import GANPIPE, REPO, cli_env

    root = prepare_tiny_store(tmp_path / "store")
    args = sets(tiny_overrides(root, **{"train.steps": 300, "train.checkpoint_every": 20}))
    proc = subprocess.Popen([*GANPIPE, "train", *args], cwd=REPO, env=cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_sigint_default)  # fmt: skip
    deadline = time.monotonic() + 180
    while not list(root.glob("models/demo/*/checkpoints/step-*.pt")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    began = time.monotonic()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in err, err[-2000:]
    assert time.monotonic() - began < 30
    done = ganpipe("train", *args)  # the same command again
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resuming from step" in done.stderr.lower(), done.stderr[-2000:]
    assert list(root.glob("models/demo/*/training.json"))
