"""Working names: temporary files and staging folders that carry the name of their writer.

A crashed writer cannot clean up after itself, so whatever it leaves (a ``.tmp-`` file, a
``.staging-`` folder) names its owner: host, pid namespace, pid and a per-process nonce. The next
run removes a leftover once it can tell that owner is gone, and never one a live writer (in this
process or another) still uses (docs/architecture.md, "The store").
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ganpipe.store.file_access import FileAccess

STALE_AFTER_S = 24 * 3600  # a working file of a writer we cannot check is abandoned after this

_HOST = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname())[:40] or "host"
_NONCE = uuid.uuid4().hex[:8]
_TOKEN = re.compile(r"([^~/]+)~(\d+)~(\d+)~([0-9a-f]{8})")
_OWNED = re.compile(r"(?:\.tmp-|^\.staging-)([^~/]+~\d+~\d+~[0-9a-f]{8})~[0-9a-f]+$")
_ACTIVE: set[str] = set()
_ACTIVE_LOCK = threading.Lock()


def _pid_namespace() -> int:
    """Tells apart containers that share a hostname (and a volume) but not their processes."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


_NAMESPACE = _pid_namespace()


def owner_token() -> str:
    """Who is writing: host, pid namespace, pid and a nonce of this process."""
    return f"{_HOST}~{_NAMESPACE}~{os.getpid()}~{_NONCE}"


def is_working_name(name: str) -> bool:
    """A writer's temporary file, staging folder or lock: hidden from listings."""
    return name.startswith((".staging-", ".lock-")) or ".tmp-" in name


def claim_working_name(prefix: str) -> str:
    """A unique name carrying this process's token, marked in use until released, so a sweep
    (of this or another process) never takes it for a crash's leftover."""
    name = f"{prefix}{owner_token()}~{uuid.uuid4().hex[:8]}"
    with _ACTIVE_LOCK:
        _ACTIVE.add(name)
    return name


def release_working_name(name: str) -> None:
    """The name is moved into place or removed: a sweep may now judge it by its owner alone."""
    with _ACTIVE_LOCK:
        _ACTIVE.discard(name)


@contextlib.contextmanager
def working_name(prefix: str) -> Iterator[str]:
    """A claimed working name for the duration of the block."""
    name = claim_working_name(prefix)
    try:
        yield name
    finally:
        release_working_name(name)


def owner_alive(name: str) -> bool | None:
    """Whether the process that owns a working name still runs (and, for this process, still
    uses the name); None when this machine cannot tell (another host or pid namespace, or a
    name without an owner)."""
    m = _OWNED.search(name)
    if not m:
        return None
    alive = token_alive(m.group(1))
    if alive and m.group(1) == owner_token():
        with _ACTIVE_LOCK:
            return name in _ACTIVE
    return alive


def token_alive(token: str) -> bool | None:
    """Whether the process an owner token names still runs; None when this machine cannot
    tell (another host or pid namespace, or not a token)."""
    m = _TOKEN.fullmatch(token)
    if not m:
        return None
    host, namespace, pid, nonce = m.group(1), int(m.group(2)), int(m.group(3)), m.group(4)
    if host != _HOST or namespace != _NAMESPACE:
        return None
    if pid == os.getpid():
        return nonce == _NONCE  # another nonce: an earlier process that had our pid
    return _pid_alive(pid)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed child its parent has not reaped yet is a zombie: gone for our purposes
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


# Sweeping leftovers -------------------------------------------------------------------------


def sweep(store: FileAccess, rel: str) -> list[str]:
    """Remove the working files (temporary names, staging folders) directly under ``rel``
    whose writer is gone: a process of this machine that no longer runs, or anyone's after
    ``STALE_AFTER_S`` without a change. Locks are left to the lock protocol. Returns the names
    removed."""
    removed = []
    for name in store.all_names(rel):
        if not is_working_name(name) or name.startswith(".lock-"):
            continue
        full = posixpath.join(rel, name) if rel else name
        if _abandoned(store, name, full):
            with contextlib.suppress(FileNotFoundError), store.guarded("remove", full):
                store.fs.rm(store.path(full), recursive=True)
            removed.append(name)
    return removed


def _abandoned(store: FileAccess, name: str, rel: str) -> bool:
    alive = owner_alive(name)
    if alive is not None:
        return not alive
    newest = newest_change(store, rel)
    return newest is not None and time.time() - newest > STALE_AFTER_S


def newest_change(store: FileAccess, rel: str) -> float | None:
    """When anything at or under ``rel`` last changed (None: gone, or no times recorded)."""
    try:
        with store.guarded("look at", rel):
            infos = store.fs.find(store.path(rel), withdirs=True, detail=True).values()
            infos = list(infos) or [store.fs.info(store.path(rel))]
    except FileNotFoundError:
        return None
    times = [t for t in map(_modified, infos) if t is not None]
    return max(times) if times else None


def _modified(info: dict) -> float | None:
    value = next(
        (info[k] for k in ("mtime", "LastModified", "last_modified") if info.get(k) is not None),
        None,
    )
    if value is None:
        return None
    if hasattr(value, "timestamp"):
        return value.timestamp()
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
