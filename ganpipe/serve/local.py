"""Running ``ganpipe serve`` beside a script on this machine (tests, benchmarks, a local
pipeline): a free loopback port to give it, and waiting until it answers."""

from __future__ import annotations

import socket
import time
import urllib.request


def free_port() -> int:
    """A loopback port nothing listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(base_url: str, timeout: float = 60) -> None:
    """Until ``GET /healthz`` answers; a server that never does is a TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{base_url}/healthz", timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                message = f"{base_url} did not answer /healthz in {timeout:.0f} s"
                raise TimeoutError(message) from None
            time.sleep(0.25)
