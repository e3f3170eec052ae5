"""Ingest stage: every input file becomes an accepted, normalised image or a quarantine record.

Counts always balance: inputs == accepted + rejected. The dataset fingerprint depends only on the
accepted content, its labels and the preprocessing settings, so ingesting the same data again
gives the same fingerprint. Ingestion is incremental: what each input (by URI, size and mtime or
ETag) hashed and decoded to is remembered in ``datasets/<name>/inputs.parquet``, so unchanged
data is not read again and adding files decodes only the new ones.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

from ganpipe import layout
from ganpipe.config import Config
from ganpipe.decode import Decoded, DecodeSettings, Rejected, decode_image
from ganpipe.errors import GanpipeError
from ganpipe.hashing import sha256_bytes, stable_hash
from ganpipe.plugins import Registry, load_registry
from ganpipe.progress import log, step
from ganpipe.shards import ShardCache, ShardWriter
from ganpipe.sources import SourceItem, list_items
from ganpipe.store import RunStore

CHUNK = 512  # inputs decoded per round; bounds the decoded pixels held at once


@dataclass
class IngestResult:
    name: str
    fingerprint: str
    uri: str
    counts: dict[str, int] = field(default_factory=dict)
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    decoded: int = 0  # inputs read and decoded in this run
    reused_inputs: int = 0  # inputs known from an earlier run, not decoded again
    reused: bool = False  # the dataset version already existed

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(slots=True)
class _Seen:
    """One input after reading and decoding, or after the input cache vouched for it."""

    item: SourceItem
    sha256: str | None
    result: Decoded | Rejected
    cached: dict | None = None  # the cache row it came from
    meta: tuple | None = None  # (width, height, mode) when its bytes decoded fine
    slot: tuple[str, int] | None = None  # (shard, offset) its pixels were written to

    def __post_init__(self):
        if self.meta is None and isinstance(self.result, Decoded):
            self.meta = (self.result.width, self.result.height, self.result.mode)

    def duplicate_of(self, twin_uri: str) -> _Seen:
        reject = Rejected("duplicate", f"same content as {twin_uri}")
        return _Seen(self.item, self.sha256, reject, self.cached, self.meta)


def decode_settings(config: Config) -> DecodeSettings:
    d = config.dataset
    return DecodeSettings(d.image_size, d.resize, d.min_size, d.max_pixels, tuple(d.background))


def preprocessing(config: Config) -> dict:
    """Everything besides content and labels that shapes a dataset version's pixels."""
    d = config.dataset
    return {"image_size": d.image_size, "resize": d.resize, "background": list(d.background),
            "val_fraction": d.val_fraction, "labels": d.labels, "format": 1}  # fmt: skip


def _read_and_decode(item: SourceItem, settings: DecodeSettings, max_bytes: int) -> _Seen:
    if item.problem is not None:
        return _Seen(item, None, Rejected(*item.problem))
    listed_size = int(item.identity.split(":", 1)[0]) if item.identity else 0
    if listed_size > max_bytes:  # known from the listing: never downloaded
        detail = f"{listed_size} bytes exceeds dataset.max_bytes={max_bytes}"
        return _Seen(item, None, Rejected("too_large", detail))
    try:
        data = item.read()
    except Exception as exc:  # permissions, broken links, vanished objects
        return _Seen(item, None, Rejected("unreadable", f"{type(exc).__name__}: {exc}"))
    if len(data) > max_bytes:
        detail = f"{len(data)} bytes exceeds dataset.max_bytes={max_bytes}"
        return _Seen(item, sha256_bytes(data), Rejected("too_large", detail))
    return _Seen(item, sha256_bytes(data), decode_image(data, settings))


def ingest(config: Config, store: RunStore, registry: Registry | None = None) -> IngestResult:
    registry = registry or load_registry(config)
    d = config.dataset
    settings = decode_settings(config)
    settings_key = stable_hash(asdict(settings))
    workers = d.workers or os.cpu_count() or 1

    # List inputs, and learn the identity of those the listing did not describe.
    items = list_items(config, registry)
    if not items:
        raise GanpipeError(
            "the dataset sources list no files",
            where=f"dataset.sources = {d.sources}",
            fix="point dataset.sources at a folder, glob or manifest that lists images",
        )
    with ThreadPoolExecutor(max_workers=workers) as pool:
        unknown = [i for i, it in enumerate(items) if it.identity is None and it.stat is not None]
        for i, item in zip(unknown, pool.map(_with_identity, [items[i] for i in unknown])):
            items[i] = item
        cache = _load_cache(store, d.name)
        hits = [cache.get((it.uri, it.identity, settings_key)) if it.identity else None
                for it in items]  # fmt: skip

        # Fast path: every input is known and the dataset version exists: nothing to read.
        if all(h is not None or it.problem for h, it in zip(hits, items)):
            seen = [_from_cache(it, h) for it, h in zip(items, hits)]
            accepted, rejects = _sort_out(seen)
            fingerprint = _fingerprint(accepted, config)
            if store.exists(f"{layout.dataset_dir(d.name, fingerprint)}/manifest.parquet"):
                result = _result(config, store, fingerprint, items, accepted, rejects, 0)
                result.reused = True
                log.info("dataset %s/%s is unchanged: nothing to read", d.name, fingerprint)
                store.write_json(layout.dataset_latest(d.name), {"fingerprint": fingerprint})
                return result

        # Read, hash and decode what is new, in parallel (PIL releases the GIL while it
        # decodes and resizes); stream accepted pixels into shards as they come.
        dataset_root = f"datasets/{d.name}"
        writer = ShardWriter(store, ShardWriter.staging_folder(dataset_root), d.image_size,
                             d.shard_mb)  # fmt: skip
        shards = ShardCache(store)
        accepted, rejects, first_uri, decoded = [], [], {}, 0
        with step(f"ingest {d.name}", total=len(items)) as advance:
            for seen_chunk in _chunks(items, hits, pool, settings, d.max_bytes):
                for s in seen_chunk:
                    if s.cached is not None and s.meta is not None:  # known to decode fine
                        pixels = _cached_pixels(shards, s.cached)
                        if pixels is None:  # its old shard is gone: decode after all
                            s = _read_and_decode(s.item, settings, d.max_bytes)
                        else:
                            s.result = Decoded(pixels, *s.meta)
                    decoded += s.cached is None and s.item.problem is None
                    if isinstance(s.result, Rejected):
                        rejects.append(s)
                    elif s.sha256 in first_uri:
                        rejects.append(s.duplicate_of(first_uri[s.sha256]))
                    else:
                        first_uri[s.sha256] = s.item.uri
                        s.slot = writer.add(s.result.pixels)
                        s.result = Decoded(None, *s.meta)  # the shard holds the pixels now
                        accepted.append(s)
                advance(len(seen_chunk))
        writer.flush()

    fingerprint = _fingerprint(accepted, config)
    result = _result(config, store, fingerprint, items, accepted, rejects, decoded)
    out = layout.dataset_dir(d.name, fingerprint)
    if store.exists(f"{out}/manifest.parquet"):
        result.reused = True
        store.remove(writer.staging)
    else:
        if writer.names:
            store.move(writer.staging, f"{out}/shards")
        _write_dataset(store, out, accepted, rejects, config, result)
    _save_cache(store, d.name, out, accepted, rejects, settings_key, result.reused)
    store.write_json(layout.dataset_latest(d.name), {"fingerprint": fingerprint})
    return result


def _with_identity(item: SourceItem) -> SourceItem:
    if item.identity is not None or item.stat is None or item.problem is not None:
        return item
    try:
        identity = item.stat()
    except Exception:  # unreadable: ingest will read it and record why
        identity = None
    return SourceItem(item.uri, item.label, item.read, identity, None, item.problem)


def _chunks(items, hits, pool, settings, max_bytes) -> Iterator[list[_Seen]]:
    """Inputs in URI order, CHUNK at a time; inputs the cache knows are not read."""
    for start in range(0, len(items), CHUNK):
        chunk = list(zip(items[start : start + CHUNK], hits[start : start + CHUNK]))
        todo = [it for it, h in chunk if h is None]
        fresh = iter(pool.map(lambda it: _read_and_decode(it, settings, max_bytes), todo))
        yield [next(fresh) if h is None else _from_cache(it, h) for it, h in chunk]


def _from_cache(item: SourceItem, row: dict | None) -> _Seen:
    if item.problem is not None or row is None:
        return _Seen(item, None, Rejected(*(item.problem or ("unreadable", "not cached"))))
    if row["reason"] is not None:
        return _Seen(item, row["sha256"], Rejected(row["reason"], row["detail"]), row)
    meta = (int(row["width"]), int(row["height"]), row["mode"])
    return _Seen(item, row["sha256"], Decoded(None, *meta), row)


def _cached_pixels(shards: ShardCache, row: dict) -> np.ndarray | None:
    return None if row["shard"] is None else shards.get(row["shard"], int(row["offset"]))


def _sort_out(seen: list[_Seen]) -> tuple[list[_Seen], list[_Seen]]:
    """Accepted and rejected, the first copy of identical bytes winning (as in a full run)."""
    accepted, rejects, first = [], [], {}
    for s in seen:
        if isinstance(s.result, Rejected):
            rejects.append(s)
        elif s.sha256 in first:
            rejects.append(s.duplicate_of(first[s.sha256]))
        else:
            first[s.sha256] = s.item.uri
            accepted.append(s)
    return accepted, rejects


def _fingerprint(accepted: list[_Seen], config: Config) -> str:
    content = sorted((s.sha256, s.item.label or "") for s in accepted)
    return stable_hash({"images": content, "preprocessing": preprocessing(config)})


def _result(config, store, fingerprint, items, accepted, rejects, decoded) -> IngestResult:
    by_reason = pd.Series([s.result.reason for s in rejects], dtype="string").value_counts()
    counts = {"inputs": len(items), "accepted": len(accepted), "rejected": len(rejects)}
    if counts["inputs"] != counts["accepted"] + counts["rejected"]:
        raise AssertionError(f"ingest lost track of inputs: {counts}")  # must never happen
    if not accepted:
        summary = ", ".join(f"{k}: {v}" for k, v in sorted(by_reason.items()))
        raise GanpipeError(
            f"no usable images among {len(items)} inputs (rejected: {summary})",
            where=f"dataset.sources = {config.dataset.sources}",
            fix="check that the sources hold readable images of at least dataset.min_size pixels",
        )
    name = config.dataset.name
    return IngestResult(
        name,
        fingerprint,
        store.uri(layout.dataset_dir(name, fingerprint)),
        counts,
        {k: int(v) for k, v in sorted(by_reason.items())},
        decoded,
        len(items) - decoded,
    )


def _split(sha: str, val_fraction: float) -> str:
    """Deterministic per image: adding images never moves old ones between splits."""
    return "val" if int(sha[:8], 16) / 0xFFFFFFFF < val_fraction else "train"


def _write_dataset(store, out, accepted, rejects, config, result) -> None:
    # Built column by column with pyarrow: no per-row Python objects, so writing a manifest of
    # many thousands of images costs little memory beyond the columns themselves.
    manifest = pa.table({
        "id": [s.sha256[:16] for s in accepted],
        "source": [s.item.uri for s in accepted],
        "sha256": [s.sha256 for s in accepted],
        "width": pa.array([s.meta[0] for s in accepted], pa.int64()),
        "height": pa.array([s.meta[1] for s in accepted], pa.int64()),
        "mode": [s.meta[2] for s in accepted],
        "label": pa.array([s.item.label for s in accepted], pa.string()),
        "split": [_split(s.sha256, config.dataset.val_fraction) for s in accepted],
        "shard": [f"shards/{s.slot[0]}" for s in accepted],
        "offset": pa.array([s.slot[1] for s in accepted], pa.int64()),
    })  # fmt: skip
    rejected = pa.table({
        "source": pa.array([s.item.uri for s in rejects], pa.string()),
        "reason": pa.array([s.result.reason for s in rejects], pa.string()),
        "detail": pa.array([s.result.detail for s in rejects], pa.string()),
    })  # fmt: skip
    store.write_table(f"{out}/rejects.parquet", rejected)
    store.write_text(f"{out}/config.yaml", config.to_yaml())
    store.write_json(f"{out}/summary.json", result.to_dict())
    store.write_table(f"{out}/manifest.parquet", manifest)  # last: marks the dataset complete


# The input cache ---------------------------------------------------------------------------


def _load_cache(store: RunStore, name: str) -> dict[tuple, dict]:
    rel = layout.dataset_input_cache(name)
    if not store.exists(rel):
        return {}
    frame = store.read_parquet(rel).astype(object)
    frame = frame.where(frame.notna(), None)
    columns = list(frame.columns)
    rows = (dict(zip(columns, values)) for values in zip(*(frame[c].tolist() for c in columns)))
    return {(r["source"], r["identity"], r["settings"]): r for r in rows}


def _save_cache(store, name, out, accepted, rejects, settings_key, reused) -> None:
    """Remember every input with a known identity: its hash and what decoding it gave."""
    if reused:  # the version existed before this run: its shards are where the manifest says
        manifest = store.read_parquet(f"{out}/manifest.parquet")
        slot = dict(zip(manifest["sha256"], zip(manifest["shard"], manifest["offset"])))
    else:
        slot = {s.sha256: (f"shards/{s.slot[0]}", s.slot[1]) for s in accepted}
    keep = [
        s for s in accepted + rejects
        if s.item.identity is not None and s.sha256 is not None
        and (s.meta is not None or s.result.reason != "unreadable")  # nothing stable to remember
    ]  # fmt: skip
    # A duplicate is remembered as what its bytes are (fine), and finds its pixels in its
    # twin's shard: the same bytes give the same pixels.
    slots = [slot.get(s.sha256) if s.meta is not None else None for s in keep]
    table = pa.table({
        "source": pa.array([s.item.uri for s in keep], pa.string()),
        "identity": pa.array([s.item.identity for s in keep], pa.string()),
        "settings": pa.array([settings_key] * len(keep), pa.string()),
        "sha256": pa.array([s.sha256 for s in keep], pa.string()),
        "reason": pa.array([None if s.meta else s.result.reason for s in keep], pa.string()),
        "detail": pa.array([None if s.meta else s.result.detail for s in keep], pa.string()),
        "width": pa.array([s.meta[0] if s.meta else None for s in keep], pa.int64()),
        "height": pa.array([s.meta[1] if s.meta else None for s in keep], pa.int64()),
        "mode": pa.array([s.meta[2] if s.meta else None for s in keep], pa.string()),
        "shard": pa.array([f"{out}/{x[0]}" if x else None for x in slots], pa.string()),
        "offset": pa.array([x[1] if x else None for x in slots], pa.int64()),
    })  # fmt: skip
    store.write_table(layout.dataset_input_cache(name), table)
