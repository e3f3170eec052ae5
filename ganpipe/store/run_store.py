"""The run store: one root URI, local or s3://, holding every stage's inputs and outputs.

Writes are atomic so that a reader (another stage, another run, a person) never sees a
half-written file under its final name: locally through a temporary name and a rename, on object
stores through a single PUT, which only becomes visible once complete. Stages write their
manifests last, so a manifest's presence means everything it lists is there.

``RunStore`` itself only knows paths and bytes; the rest lives beside it
(docs/architecture.md, "The store"): what the bytes of each format mean (``formats``), the lock
protocol (``locks``), the owner-tagged names of temporaries and staging folders and the sweeping
of a crashed writer's leftovers (``ownership``), and which failures are worth retrying
(``errors``). The ``read_*``/``write_*`` methods stay here, so stages need one object.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
from typing import TYPE_CHECKING, Any

import fsspec

import ganpipe.store.formats as formats
import ganpipe.store.locks as locks
import ganpipe.store.ownership as ownership
from ganpipe.errors import StoreError
from ganpipe.store.errors import StoreDataError, short, storage_errors
from ganpipe.store.ownership import is_working_name, working_name

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa


SUPPORTED_STORES = (
    "a local path (or file://), s3:// (s3fs), gs:// (gcsfs), az:// or abfs:// (adlfs), and "
    "other fsspec filesystems that persist, such as sftp://"
)
# fsspec protocols that cannot hold a run store: gone when the process ends (memory), read-only
# (http, zip, github...) or views of other filesystems that do not write through.
_CANNOT_PERSIST = {
    "memory": "keeps files only in this process's memory: everything is lost when it ends",
    "http": "is read-only", "https": "is read-only", "github": "is read-only",
    "zip": "is read-only", "tar": "is read-only", "data": "is read-only",
    "reference": "is read-only", "libarchive": "is read-only",
    "simplecache": "caches another filesystem without writing through",
    "filecache": "caches another filesystem without writing through",
    "blockcache": "caches another filesystem without writing through",
}  # fmt: skip


def check_store_root(root: Any, origin: str = "store.root") -> None:
    """An empty root, or one whose protocol cannot keep a run store between processes, is a
    clear error listing the supported stores (before any connection is tried). ``origin``
    names where the root came from (``store.root``, ``--out``...)."""
    if not isinstance(root, str) or not root.strip():
        raise StoreError(
            f"{origin} is empty",
            where=origin,
            fix=f"give the run store's location, e.g. ./ganpipe-runs; supported: "
            f"{SUPPORTED_STORES}",
        )
    protocol = root.split("://", 1)[0].lower() if "://" in root else "file"
    for part in protocol.split("::"):
        if part in _CANNOT_PERSIST:
            raise StoreError(
                f"the run store {root!r} uses {part}://, which {_CANNOT_PERSIST[part]}",
                where=origin,
                fix=f"use a store that persists; supported stores: {SUPPORTED_STORES}",
            )


class RunStore:
    """Relative paths (``datasets/demo/<fp>/manifest.parquet``) resolved under one root URI."""

    def __init__(
        self, root: str, storage_options: dict[str, Any] | None = None, origin: str = "store.root"
    ):
        """``origin`` names where ``root`` came from in error messages: ``store.root``, or the
        option that gave it (``--out``, ``--model``, ``--batch``)."""
        from ganpipe.config import resolve_env_refs

        options = resolve_env_refs(storage_options or {}, "store.storage_options")
        check_store_root(root, origin)
        try:
            self.fs, root_path = fsspec.core.url_to_fs(root, **options)
        except Exception as exc:  # unknown options, a missing backend, a refused connection
            raise StoreError(
                f"cannot open the run store {root!r}: {short(exc)}",
                where=f"{origin}, store.storage_options",
                fix=f"check the address, that it is reachable and the options that filesystem "
                f"accepts; supported stores: {SUPPORTED_STORES}",
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
        with self.guarded("look for", "/".join(parts)):
            return self.fs.exists(self.path(*parts))

    def listdir(self, *parts: str) -> list[str]:
        """Names directly under a folder (empty when it does not exist); working files of
        writers (temporary names, staging folders, locks) are not listed."""
        return sorted(n for n in self.all_names(*parts) if not is_working_name(n))

    def all_names(self, *parts: str) -> list[str]:
        """Every name directly under a folder, working files included (for sweeps)."""
        try:
            with self.guarded("list", "/".join(parts)):
                entries = self.fs.ls(self.path(*parts), detail=False)
        except FileNotFoundError:
            return []
        return [posixpath.basename(e.rstrip("/")) for e in entries]

    # Bytes ---------------------------------------------------------------------------------
    def write_bytes(self, rel: str, data: bytes | memoryview) -> str:
        """Write ``data`` atomically under ``rel``; every ``write_*`` ends here. Returns the
        file's URI."""
        target = self.path(rel)
        with self.guarded("write", rel, missing_is_error=True):
            if self.local:
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with working_name(f"{posixpath.basename(target)}.tmp-") as name:
                    tmp = posixpath.join(posixpath.dirname(target), name)
                    _write_then_rename(tmp, target, data)
            else:
                self.fs.pipe_file(target, bytes(data))
        return self.uri(rel)

    def read_bytes(self, rel: str) -> bytes:
        """The file's bytes; every ``read_*`` starts here. A missing file is a ``StoreError``."""
        try:
            with self.guarded("read", rel):
                return self.fs.cat_file(self.path(rel))
        except FileNotFoundError:
            raise StoreError(f"{self.uri(rel)} does not exist", where="run store") from None

    # Formats (formats.py): one generic pair, and a named shortcut per format -----------------
    def save(self, rel: str, obj: Any, fmt: formats.Format) -> str:
        return self.write_bytes(rel, fmt.encode(obj))

    def load(self, rel: str, fmt: formats.Format, kind: type | None = None) -> Any:
        """The file's content as ``fmt`` reads it (of type ``kind``, when given). A torn,
        truncated, empty or foreign file is a ``StoreDataError`` naming it and the command
        that writes it again."""
        data = self.read_bytes(rel)
        try:
            value = fmt.decode(data, self.uri(rel))
        except Exception as exc:  # the format's own finding, or the parser's
            found = exc.what.removeprefix(self.uri(rel)).strip() if isinstance(
                exc, StoreDataError) else f"unreadable ({short(exc)})"  # fmt: skip
            raise self.damaged(rel, "empty" if not data else found) from None
        if kind is not None and not isinstance(value, kind):
            raise self.damaged(rel, f"holds a {type(value).__name__}, not a {kind.__name__}")
        return value

    def damaged(self, rel: str, problem: str) -> StoreDataError:
        """The error for a store file that is not what its writer writes."""
        from ganpipe.store.layout import writer_of

        return StoreDataError(
            f"{self.uri(rel)} is damaged: {problem}",
            where=self.uri(rel),
            fix=f"delete that file and rerun '{writer_of(rel)}', which writes it again",
        )

    def write_text(self, rel: str, text: str) -> str:
        return self.save(rel, text, formats.TEXT)

    def write_json(self, rel: str, obj: Any) -> str:
        return self.save(rel, obj, formats.JSON)

    def write_parquet(self, rel: str, frame: pd.DataFrame) -> str:
        return self.save(rel, frame, formats.PARQUET)

    def write_table(self, rel: str, table: pa.Table) -> str:
        """A pyarrow table as Parquet (no pandas round trip: lean for large manifests)."""
        return self.save(rel, table, formats.ARROW_TABLE)

    def write_npy(self, rel: str, array: np.ndarray) -> str:
        return self.save(rel, array, formats.NPY)

    def read_text(self, rel: str) -> str:
        return self.load(rel, formats.TEXT)

    def read_json(self, rel: str, kind: type | None = None) -> Any:
        """A JSON file (of type ``kind`` when given: the store's records are ``dict``)."""
        return self.load(rel, formats.JSON, kind)

    def read_parquet(self, rel: str) -> pd.DataFrame:
        return self.load(rel, formats.PARQUET)

    def read_npy(self, rel: str) -> np.ndarray:
        return self.load(rel, formats.NPY)

    # Moving and removing -------------------------------------------------------------------
    def move(self, src: str, dst: str) -> None:
        """Move a file or folder within the store: a rename locally, copy + delete on S3."""
        with self.guarded("move", f"{src} -> {dst}"):
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
            with self.guarded("remove", rel):
                self.fs.rm(self.path(rel), recursive=True)

    # Leftovers and locks (ownership.py, locks.py) ------------------------------------------
    def sweep(self, rel: str) -> list[str]:
        """Remove the working files (temporary names, staging folders) directly under ``rel``
        whose writer is gone: a process of this machine that no longer runs, or anyone's after
        ``ownership.STALE_AFTER_S`` without a change. Returns the names removed."""
        return ownership.sweep(self, rel)

    def lock(
        self, rel: str, *, timeout: float = 300.0, lease: float = 3600.0
    ) -> contextlib.AbstractContextManager[None]:
        """Hold the lock file ``rel`` (name it ``.lock-<what>``) while the block runs, so that
        two writers never interleave a read-decide-write sequence on the same files.

        Taking it is an exclusive create: ``O_CREAT|O_EXCL`` on a local (or NFSv3+) store, a
        conditional PUT (``If-None-Match: *``) on S3 and stores that honour it (AWS S3, MinIO,
        moto); on other fsspec filesystems the create is check-then-write and only best effort.
        A lock whose holder is a dead process of this machine, or whose lease expired (holders
        elsewhere; clocks are trusted to agree within minutes), is broken by the next taker.
        Re-entrant within a thread. Raises ``StoreError`` after ``timeout`` seconds of waiting.
        """
        return locks.hold(self, rel, timeout=timeout, lease=lease)

    # Errors (errors.py) --------------------------------------------------------------------
    def guarded(
        self, action: str, rel: str, missing_is_error: bool = False
    ) -> contextlib.AbstractContextManager[None]:
        """Storage failures inside the block as ``StoreError``s naming the action and place;
        for this package's modules (locks, ownership) as much as for this class."""
        return storage_errors(action, lambda: self._where(rel), missing_is_error=missing_is_error)

    def _where(self, rel: str) -> str:
        if not rel:
            return self.uri()
        return self.uri(rel) if "->" not in rel else f"{self.uri()} ({rel})"


def _write_then_rename(tmp: str, target: str, data: bytes | memoryview) -> None:
    """Write and fsync ``tmp``, then rename it over ``target``: a reader sees the old file or
    the new one, never part of it. The temporary file goes if anything fails."""
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
