"""The built-in source plugins: folders and globs on any fsspec filesystem (local, s3://, ...),
CSV and Parquet manifests that list images, and the demo dataset.

Each is registered like a third-party source (``SOURCES``, picked up by ``ganpipe.builtin``), so
the core that turns ``dataset.sources`` into ``SourceItem``s (``ganpipe/data/source_listing.py``)
knows none of them by name (docs/architecture.md, "Plugins").
"""

from __future__ import annotations

import io
import os
import posixpath
from collections.abc import Iterator
from typing import Any

import fsspec

from ganpipe.data.file_reads import BoundedReader, special_kind
from ganpipe.data.source_listing import GLOB_CHARS, SourceItem, identity_of
from ganpipe.errors import ConfigError


def _open_fs(uri: str, storage_options: dict[str, Any]):
    options = storage_options if "://" in uri else {}
    try:
        return fsspec.core.url_to_fs(uri, **options)
    except (ImportError, ValueError) as exc:
        raise ConfigError(
            f"cannot open source {uri!r}: {exc}",
            where="dataset.sources",
            fix="use a local path, an s3:// URI, or install the fsspec backend for this scheme",
        ) from None


def _label_for(rel: str, mode: str) -> str | None:
    """With ``labels: dirs`` the first folder under the source's root names the style."""
    parts = rel.split("/")
    return escaped_name(parts[0]) if mode == "dirs" and len(parts) > 1 else None


def escaped_name(name: str) -> str:
    """A file name as text that can be stored and shown: names the filesystem gave as bytes
    that are not UTF-8 (Python holds those bytes as surrogates) get each such byte written
    ``\\xNN`` (and their backslashes doubled, so the bytes can be recovered exactly); every
    other name is left as it is."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        raw = name.replace("\\", "\\\\").encode("utf-8", "surrogateescape")
        return raw.decode("utf-8", "backslashreplace")


def name_bytes(shown: str) -> bytes:
    """The exact bytes of a name ``escaped_name`` wrote with ``\\xNN`` escapes (the inverse;
    for tools that must reach the file again)."""
    import re

    out, i = bytearray(), 0
    for match in re.finditer(r"\\\\|\\x([0-9a-f]{2})", shown):
        out += shown[i : match.start()].encode("utf-8")
        out += b"\\" if match.group(1) is None else bytes([int(match.group(1), 16)])
        i = match.end()
    return bytes(out + shown[i:].encode("utf-8"))


def _reader(fs, path: str) -> BoundedReader:
    return BoundedReader(fs, path, local="file" in _protocols_of(fs))


def _protocols_of(fs) -> tuple[str, ...]:
    proto = fs.protocol
    return (proto,) if isinstance(proto, str) else tuple(proto)


def _stat(fs, path: str):
    def stat() -> str | None:
        return identity_of(fs.info(path))

    return stat


def _display(fs, path: str, remote: bool) -> str:
    return fs.unstrip_protocol(path) if remote else escaped_name(path)


def folder_source(uri: str, config, storage_options: dict[str, Any]) -> Iterator[SourceItem]:
    """A folder (recursive), a glob, or a single file."""
    fs, path = _open_fs(uri, storage_options)
    remote = "://" in uri
    try:
        if any(c in path for c in GLOB_CHARS):
            fixed = path[: min(path.index(c) for c in GLOB_CHARS if c in path)]
            root = fixed.rsplit("/", 1)[0]
            entries = fs.glob(path, detail=True)
        elif fs.isdir(path):
            root = path.rstrip("/")
            entries = None if remote else dict(_walk_local(root))
            entries = fs.find(path, detail=True) if entries is None else entries
        elif fs.isfile(path):
            root = posixpath.dirname(path)
            entries = {path: fs.info(path)}
        else:
            entries = None
    except OSError as exc:
        raise ConfigError(
            f"cannot list source {uri!r}: {type(exc).__name__}: {exc}",
            where="dataset.sources",
            fix="check the path, the permissions, or the credentials in dataset.storage_options",
        ) from None
    if entries is None:
        raise ConfigError(
            f"source {uri!r} does not exist",
            where="dataset.sources",
            fix="check the path; a folder, a glob such as data/*.png, a .csv/.parquet manifest "
            "or 'demo' are accepted",
        )
    prefix = root.rstrip("/") + "/"
    for p, info in sorted(entries.items()):
        if info.get("type") == "directory":
            continue
        if info.get("kind"):  # a FIFO, socket, device...: refused without being opened
            problem = ("not_a_file", f"a {info['kind']}, not a regular file")
            yield SourceItem(_display(fs, p, remote), None, _reader(fs, p), problem=problem)
            continue
        yield SourceItem(
            uri=_display(fs, p, remote),
            label=_label_for(p[len(prefix) :] if p.startswith(prefix) else p, config.labels),
            read=_reader(fs, p),
            # Only regular files have a trustworthy identity; links and the like are re-read.
            identity=identity_of(info) if info.get("type") == "file" else None,
        )


def _walk_local(root: str) -> Iterator[tuple[str, dict]]:
    """A local folder's files with just what ingestion needs (far leaner than fsspec's full
    info dicts, which matters at hundreds of thousands of files). Symlinked folders are
    followed once; links that lead nowhere or in a loop, and sub-folders that cannot be read,
    are listed, so they are reported as unreadable instead of stopping the listing."""
    seen, stack = set(), [root]
    while stack:
        folder = stack.pop()
        real = os.path.realpath(folder)
        if real in seen:
            continue
        seen.add(real)
        try:
            entries = list(os.scandir(folder))
        except OSError:
            if folder == root:
                raise
            yield folder, {"type": "other"}
            continue
        for entry in entries:
            try:
                if entry.is_dir():
                    stack.append(entry.path)
                    continue
                if entry.is_file():
                    st = entry.stat()
                    yield entry.path, {"type": "file", "size": st.st_size, "mtime": st.st_mtime}
                    continue
                kind = special_kind(entry.stat().st_mode)  # links followed; nothing opened
                yield entry.path, {"type": "other", "kind": kind}
                continue
            except OSError:  # a symlink loop or to nowhere, a file gone meanwhile
                pass
            yield entry.path, {"type": "other"}


def manifest_source(uri: str, config, storage_options: dict[str, Any]) -> Iterator[SourceItem]:
    """A CSV or Parquet table with a path column (``dataset.path_column``) and, with
    ``labels: column:<name>``, a label column. Relative paths resolve against the manifest's
    folder and must stay inside it; absolute URIs (``s3://...``) and, for a local manifest,
    absolute paths are taken as they are."""
    fs, path = _open_fs(uri, storage_options)
    table = _read_table(fs, path, uri)
    column, label_column = _manifest_columns(table, config, uri)
    rows = _ManifestRows(uri, fs, path, storage_options)
    paths = table[column].tolist()
    labels = table[label_column].tolist() if label_column else [None] * len(paths)
    for row_no, (raw, value) in enumerate(zip(paths, labels)):
        label = None if _missing(value) else str(value)
        if _missing(raw) or not str(raw).strip():
            yield _refused(f"{uri} row {row_no + 1}", label, "unreadable", "the row has no path")
            continue
        entry = str(raw).strip()
        found = rows.resolve(entry, row_no)
        if isinstance(found, str):  # why the row is refused
            yield _refused(f"{entry} (in {uri})", label, "outside_root", found)
            continue
        target_fs, target, display, rel = found
        yield SourceItem(
            uri=display,
            label=label if label_column is not None else _label_for(rel, config.labels),
            read=_reader(target_fs, target),
            stat=_stat(target_fs, target),
        )


def _manifest_columns(table, config, uri: str) -> tuple[str, str | None]:
    """The manifest's path column and label column (None without ``labels: column:<name>``),
    both checked to be there."""
    column = config.path_column
    if column not in table.columns:
        raise ConfigError(
            f"manifest {uri} has no column {column!r}; its columns are: "
            f"{', '.join(map(str, table.columns))}",
            where="dataset.path_column",
            fix="set dataset.path_column to the column that holds the image paths",
        )
    label_column = config.labels.split(":", 1)[1] if config.labels.startswith("column:") else None
    if label_column is not None and label_column not in table.columns:
        raise ConfigError(
            f"manifest {uri} has no label column {label_column!r}; its columns are: "
            f"{', '.join(map(str, table.columns))}",
            where="dataset.labels",
        )
    return column, label_column


class _ManifestRows:
    """Where the rows of one manifest point: each entry resolved to its filesystem, path,
    display URI and the path relative to the manifest's folder (which names a ``dirs`` label).
    Filesystems of absolute URIs are opened once per scheme."""

    def __init__(self, uri: str, fs, path: str, storage_options: dict[str, Any]):
        self.uri, self.fs, self.storage_options = uri, fs, storage_options
        self.remote = "://" in uri
        self.root = posixpath.dirname(path)
        self.other_fs: dict[str, Any] = {}

    def resolve(self, entry: str, row_no: int) -> tuple[Any, str, str, str] | str:
        """(filesystem, path, display URI, relative path), or why the row is refused."""
        if "://" in entry:
            scheme = entry.split("://", 1)[0]
            if scheme not in self.other_fs:
                self.other_fs[scheme] = _open_fs(entry, self.storage_options)[0]
            target_fs = self.other_fs[scheme]
            target = target_fs._strip_protocol(entry)
            return target_fs, target, entry, posixpath.basename(target)
        if entry.startswith("/") and not self.remote:
            return self.fs, entry, entry, posixpath.basename(entry)
        root = self.root
        target = posixpath.normpath(
            posixpath.join(root, entry.lstrip("/") if self.remote else entry)
        )
        if not target.startswith(root.rstrip("/") + "/"):
            return f"row {row_no + 1} points outside the manifest's folder {root}"
        display = _display(self.fs, target, self.remote)
        return self.fs, target, display, posixpath.relpath(target, root)


def _read_table(fs, path: str, uri: str):
    import pandas as pd

    try:
        data = fs.cat_file(path)
    except FileNotFoundError:
        raise ConfigError(f"manifest {uri} does not exist", where="dataset.sources") from None
    try:
        if path.lower().endswith(".parquet"):
            return pd.read_parquet(io.BytesIO(data))
        return pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=True)
    except Exception as exc:
        raise ConfigError(
            f"cannot read manifest {uri}: {type(exc).__name__}: {str(exc)[:200]}",
            where="dataset.sources",
            fix="a manifest is a CSV file with a header row, or a Parquet file",
        ) from None


def _missing(value) -> bool:
    """None, NaN and pandas' NA (nullable Parquet columns) all mean "no value"."""
    import pandas as pd

    return value is None or (pd.api.types.is_scalar(value) and bool(pd.isna(value)))


def _refused(uri: str, label: str | None, reason: str, detail: str) -> SourceItem:
    def never() -> bytes:  # refused entries are never read
        raise PermissionError(detail)

    return SourceItem(uri=uri, label=label, read=never, problem=(reason, detail))


def demo_source(uri: str, config, storage_options: dict[str, Any]) -> Iterator[SourceItem]:
    """The built-in demo dataset, drawn to real PNG files and read back like any folder."""
    from ganpipe.data.demo import demo_dataset_dir

    folder = demo_dataset_dir(config.demo_per_style)
    yield from folder_source(str(folder), config, storage_options)


SOURCES = {
    "file": folder_source,
    "s3": folder_source,
    "demo": demo_source,
    ".csv": manifest_source,
    ".parquet": manifest_source,
}
