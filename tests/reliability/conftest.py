"""Helpers of the reliability suite: the real CLI in a subprocess, a check that a store holds
nothing torn or dangling, and a loopback proxy in front of moto that injects S3 faults."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GANPIPE = [sys.executable, "-m", "ganpipe"]


def ganpipe(*args: str, env: dict | None = None, timeout: float = 240, **popen):
    """``ganpipe ARGS`` as a user runs it; fixture plugins import from the repository."""
    return subprocess.run(
        [*GANPIPE, *args], env=cli_env(env), cwd=REPO, capture_output=True, text=True,
        timeout=timeout, **popen,
    )  # fmt: skip


def cli_env(extra: dict | None = None) -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200", **(extra or {})}


def sets(overrides: list[str]) -> list[str]:
    """``k=v`` overrides as ``--set k=v`` arguments."""
    return [a for o in overrides for a in ("--set", o)]


# A store holds nothing torn or dangling ----------------------------------------------------


def store_problems(root: Path) -> list[str]:
    """What a reader of the store could trip over: a file under its final name that does not
    parse, a manifest that lists a missing file or pixels, a pointer to nothing."""
    import numpy as np
    import pandas as pd
    from PIL import Image
    from safetensors.numpy import load as load_safetensors

    problems = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel, name = path.relative_to(root).as_posix(), path.name
        if ".tmp-" in name or any(part.startswith(".staging-") for part in path.parts):
            continue  # working files: hidden, swept later, never read
        if name.startswith(".lock-"):
            continue
        data = path.read_bytes()
        try:
            if name.endswith(".parquet"):
                pd.read_parquet(io.BytesIO(data))
            elif name.endswith(".json"):
                json.loads(data)
            elif name.endswith(".npy"):
                np.load(io.BytesIO(data), allow_pickle=False)
            elif name.endswith(".safetensors"):
                load_safetensors(data)
            elif name.endswith((".png", ".jpeg", ".webp")):
                Image.open(io.BytesIO(data)).load()
            elif name.endswith(".pt"):
                import torch

                torch.load(io.BytesIO(data), weights_only=True)
        except Exception as exc:
            problems.append(f"{rel} is torn: {type(exc).__name__}: {exc}")
    for manifest in root.glob("datasets/*/*/manifest.parquet"):
        frame = pd.read_parquet(manifest)
        for shard, offsets in frame.groupby("shard")["offset"]:
            pixels = manifest.parent / shard
            if not pixels.is_file():
                problems.append(f"{manifest} lists {shard}, which is missing")
            elif offsets.max() >= len(np.load(pixels, allow_pickle=False)):
                problems.append(f"{manifest} lists pixels past the end of {shard}")
    for latest in root.glob("datasets/*/latest.json"):
        fp = json.loads(latest.read_text())["fingerprint"]
        if not (latest.parent / fp / "manifest.parquet").is_file():
            problems.append(f"{latest} points at {fp}, which has no manifest")
    for manifest in root.glob("batches/*/manifest.parquet"):
        for rel in pd.read_parquet(manifest)["path"]:
            if not (manifest.parent / rel).is_file():
                problems.append(f"{manifest} lists {rel}, which is missing")
    for current in root.glob("models/*/current"):
        version = current.read_text().strip()
        if not (current.parent / version / "generator.safetensors").is_file():
            problems.append(f"{current} names {version}, which has no exported generator")
    return problems


def working_files(root: Path) -> list[str]:
    """Temporary files and staging folders left anywhere in a store."""
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if ".tmp-" in p.name or p.name.startswith(".staging-")
    )


# S3 faults: moto behind a loopback proxy -----------------------------------------------------


class Moto:
    """moto's standalone server on a fixed port that can be stopped and started again. Its
    buckets live in the process (moto's backends), so a restart keeps the data, as a real
    object store's restart does."""

    def __init__(self):
        self.port = _free_port()
        self.server = None
        self.start()

    def start(self):
        from moto.server import ThreadedMotoServer

        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()

    def stop(self):
        if self.server is not None:
            self.server.stop()
            self.server = None

    @property
    def up(self) -> bool:
        return self.server is not None


class FaultProxy:
    """An HTTP proxy on loopback in front of moto, one request per connection. Faults are queued
    as a list of actions, one consumed per request that matches:

    - ``"503"`` / ``"500"``: answer SlowDown / InternalError without passing the request on;
    - ``"cut"``: pass the request's headers and half its body, then drop both connections (a
      write cut off mid-way);
    - ``"stop:<seconds>"``: stop moto before the request reaches it and start it again after
      the given seconds (``inf``: never); the request itself fails.

    While moto is down every request fails at the TCP level, as against a stopped server.
    """

    def __init__(self, moto: Moto):
        self.moto = moto
        self.faults: list[list] = []  # [method or "*", action, matching requests to let pass]
        self.served = {"requests": 0, "503": 0, "500": 0, "cut": 0, "refused": 0, "stop": 0}
        self._lock = threading.Lock()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def inject(self, action: str, count: int = 1, method: str = "*", after: int = 0) -> None:
        """Queue ``count`` faults for requests of ``method``, from the one after the next
        ``after`` such requests on."""
        with self._lock:
            self.faults += [[method, action, after] for _ in range(count)]

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self.faults)

    def close(self) -> None:
        self._closed = True
        self._sock.close()

    def _accept(self):
        while not self._closed:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _take(self, method: str) -> str | None:
        """The first due fault for this request; every fault still waiting counts it."""
        with self._lock:
            matching = [f for f in self.faults if f[0] in ("*", method)]
            due = next((f for f in matching if f[2] == 0), None)
            for f in matching:
                f[2] = max(0, f[2] - 1) if f is not due else 0
            if due is None:
                return None
            self.faults.remove(due)
            return due[1]

    def _serve(self, client: socket.socket) -> None:
        try:
            head, body = _read_request(client)
            if head is None:
                return
            method = head.split(b" ", 1)[0].decode()
            with self._lock:
                self.served["requests"] += 1
            action = self._take(method)
            if action in ("503", "500"):
                self._count(action)
                client.sendall(_error_response(action))
                return
            if action and action.startswith("stop:"):
                self._count("stop")
                self.moto.stop()
                seconds = float(action.split(":", 1)[1])
                if seconds != float("inf"):
                    threading.Timer(seconds, self.moto.start).start()
            if not self.moto.up:
                self._count("refused")
                _reset(client)
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.moto.port), timeout=30)
            except OSError:
                self._count("refused")
                _reset(client)
                return
            with upstream:
                if action == "cut":
                    self._count("cut")
                    upstream.sendall(head + body[: len(body) // 2])
                    _reset(client)
                    return
                upstream.sendall(head + body)
                while chunk := upstream.recv(65536):
                    client.sendall(chunk)
        except OSError:
            pass
        finally:
            client.close()

    def _count(self, key: str) -> None:
        with self._lock:
            self.served[key] += 1


def _read_request(sock: socket.socket) -> tuple[bytes | None, bytes]:
    sock.settimeout(30)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None, b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(b":") for x in lines[1:])}
    if headers.get(b"expect", b"").lower() == b"100-continue":
        sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")  # botocore waits for it before a body
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        while not body.endswith(b"0\r\n\r\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    else:
        length = int(headers.get(b"content-length", b"0"))
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    # One request per connection: simpler to relay, and each request meets the current faults.
    kept = [x for x in lines[1:] if not x.lower().startswith((b"connection:", b"expect:"))]
    head = b"\r\n".join([lines[0], *kept, b"Connection: close"]) + b"\r\n\r\n"
    return head, body


def _error_response(code: str) -> bytes:
    name, text = {"503": ("SlowDown", "Service Unavailable"),
                  "500": ("InternalError", "Internal Server Error")}[code]  # fmt: skip
    body = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{name}</Code>'
            f"<Message>injected by the test proxy</Message></Error>").encode()  # fmt: skip
    head = (f"HTTP/1.1 {code} {text}\r\nContent-Type: application/xml\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")  # fmt: skip
    return head.encode() + body


def _reset(sock: socket.socket) -> None:
    """Drop the connection with a RST, as a dead server's host does."""
    import struct

    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def moto_proxy():
    """(moto, proxy, make_bucket): a restartable moto server behind a fault-injecting proxy."""
    import uuid

    import boto3

    moto = Moto()
    proxy = FaultProxy(moto)

    def make_bucket() -> str:
        bucket = f"ganpipe-{uuid.uuid4().hex[:8]}"
        boto3.client(
            "s3", endpoint_url=f"http://127.0.0.1:{moto.port}", region_name="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing",
        ).create_bucket(Bucket=bucket)  # fmt: skip
        return bucket

    yield moto, proxy, make_bucket
    proxy.close()
    moto.stop()


def s3_store_options(endpoint: str, **extra) -> dict:
    """Store options for the proxy: botocore's own retries kept small so outages reach
    ganpipe quickly (users tune the same keys)."""
    return {
        "endpoint_url": endpoint,
        "key": "testing",
        "secret": "testing",
        "client_kwargs": {"region_name": "us-east-1"},
        "config_kwargs": {
            "retries": {"max_attempts": 3, "mode": "standard"},
            "connect_timeout": 2,
            "read_timeout": 10,
        },
        "skip_instance_cache": True,
        **extra,
    }


def wait_for(predicate, timeout: float = 60, every: float = 0.01) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(every)
    return False
