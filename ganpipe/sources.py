"""Turning ``dataset.sources`` entries into a list of input files.

A source yields ``SourceItem``s: the original URI, the style label the data carries (if any), and
a callable that fetches the raw bytes. Fetching is deferred so ingestion can read in parallel and
account for an unreadable file as a reject instead of failing the listing.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ganpipe.errors import ConfigError

GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class SourceItem:
    uri: str
    label: str | None
    read: Callable[[], bytes]


def source_key(uri: str) -> str:
    """Which registered source handles a URI: ``demo``, a file suffix, or the URI scheme."""
    if uri == "demo":
        return "demo"
    suffix = posixpath.splitext(uri.split("?", 1)[0])[1].lower()
    if suffix in (".csv", ".parquet"):
        return suffix
    return uri.split("://", 1)[0] if "://" in uri else "file"


def list_items(config, registry, storage_options: dict[str, Any] | None = None) -> list[SourceItem]:
    """Every input of every source, sorted by URI so runs are reproducible; an input listed by
    two sources is kept once."""
    items: dict[str, SourceItem] = {}
    for i, uri in enumerate(config.sources):
        key = source_key(uri)
        names = registry.names("source")
        if key not in names:
            raise ConfigError(
                f"no source handles {uri!r} (looked for {key!r}); available: {', '.join(names)}",
                where=f"dataset.sources[{i}]",
                fix="use a folder, a glob, 'demo', or install a plugin for this kind of URI",
            )
        source = registry.create(
            "source",
            key,
            config_key=f"dataset.sources[{i}]",
            uri=uri,
            config=config,
            storage_options=storage_options or {},
        )
        for item in source:
            items.setdefault(item.uri, item)
    return [items[k] for k in sorted(items)]
