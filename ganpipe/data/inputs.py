"""Deciding one input of an ingest: read, hash and decode it, or take its outcome from the
input cache without reading it.

Kept apart from the stage (``ganpipe/stages/ingest.py``) because this is the per-file work that
runs in decoder threads; the stage only orders it and counts. An input that cannot be reached
because its source is down is an outage (``StoreUnavailable``, retried by the flows), never a
reject: rejects are properties of the input itself.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

from ganpipe.data.decode import Decoded, DecodeSettings, Rejected, decode_image
from ganpipe.data.file_reads import NotRegularFile
from ganpipe.data.source_listing import SourceItem
from ganpipe.hashing import sha256_bytes
from ganpipe.store import StoreUnavailable, is_transient
from ganpipe.store.shards import ShardCache

CHUNK = 512  # inputs decoded per round; bounds the decoded pixels held at once


@dataclass(slots=True)
class Seen:
    """One input after reading and decoding, or after the input cache vouched for it."""

    item: SourceItem
    sha256: str | None
    result: Decoded | Rejected
    cached: dict | None = None  # the cache row it came from
    meta: tuple | None = None  # (width, height, mode) when its bytes decoded fine

    def __post_init__(self):
        if self.meta is None and isinstance(self.result, Decoded):
            self.meta = (self.result.width, self.result.height, self.result.mode)


def read_and_decode(item: SourceItem, settings: DecodeSettings, max_bytes: int) -> Seen:
    """Read the input's bytes, hash them and decode them; a failure of the input is a reject."""
    if item.problem is not None:
        return Seen(item, None, Rejected(*item.problem))
    try:
        # at most one byte past the limit: enough to know a file is too large, whatever its
        # listing said (a device reports size 0)
        bounded = getattr(item.read, "accepts_limit", False)
        data = item.read(limit=max_bytes + 1) if bounded else item.read()
    except NotRegularFile as exc:  # swapped for a FIFO or device since the listing
        return Seen(item, None, Rejected("not_a_file", f"a {exc.kind}, not a regular file"))
    except Exception as exc:  # permissions, broken links, vanished objects
        if is_transient(exc):  # an outage, not a property of this input: fail, to be retried
            raise StoreUnavailable(
                f"the input {item.uri} could not be reached ({type(exc).__name__}: "
                f"{str(exc)[:200]})",
                where="dataset.sources",
                fix="check that the source is up and reachable; a rerun reads only what is new",
            ) from exc
        return Seen(item, None, Rejected("unreadable", f"{type(exc).__name__}: {exc}"))
    if len(data) > max_bytes:
        detail = f"more than dataset.max_bytes={max_bytes} bytes (reading stopped there)"
        return Seen(item, None, Rejected("too_large", detail))  # only a part was read
    return Seen(item, sha256_bytes(data), decode_image(data, settings))


def refuse_if_too_large(item: SourceItem, max_bytes: int) -> SourceItem:
    """Refuse a file the listing says is too big: it is never downloaded, and, being decided
    without reading, it never stops a re-ingest from recognising unchanged data."""
    size = int(item.identity.split(":", 1)[0]) if item.identity else 0
    if size <= max_bytes or item.problem is not None:
        return item
    detail = f"{size} bytes exceeds dataset.max_bytes={max_bytes}"
    return SourceItem(item.uri, item.label, item.read, item.identity, None, ("too_large", detail))


def with_identity(item: SourceItem) -> SourceItem:
    """The item with the identity its listing did not know (``None`` if it cannot be had)."""
    try:
        identity = item.stat()
    except Exception:  # unreadable: ingest will read it and record why
        identity = None
    return SourceItem(item.uri, item.label, item.read, identity, None, item.problem)


def in_chunks(
    items: list[SourceItem],
    hits: list[dict | None],
    pool: Executor,
    settings: DecodeSettings,
    max_bytes: int,
) -> Iterator[list[Seen]]:
    """Inputs in URI order, CHUNK at a time; inputs the cache knows are not read."""
    for start in range(0, len(items), CHUNK):
        chunk = list(zip(items[start : start + CHUNK], hits[start : start + CHUNK]))
        todo = [it for it, h in chunk if h is None]
        fresh = iter(pool.map(lambda it: read_and_decode(it, settings, max_bytes), todo))
        yield [next(fresh) if h is None else from_cache(it, h) for it, h in chunk]


def from_cache(item: SourceItem, row: dict) -> Seen:
    """The input as its cache row describes it; a fine image's pixels are fetched later."""
    if item.problem is not None:
        return Seen(item, None, Rejected(*item.problem))
    if row["reason"] is not None:
        return Seen(item, row["sha256"], Rejected(row["reason"], row["detail"]), row)
    meta = (int(row["width"]), int(row["height"]), row["mode"])
    return Seen(item, row["sha256"], Decoded(None, *meta), row)


def with_pixels(s: Seen, shards: ShardCache, settings: DecodeSettings, max_bytes: int) -> Seen:
    """A cached fine image gets its pixels from its old shard, or, that shard being gone, is
    decoded after all; anything else is returned as it is."""
    if s.cached is None or s.meta is None:
        return s
    pixels = _cached_pixels(shards, s.cached)
    if pixels is None:
        return read_and_decode(s.item, settings, max_bytes)
    s.result = Decoded(pixels, *s.meta)
    return s


def _cached_pixels(shards: ShardCache, row: dict) -> np.ndarray | None:
    return None if row["shard"] is None else shards.get(row["shard"], int(row["offset"]))


def known_outcome(
    items: list[SourceItem], hits: list[dict]
) -> tuple[list[tuple[str, str]], Counter]:
    """What a full run would decide, from the input cache alone (the same rules as
    ``VersionWriter.take``): (sha256, label) of accepted images, and rejects by reason."""
    content, by_reason, first = [], Counter(), set()
    for it, h in zip(items, hits):
        reason = it.problem[0] if it.problem else h["reason"]
        if reason is None and h["sha256"] in first:
            reason = "duplicate"
        if reason is not None:
            by_reason[reason] += 1
        else:
            first.add(h["sha256"])
            content.append((h["sha256"], it.label or ""))
    return content, by_reason
