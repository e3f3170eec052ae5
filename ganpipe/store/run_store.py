"""The run store: one root URI, local or s3://, holding every stage's inputs and outputs.

Writes are atomic so that a reader (another stage, another run, a person) never sees a
half-written file under its final name: locally through a temporary name and a rename, on object
stores through a single PUT, which only becomes visible once complete. Stages write their
manifests last, so a manifest's presence means everything it lists is there.

What a crashed writer leaves behind (a temporary file, a staging folder) carries its owner's
name (host, process, a per-process nonce), is hidden from listings, and is swept by the next
run once that owner is gone. Failures of the storage itself become ``StoreError``s that say what
could not be done where; network trouble, throttling and 5xx answers become ``StoreUnavailable``,
which the flows retry.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import posixpath
import re
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import fsspec

from ganpipe.errors import StoreError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

STALE_AFTER_S = 24 * 3600  # a working file of a writer we cannot check is abandoned after this


class StoreIOError(StoreError, OSError):
    """The storage refused or failed an operation. Also an ``OSError``, so code that handles
    file errors keeps working."""

    transient = False


class StoreUnavailable(StoreIOError):
    """The store could not be reached (connection refused or reset, timeout, throttling, 5xx):
    the same operation may well succeed later, so flows retry it."""

    transient = True


class StoreDataError(StoreError, ValueError):
    """A file in the store does not hold what it should (an array that needs unpickling, a
    torn file). Also a ``ValueError``, as the parsers raise."""


class RunStore:
    """Relative paths (``datasets/demo/<fp>/manifest.parquet``) resolved under one root URI."""

    def __init__(self, root: str, storage_options: dict[str, Any] | None = None):
        from ganpipe.config import resolve_env_refs

        options = resolve_env_refs(storage_options or {}, "store.storage_options")
        try:
            self.fs, root_path = fsspec.core.url_to_fs(root, **options)
        except (ValueError, ImportError, TypeError) as exc:
            raise StoreError(
                f"cannot open the run store {root!r}: {_short(exc)}",
                where="store.root, store.storage_options",
                fix="use a local path or an s3://bucket/prefix URI, with options that filesystem "
                "accepts",
            ) from None
        self.local = "file" in _protocols(self.fs)
        self.root = os.path.abspath(root_path) if self.local else root_path.rstrip("/")

    @classmethod
    def from_config(cls, config) -> RunStore:
        return cls(config.store.root, config.store.storage_options)

    # Paths ---------------------------------------------------------------------------------
    def path(self, *parts: str) -> str:
        """Filesystem path of a store-relative location (what ``self.fs`` understands). A
        location that leads outside the store (``../``, an absolute path: a manifest or pointer
        someone edited) is refused, so nothing a store holds can make ganpipe read or write
        elsewhere."""
        if not parts:
            return self.root
        joined = posixpath.normpath(posixpath.join(self.root, *parts))
        if joined != self.root and not joined.startswith(self.root.rstrip("/") + "/"):
            raise StoreDataError(
                f"{'/'.join(parts)!r} points outside the run store {self.uri()}",
                where="run store",
                fix="a manifest or pointer in the store names a path outside it; restore it "
                "from the stage that wrote it (rerun that stage)",
            )
        return joined

    def uri(self, *parts: str) -> str:
        """Full URI for people and summaries: a plain path locally, ``s3://...`` otherwise."""
        return self.fs.unstrip_protocol(self.path(*parts)) if not self.local else self.path(*parts)

    def exists(self, *parts: str) -> bool:
        with self._io("look for", "/".join(parts)):
            return self.fs.exists(self.path(*parts))

    def listdir(self, *parts: str) -> list[str]:
        """Names directly under a folder (empty when it does not exist); working files of
        writers (temporary names, staging folders, locks) are not listed."""
        return sorted(n for n in self._names(*parts) if not is_working_name(n))

    def _names(self, *parts: str) -> list[str]:
        try:
            with self._io("list", "/".join(parts)):
                entries = self.fs.ls(self.path(*parts), detail=False)
        except FileNotFoundError:
            return []
        return [posixpath.basename(e.rstrip("/")) for e in entries]

    # Atomic writes -------------------------------------------------------------------------
    def write_bytes(self, rel: str, data: bytes | memoryview) -> str:
        target = self.path(rel)
        with self._io("write", rel, missing_is_error=True):
            if self.local:
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with working_name(f"{posixpath.basename(target)}.tmp-") as name:
                    tmp = posixpath.join(posixpath.dirname(target), name)
                    try:
                        with open(tmp, "wb") as fh:
                            fh.write(data)
                            fh.flush()
                            os.fsync(fh.fileno())
                        os.replace(tmp, target)
                    except BaseException:
                        with contextlib.suppress(OSError):
                            os.remove(tmp)
                        raise
            else:
                self.fs.pipe_file(target, bytes(data))
        return self.uri(rel)

    def write_text(self, rel: str, text: str) -> str:
        return self.write_bytes(rel, text.encode("utf-8"))

    def write_json(self, rel: str, obj: Any) -> str:
        return self.write_text(rel, json.dumps(obj, indent=2, sort_keys=True, default=str))

    def write_parquet(self, rel: str, frame: pd.DataFrame) -> str:
        buf = io.BytesIO()
        frame.to_parquet(buf, index=False)
        return self.write_bytes(rel, buf.getvalue())

    def write_table(self, rel: str, table) -> str:
        """A pyarrow table as Parquet (no pandas round trip: lean for large manifests)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        return self.write_bytes(rel, memoryview(sink.getvalue()))

    def write_npy(self, rel: str, array: np.ndarray) -> str:
        import numpy as np

        buf = io.BytesIO()
        np.save(buf, array, allow_pickle=False)
        return self.write_bytes(rel, buf.getbuffer())

    # Reads ---------------------------------------------------------------------------------
    def read_bytes(self, rel: str) -> bytes:
        try:
            with self._io("read", rel):
                return self.fs.cat_file(self.path(rel))
        except FileNotFoundError:
            raise StoreError(f"{self.uri(rel)} does not exist", where="run store") from None

    def read_text(self, rel: str) -> str:
        return self.read_bytes(rel).decode("utf-8")

    def read_json(self, rel: str) -> Any:
        return json.loads(self.read_text(rel))

    def read_parquet(self, rel: str) -> pd.DataFrame:
        import pandas as pd

        return pd.read_parquet(io.BytesIO(self.read_bytes(rel)))

    def read_npy(self, rel: str) -> np.ndarray:
        import numpy as np

        data = self.read_bytes(rel)
        try:
            # allow_pickle=False: arrays in a store may come from anyone; never unpickle them.
            return np.load(io.BytesIO(data), allow_pickle=False)
        except ValueError as exc:
            raise StoreDataError(
                f"{self.uri(rel)} is not a plain array ({_short(exc)})",
                where="run store",
                fix="pixel shards hold uint8 arrays only; ingest the dataset again",
            ) from exc

    def move(self, src: str, dst: str) -> None:
        """Move a file or folder within the store: a rename locally, copy + delete on S3."""
        with self._io("move", f"{src} -> {dst}"):
            if self.local:
                os.makedirs(os.path.dirname(self.path(dst)), exist_ok=True)
                os.replace(self.path(src), self.path(dst))
            else:
                # Object stores have no folders: copy each object (server-side), then delete.
                # (fsspec's recursive mv trips over the missing "folder" object itself.)
                source = self.path(src)
                files = self.fs.find(source) if self.fs.isdir(source) else [source]
                for path in files:
                    tail = posixpath.relpath(path, source) if path != source else ""
                    self.fs.copy(path, posixpath.join(self.path(dst), tail).rstrip("/"))
                self.fs.rm(source, recursive=True)

    def remove(self, rel: str) -> None:
        if self.exists(rel):
            with self._io("remove", rel):
                self.fs.rm(self.path(rel), recursive=True)

    # Crash leftovers -----------------------------------------------------------------------
    def sweep(self, rel: str) -> list[str]:
        """Remove the working files (temporary names, staging folders) directly under ``rel``
        whose writer is gone: a process of this machine that no longer runs, or anyone's after
        ``STALE_AFTER_S`` without a change. Returns the names removed."""
        removed = []
        for name in self._names(rel):
            if not is_working_name(name) or name.startswith(".lock-"):
                continue
            full = posixpath.join(rel, name) if rel else name
            if self._abandoned(name, full):
                with contextlib.suppress(FileNotFoundError), self._io("remove", full):
                    self.fs.rm(self.path(full), recursive=True)
                removed.append(name)
        return removed

    def _abandoned(self, name: str, rel: str) -> bool:
        alive = owner_alive(name)
        if alive is not None:
            return not alive
        newest = self._newest_change(rel)
        return newest is not None and time.time() - newest > STALE_AFTER_S

    def _newest_change(self, rel: str) -> float | None:
        try:
            with self._io("look at", rel):
                infos = self.fs.find(self.path(rel), withdirs=True, detail=True).values()
                infos = list(infos) or [self.fs.info(self.path(rel))]
        except FileNotFoundError:
            return None
        times = [t for t in map(_modified, infos) if t is not None]
        return max(times) if times else None

    # Locks ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, rel: str, *, timeout: float = 300.0, lease: float = 3600.0) -> Iterator[None]:
        """Hold the lock file ``rel`` (name it ``.lock-<what>``) while the block runs, so that
        two writers never interleave a read-decide-write sequence on the same files.

        Taking it is an exclusive create: ``O_CREAT|O_EXCL`` on a local (or NFSv3+) store, a
        conditional PUT (``If-None-Match: *``) on S3 and stores that honour it (AWS S3, MinIO,
        moto); on other fsspec filesystems the create is check-then-write and only best effort.
        A lock whose holder is a dead process of this machine, or whose lease expired (holders
        elsewhere; clocks are trusted to agree within minutes), is broken by the next taker.
        Re-entrant within a thread. Raises ``StoreError`` after ``timeout`` seconds of waiting.
        """
        key = (self.uri(), rel)
        held = _HELD.__dict__.setdefault("depth", {})
        if held.get(key):
            held[key] += 1
            try:
                yield
            finally:
                held[key] -= 1
            return
        body = {
            "owner": owner_token(),
            "id": uuid.uuid4().hex,
            "acquired": time.time(),
            "expires": time.time() + lease,
        }
        self._acquire(rel, body, timeout)
        held[key] = 1
        try:
            yield
        finally:
            held.pop(key, None)
            self._release(rel, body)

    def _acquire(self, rel: str, body: dict, timeout: float) -> None:
        deadline, delay = time.monotonic() + timeout, 0.02
        data = json.dumps(body).encode()
        while True:
            if self._create_exclusive(rel, data):
                return
            holder = self._lock_holder(rel)
            if holder is not None and holder.get("id") == body["id"]:
                return  # our create went through but its answer was lost, and a retry failed
            if holder is not None and self._lock_stale(rel, holder):
                self._break_lock(rel, holder)
                continue
            if time.monotonic() > deadline:
                who = (holder or {}).get("owner", "an unknown writer")
                since = (holder or {}).get("acquired")
                when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if since else "?"
                raise StoreError(
                    f"{self.uri(rel)} is held by {who} since {when}; waited {timeout:.0f} s",
                    where="run store lock",
                    fix="wait for the other run to finish; if it is gone, delete the lock file",
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.5)

    def _create_exclusive(self, rel: str, data: bytes) -> bool:
        target = self.path(rel)
        with self._io("take the lock", rel):
            try:
                if self.local:
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                    with os.fdopen(fd, "wb") as fh:
                        fh.write(data)
                        fh.flush()
                        os.fsync(fh.fileno())
                else:
                    self.fs.pipe_file(target, data, mode="create")
                return True
            except FileExistsError:
                return False

    def _lock_holder(self, rel: str) -> dict | None:
        """The holder's record; one being written right now (empty or cut) reads as a holder
        of unknown age, which is never judged stale."""
        try:
            with self._io("read the lock", rel):
                raw = self.fs.cat_file(self.path(rel))
        except FileNotFoundError:
            return None
        try:
            holder = json.loads(raw)
        except ValueError:
            return {}
        return holder if isinstance(holder, dict) else {}

    def _lock_stale(self, rel: str, holder: dict) -> bool:
        if not holder.get("owner"):  # unreadable: stale only if nobody is still writing it
            changed = self._newest_change(rel)
            return changed is not None and time.time() - changed > 60
        alive = _token_alive(holder["owner"])
        if alive is not None:
            return not alive
        return time.time() > float(holder.get("expires", float("inf")))

    def _break_lock(self, rel: str, holder: dict) -> None:
        # Re-read right before deleting: if someone else broke it and took it meanwhile, the
        # record differs and theirs stands. (The window between read and delete remains.)
        if self._lock_holder(rel) == holder:
            with contextlib.suppress(FileNotFoundError), self._io("break the lock", rel):
                self.fs.rm(self.path(rel))

    def _release(self, rel: str, body: dict) -> None:
        holder = self._lock_holder(rel)
        if holder is not None and holder.get("id") == body["id"]:
            with contextlib.suppress(FileNotFoundError), self._io("release the lock", rel):
                self.fs.rm(self.path(rel))

    # Errors --------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _io(self, action: str, rel: str, missing_is_error: bool = False) -> Iterator[None]:
        """Storage failures as ``StoreError``s naming the action and place; a missing file is
        left to the caller, which knows whether that is an error (for a write it is: the
        bucket is missing)."""
        try:
            yield
        except FileNotFoundError as exc:
            if not missing_is_error:
                raise
            raise StoreIOError(
                f"cannot {action} {self.uri(rel)}: the bucket or folder does not exist "
                f"({_short(exc)})",
                where="store.root",
                fix="create the bucket, or point store.root at one that exists",
            ) from exc
        except (FileExistsError, StoreError):
            raise
        except Exception as exc:
            if not _from_storage(exc):
                raise
            where = (
                self.uri()
                if not rel
                else self.uri(rel)
                if "->" not in rel
                else f"{self.uri()} ({rel})"
            )
            if is_transient(exc):
                raise StoreUnavailable(
                    f"the run store could not be reached to {action} {where} ({_short(exc)})",
                    where="store.root",
                    fix="check that the endpoint is up and reachable (store.storage_options "
                    "endpoint_url, network); the flows retry such failures, a rerun resumes",
                ) from exc
            fix = (
                "check the credentials and permissions for store.root"
                if isinstance(exc, PermissionError)
                else "check store.root and store.storage_options (bucket, options, free space)"
            )
            raise StoreIOError(
                f"cannot {action} {where}: {_short(exc)}", where="store.root", fix=fix
            ) from exc


# Working names: temporary files and staging folders owned by one process --------------------

_HOST = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname())[:40] or "host"
_NONCE = uuid.uuid4().hex[:8]
_TOKEN = re.compile(r"([^~/]+)~(\d+)~(\d+)~([0-9a-f]{8})")
_OWNED = re.compile(r"(?:\.tmp-|^\.staging-)([^~/]+~\d+~\d+~[0-9a-f]{8})~[0-9a-f]+$")
_ACTIVE: set[str] = set()
_ACTIVE_LOCK = threading.Lock()
_HELD = threading.local()


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
    return name.startswith((".staging-", ".lock-")) or ".tmp-" in name


def claim_working_name(prefix: str) -> str:
    """A unique name carrying this process's token, marked in use until released, so a sweep
    (of this or another process) never takes it for a crash's leftover."""
    name = f"{prefix}{owner_token()}~{uuid.uuid4().hex[:8]}"
    with _ACTIVE_LOCK:
        _ACTIVE.add(name)
    return name


def release_working_name(name: str) -> None:
    with _ACTIVE_LOCK:
        _ACTIVE.discard(name)


@contextlib.contextmanager
def working_name(prefix: str) -> Iterator[str]:
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
    alive = _token_alive(m.group(1))
    if alive and m.group(1) == owner_token():
        with _ACTIVE_LOCK:
            return name in _ACTIVE
    return alive


def _token_alive(token: str) -> bool | None:
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


# Errors -----------------------------------------------------------------------------------

_TRANSIENT_ERRNOS = {
    errno.EBUSY, errno.ETIMEDOUT, errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED,
    errno.EAGAIN, errno.EREMOTEIO, errno.EPIPE, errno.EHOSTUNREACH, errno.ENETUNREACH,
    errno.ENETDOWN,
}  # fmt: skip
# Library exception classes (matched by name: none of these libraries need be installed)
_TRANSIENT_NAMES = {
    "ConnectionError",  # botocore's (EndpointConnectionError, ConnectTimeoutError...)
    "HTTPClientError",  # botocore: ConnectionClosedError, ReadTimeoutError
    "ResponseStreamingError",
    "IncompleteReadError",
    "ClientConnectionError",  # aiohttp: ServerDisconnectedError, ClientOSError...
    "ClientPayloadError",
    "ProtocolError",  # urllib3
}
_STORAGE_LIBRARIES = {"botocore", "aiobotocore", "aiohttp", "s3fs", "fsspec", "urllib3", "gcsfs",
                      "adlfs", "azure", "google"}  # fmt: skip


def is_transient(exc: BaseException) -> bool:
    """Network trouble, throttling or a server-side error, here or in the exception's causes."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, StoreError):
            return bool(getattr(exc, "transient", False))
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return True
        if isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS:
            return True
        if {c.__name__ for c in type(exc).__mro__} & _TRANSIENT_NAMES:
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _from_storage(exc: Exception) -> bool:
    """OS errors, the storage libraries' own errors, and what those libraries raise on bad
    options (a TypeError from deep inside a client); anything else is a bug to show as is."""
    if isinstance(exc, (OSError, TimeoutError)):
        return True
    module = type(exc).__module__.split(".", 1)[0]
    if module in _STORAGE_LIBRARIES or is_transient(exc):
        return True
    frames = [f for f, _ in traceback.walk_tb(exc.__traceback__)]
    innermost = frames[-1].f_globals.get("__name__", "") if frames else ""
    return isinstance(exc, (TypeError, ValueError)) and (
        innermost.split(".", 1)[0] in _STORAGE_LIBRARIES
    )


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


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


def read_uri(uri: str, *, what: str, where: str, fix: str) -> bytes:
    """The bytes of one file named by a URI outside the run store (a checkpoint, weights); a
    missing or unreadable file is a config error naming the key that pointed at it."""
    from ganpipe.errors import ConfigError

    try:
        with fsspec.open(uri, "rb") as fh:
            return fh.read()
    except (OSError, ValueError) as exc:
        problem = (
            "does not exist"
            if isinstance(exc, FileNotFoundError)
            else (f"cannot be read ({type(exc).__name__})")
        )
        raise ConfigError(f"{what} {uri!r} {problem}", where=where, fix=fix) from None


def _protocols(fs) -> tuple[str, ...]:
    proto = fs.protocol
    return (proto,) if isinstance(proto, str) else tuple(proto)
