"""Built-in sources: folders and globs on any fsspec filesystem, and the demo dataset."""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from typing import Any

import fsspec

from ganpipe.errors import ConfigError
from ganpipe.sources import GLOB_CHARS, SourceItem


def _label_for(path: str, root: str, mode: str) -> str | None:
    if mode != "dirs":
        return None
    rel = posixpath.relpath(path, root)
    parts = rel.split("/")
    return parts[0] if len(parts) > 1 else None


def folder_source(uri: str, config, storage_options: dict[str, Any]) -> Iterator[SourceItem]:
    """A folder (recursive) or a glob; with ``labels: dirs`` the first sub-folder under the
    folder (or under the glob's fixed prefix) is the label."""
    options = storage_options if "://" in uri else {}
    fs, path = fsspec.core.url_to_fs(uri, **options)
    if any(c in path for c in GLOB_CHARS):
        root = path[: min(path.index(c) for c in GLOB_CHARS if c in path)].rsplit("/", 1)[0]
        paths = [p for p in fs.glob(path) if not fs.isdir(p)]
    elif fs.isdir(path):
        root = path.rstrip("/")
        paths = fs.find(path)
    elif fs.isfile(path):
        root = posixpath.dirname(path)
        paths = [path]
    else:
        raise ConfigError(
            f"source {uri!r} does not exist",
            where="dataset.sources",
            fix="check the path; a folder, a glob such as data/*.png or 'demo' are accepted",
        )
    for p in sorted(paths):
        yield SourceItem(
            uri=fs.unstrip_protocol(p) if "://" in uri else p,
            label=_label_for(p, root, config.labels),
            read=_reader(fs, p),
        )


def _reader(fs, path: str):
    def read() -> bytes:
        return fs.cat_file(path)

    return read


def demo_source(uri: str, config, storage_options: dict[str, Any]) -> Iterator[SourceItem]:
    """The built-in demo dataset, drawn to real PNG files and read back like any folder."""
    from ganpipe.demo import demo_dataset_dir

    folder = demo_dataset_dir(config.demo_per_style)
    yield from folder_source(str(folder), config, storage_options)


SOURCES = {"file": folder_source, "s3": folder_source, "demo": demo_source}
