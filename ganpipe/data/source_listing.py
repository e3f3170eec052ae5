"""Turning ``dataset.sources`` entries into a list of input files.

A source yields ``SourceItem``s: the original URI, the style label the data carries (if any), a
callable that fetches the raw bytes, and the file's identity (size plus mtime or ETag) when the
listing already knows it. Fetching is deferred so ingestion can read in parallel, skip files
whose identity it has seen before, and account for an unreadable file as a reject instead of
failing the whole listing. A source can also hand over an entry it refuses outright (a manifest
row pointing outside its root) as a ``problem``, so that it is counted and reported, not lost.

This is the core every source goes through (which source handles a URI, duplicates across
sources, the order); the sources themselves are plugins, the built-in ones (folders, globs,
manifests, the demo) in ``ganpipe/builtin/sources.py`` (docs/architecture.md, "Plugins").
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ganpipe.errors import ConfigError

GLOB_CHARS = set("*?[")
MANIFEST_SUFFIXES = (".csv", ".parquet")


@dataclass(frozen=True, slots=True)
class SourceItem:
    uri: str
    label: str | None
    read: Callable[[], bytes]
    identity: str | None = None  # "size:version"; None when the listing does not know it
    stat: Callable[[], str | None] | None = None  # fetches ``identity`` when it is None
    problem: tuple[str, str] | None = None  # (reason, detail) for an entry refused unread


def source_key(uri: str) -> str:
    """Which registered source handles a URI: ``demo``, a file suffix, or the URI scheme."""
    if uri == "demo":
        return "demo"
    suffix = posixpath.splitext(uri.split("?", 1)[0])[1].lower()
    if suffix in MANIFEST_SUFFIXES:
        return suffix
    return uri.split("://", 1)[0] if "://" in uri else "file"


def identity_of(info: dict[str, Any]) -> str | None:
    """Size plus the strongest change marker the filesystem offers (ETag, else mtime)."""
    version = info.get("ETag") or info.get("etag") or info.get("mtime") or info.get("LastModified")
    if version is None or info.get("size") is None:
        return None
    return f"{info['size']}:{str(version).strip(chr(34))}"


def storage_options_for(config) -> dict[str, Any]:
    """Options for reading sources: the dataset's own, else the store's (one bucket, one set)."""
    from ganpipe.config import resolve_env_refs

    if config.dataset.storage_options:
        return resolve_env_refs(config.dataset.storage_options, "dataset.storage_options")
    return resolve_env_refs(config.store.storage_options, "store.storage_options")


def list_items(config, registry) -> list[SourceItem]:
    """Every input of every source, sorted by URI so runs are reproducible; an input listed
    twice is read once and its second listing reported as a duplicate."""
    d = config.dataset
    options = storage_options_for(config)
    items: list[SourceItem] = []
    seen: set[str] = set()
    names = registry.names("source")
    for i, uri in enumerate(d.sources):
        key = source_key(uri)
        if key not in names:
            raise ConfigError(
                f"no source handles {uri!r} (looked for {key!r}); available: {', '.join(names)}",
                where=f"dataset.sources[{i}]",
                fix="use a folder, a glob, a .csv/.parquet manifest, 'demo', or install a plugin "
                "for this kind of URI",
            )
        source = registry.create(
            "source",
            key,
            config_key=f"dataset.sources[{i}]",
            uri=uri,
            config=d,
            storage_options=options,
        )
        for item in source:
            if item.uri in seen:  # counted and reported, never silently dropped
                item = SourceItem(
                    item.uri,
                    item.label,
                    item.read,
                    problem=("duplicate", "listed more than once in the sources"),
                )
            seen.add(item.uri)
            items.append(item)
    return sorted(items, key=lambda it: (it.uri, it.problem is not None))
