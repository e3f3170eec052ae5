"""The run store: one root URI, local or s3://, holding every stage's inputs and outputs.

Writes are atomic so that a reader (another stage, another run, a person) never sees a
half-written file under its final name: locally through a temporary name and a rename, on object
stores through a single PUT, which only becomes visible once complete. Stages write their
manifests last, so a manifest's presence means everything it lists is there.
"""

from __future__ import annotations

import io
import json
import os
import posixpath
import uuid
from typing import TYPE_CHECKING, Any

import fsspec

from ganpipe.errors import StoreError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


class RunStore:
    """Relative paths (``datasets/demo/<fp>/manifest.parquet``) resolved under one root URI."""

    def __init__(self, root: str, storage_options: dict[str, Any] | None = None):
        from ganpipe.config import resolve_env_refs

        options = resolve_env_refs(storage_options or {}, "store.storage_options")
        try:
            self.fs, root_path = fsspec.core.url_to_fs(root, **options)
        except (ValueError, ImportError) as exc:
            raise StoreError(
                f"cannot open the run store {root!r}: {exc}",
                where="store.root",
                fix="use a local path or an s3://bucket/prefix URI",
            ) from None
        self.local = "file" in _protocols(self.fs)
        self.root = os.path.abspath(root_path) if self.local else root_path.rstrip("/")

    @classmethod
    def from_config(cls, config) -> RunStore:
        return cls(config.store.root, config.store.storage_options)

    # Paths ---------------------------------------------------------------------------------
    def path(self, *parts: str) -> str:
        """Filesystem path of a store-relative location (what ``self.fs`` understands)."""
        return posixpath.join(self.root, *parts) if parts else self.root

    def uri(self, *parts: str) -> str:
        """Full URI for people and summaries: a plain path locally, ``s3://...`` otherwise."""
        return self.fs.unstrip_protocol(self.path(*parts)) if not self.local else self.path(*parts)

    def exists(self, *parts: str) -> bool:
        return self.fs.exists(self.path(*parts))

    def listdir(self, *parts: str) -> list[str]:
        """Names directly under a folder (empty when it does not exist)."""
        try:
            entries = self.fs.ls(self.path(*parts), detail=False)
        except FileNotFoundError:
            return []
        return sorted(posixpath.basename(e.rstrip("/")) for e in entries)

    # Atomic writes -------------------------------------------------------------------------
    def write_bytes(self, rel: str, data: bytes | memoryview) -> str:
        target = self.path(rel)
        if self.local:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            tmp = f"{target}.tmp-{uuid.uuid4().hex}"
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
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

        # allow_pickle=False: arrays in a store may come from anyone; never unpickle them.
        return np.load(io.BytesIO(self.read_bytes(rel)), allow_pickle=False)

    def move(self, src: str, dst: str) -> None:
        """Move a file or folder within the store: a rename locally, copy + delete on S3."""
        if self.local:
            os.makedirs(os.path.dirname(self.path(dst)), exist_ok=True)
            os.replace(self.path(src), self.path(dst))
        else:
            self.fs.mv(self.path(src), self.path(dst), recursive=True)

    def remove(self, rel: str) -> None:
        if self.exists(rel):
            self.fs.rm(self.path(rel), recursive=True)


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
