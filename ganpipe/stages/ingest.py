"""Ingest stage: every input file becomes an accepted, normalised image or a quarantine record.

Counts always balance: inputs == accepted + rejected. The dataset fingerprint depends only on the
accepted content, its labels and the preprocessing settings, so ingesting the same data again
gives the same fingerprint. Ingestion is incremental: what each input (by URI, size and mtime or
ETag) hashed and decoded to is remembered in the version's ``inputs.parquet``, so unchanged
data is not read again and adding files decodes only the new ones. Outputs are streamed as
inputs are decided (pixels into shards, rows into Parquet), so memory stays nearly flat however
many images there are.

A killed ingest loses nothing and leaves nothing visible: pixels go to a staging folder that only
a complete run moves into place, the manifest is written last, and the next run sweeps staging
folders whose writer is gone. Two ingests finishing the same version take turns (a lock), and a
source that cannot be reached fails the run (to be retried) instead of turning its images into
rejects.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import pandas  # noqa: F401  pyarrow loads it on its first table; do it here, not mid-stream
import pyarrow as pa
import pyarrow.parquet as pq

from ganpipe.config import Config
from ganpipe.data.decode import Decoded, DecodeSettings, Rejected, decode_image
from ganpipe.data.source_listing import SourceItem, list_items
from ganpipe.errors import GanpipeError, PluginError
from ganpipe.hashing import sha256_bytes, stable_hash
from ganpipe.progress import log, step
from ganpipe.registry import Registry, load_registry
from ganpipe.store import RunStore, StoreUnavailable, is_transient, layout
from ganpipe.store.shards import ShardCache, ShardWriter

CHUNK = 512  # inputs decoded per round; bounds the decoded pixels held at once

MANIFEST_SCHEMA = pa.schema([
    ("id", pa.string()), ("source", pa.string()), ("sha256", pa.string()),
    ("width", pa.int64()), ("height", pa.int64()), ("mode", pa.string()),
    ("label", pa.string()), ("split", pa.string()), ("shard", pa.string()),
    ("offset", pa.int64()),
])  # fmt: skip
REJECTS_SCHEMA = pa.schema([("source", pa.string()), ("reason", pa.string()),
                            ("detail", pa.string())])  # fmt: skip
CACHE_SCHEMA = pa.schema([
    ("source", pa.string()), ("identity", pa.string()), ("settings", pa.string()),
    ("sha256", pa.string()), ("reason", pa.string()), ("detail", pa.string()),
    ("width", pa.int64()), ("height", pa.int64()), ("mode", pa.string()),
    ("shard", pa.string()), ("offset", pa.int64()),
])  # fmt: skip


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

    def __post_init__(self):
        if self.meta is None and isinstance(self.result, Decoded):
            self.meta = (self.result.width, self.result.height, self.result.mode)


def decode_settings(config: Config) -> DecodeSettings:
    d = config.dataset
    return DecodeSettings(d.image_size, d.resize, d.min_size, d.max_pixels, tuple(d.background))


def preprocessing(config: Config) -> dict:
    """Everything besides content and labels that shapes a dataset version's pixels."""
    d = config.dataset
    return {"image_size": d.image_size, "resize": d.resize, "background": list(d.background),
            "val_fraction": d.val_fraction, "labels": d.labels, "format": 1}  # fmt: skip


def fingerprint_of(content: list[tuple[str, str]], config: Config) -> str:
    """``content``: (sha256, label) of every accepted image, in any order."""
    return stable_hash({"images": sorted(content), "preprocessing": preprocessing(config)})


def _fewer_malloc_arenas() -> None:
    """Decoder threads allocate pixel buffers that the main thread frees; glibc then grows one
    arena per thread and fragments them, so resident memory creeps up with the number of
    images. Two arenas keep it flat at no measurable cost in speed. A no-op off glibc."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-8, 2)  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass


def ingest(config: Config, store: RunStore, registry: Registry | None = None) -> IngestResult:
    registry = registry or load_registry(config)
    _fewer_malloc_arenas()
    d = config.dataset
    settings = decode_settings(config)
    settings_key = stable_hash(asdict(settings))

    swept = store.sweep(f"datasets/{d.name}")
    if swept:
        log.info("removed %d staging folder(s) left by interrupted ingests", len(swept))

    # List inputs, and learn the identity of those the listing did not describe.
    items = _list(config, registry)
    if not items:
        raise GanpipeError(
            "the dataset sources list no files",
            where=f"dataset.sources = {d.sources}",
            fix="point dataset.sources at a folder, glob or manifest that lists images",
        )
    with ThreadPoolExecutor(max_workers=d.workers or os.cpu_count() or 1) as pool:
        unknown = [i for i, it in enumerate(items) if it.identity is None and it.stat is not None]
        for i, item in zip(unknown, pool.map(_with_identity, [items[i] for i in unknown])):
            items[i] = item
        items = [_too_large_by_listing(it, d.max_bytes) for it in items]
        cache = _load_cache(store, d.name)
        hits = [cache.get((it.uri, it.identity, settings_key)) if it.identity else None
                for it in items]  # fmt: skip
        del cache

        # Fast path: every input is known and the dataset version exists: nothing to read.
        if all(h is not None or it.problem for h, it in zip(hits, items)):
            content, by_reason = _known_outcome(items, hits)
            fingerprint = fingerprint_of(content, config)
            if content and store.exists(
                f"{layout.dataset_dir(d.name, fingerprint)}/manifest.parquet"
            ):
                result = _result(config, store, fingerprint, len(items), len(content), by_reason, 0)
                result.reused = True
                log.info("dataset %s/%s is unchanged: nothing to read", d.name, fingerprint)
                store.write_json(layout.dataset_latest(d.name), {"fingerprint": fingerprint})
                return result

        # Read, hash and decode what is new, in parallel (PIL releases the GIL while it
        # decodes and resizes); each input's outputs are streamed out as it is decided.
        version = _VersionWriter(store, config, settings_key)
        shards = ShardCache(store)
        decoded = 0
        try:
            with step(f"ingest {d.name}", total=len(items)) as advance:
                for chunk in _chunks(items, hits, pool, settings, d.max_bytes):
                    for s in chunk:
                        if s.cached is not None and s.meta is not None:  # known to decode fine
                            pixels = _cached_pixels(shards, s.cached)
                            if pixels is None:  # its old shard is gone: decode after all
                                s = _read_and_decode(s.item, settings, d.max_bytes)
                            else:
                                s.result = Decoded(pixels, *s.meta)
                        decoded += s.cached is None and s.item.problem is None
                        version.take(s)
                    advance(len(chunk))
            fingerprint = fingerprint_of(version.content, config)
            result = _result(config, store, fingerprint, len(items), len(version.content),
                             version.by_reason, decoded)  # fmt: skip
            version.finish(result, config)
        finally:
            version.discard()
    store.write_json(layout.dataset_latest(d.name), {"fingerprint": fingerprint})
    return result


class _VersionWriter:
    """Decides each input (accepted, or rejected with its reason, the first copy of identical
    bytes winning) and streams the outputs: pixels into shards under a staging folder, manifest,
    rejects and input-cache rows into Parquet files in a local temporary folder. Per image only
    its hash, label and where its pixels went stay in memory."""

    def __init__(self, store: RunStore, config: Config, settings_key: str):
        d = config.dataset
        self.store, self.settings_key, self.val_fraction = store, settings_key, d.val_fraction
        self.name = d.name
        self.shards = ShardWriter(store, ShardWriter.staging_folder(f"datasets/{d.name}"),
                                  d.image_size, d.shard_mb)  # fmt: skip
        self.tmp = tempfile.mkdtemp(prefix="ganpipe-ingest-")
        self.manifest = _ParquetSink(os.path.join(self.tmp, "manifest.parquet"), MANIFEST_SCHEMA)
        self.rejects = _ParquetSink(os.path.join(self.tmp, "rejects.parquet"), REJECTS_SCHEMA)
        self.cache = _ParquetSink(os.path.join(self.tmp, "inputs.parquet"), CACHE_SCHEMA)
        self.first: dict[str, tuple[str, str, int]] = {}  # sha256 -> (uri, shard, offset)
        self.content: list[tuple[str, str]] = []  # (sha256, label) of accepted images
        self.by_reason: Counter[str] = Counter()

    def take(self, s: _Seen) -> None:
        if isinstance(s.result, Rejected):
            self._reject(s.item.uri, s.result.reason, s.result.detail)
            self._remember(s, None)
        elif s.sha256 in self.first:
            twin, shard, offset = self.first[s.sha256]
            self._reject(s.item.uri, "duplicate", f"same content as {twin}")
            self._remember(s, (shard, offset))  # same bytes, same pixels: its twin's
        else:
            shard, offset = self.shards.add(s.result.pixels)
            self.first[s.sha256] = (s.item.uri, shard, offset)
            width, height, mode = s.meta
            self.manifest.add(
                id=s.sha256[:16], source=s.item.uri, sha256=s.sha256, width=width,
                height=height, mode=mode, label=s.item.label,
                split=_split(s.sha256, self.val_fraction), shard=f"shards/{shard}", offset=offset,
            )  # fmt: skip
            self.content.append((s.sha256, s.item.label or ""))
            self._remember(s, (shard, offset))

    def _reject(self, uri: str, reason: str, detail: str) -> None:
        self.rejects.add(source=uri, reason=reason, detail=detail)
        self.by_reason[reason] += 1

    def _remember(self, s: _Seen, slot: tuple[str, int] | None) -> None:
        """An input cache row: its hash and what decoding its bytes gave."""
        fine = s.meta is not None
        if (
            s.item.identity is None
            or s.sha256 is None
            or (not fine and s.result.reason == "unreadable")
        ):
            return  # nothing stable to remember
        self.cache.add(
            source=s.item.uri, identity=s.item.identity, settings=self.settings_key,
            sha256=s.sha256, reason=None if fine else s.result.reason,
            detail=None if fine else s.result.detail,
            width=s.meta[0] if fine else None, height=s.meta[1] if fine else None,
            mode=s.meta[2] if fine else None,
            shard=f"shards/{slot[0]}" if fine and slot else None,
            offset=slot[1] if fine and slot else None,
        )  # fmt: skip

    def finish(self, result: IngestResult, config: Config) -> None:
        self.shards.flush()
        for sink in (self.manifest, self.rejects, self.cache):
            sink.close()
        # Two runs finishing the same version would race between "no manifest yet" and moving
        # their shards into place; they take turns, and the second finds the first's version.
        with self.store.lock(f"datasets/{self.name}/.lock-{result.fingerprint}"):
            self._place(result, config, layout.dataset_dir(self.name, result.fingerprint))

    def _place(self, result: IngestResult, config: Config, out: str) -> None:
        if self.store.exists(f"{out}/manifest.parquet"):
            # The version existed (only its input cache was lost or stale): keep its files and
            # point the new input cache at its shards.
            result.reused = True
            existing = self.store.read_parquet(f"{out}/manifest.parquet")
            slots = dict(zip(existing["sha256"], zip(existing["shard"], existing["offset"])))
            cache = _point_at(pq.ParquetFile(self.cache.path).read(), slots)
            self.store.write_table(layout.dataset_input_cache(self.name, result.fingerprint), cache)
            return
        self.store.remove(f"{out}/shards")  # left by a run that crashed before its manifest
        self.store.sweep(out)  # temporary files of a run killed mid-write
        if self.shards.names:
            self.store.move(self.shards.staging, f"{out}/shards")
        self.store.write_bytes(f"{out}/rejects.parquet", _read(self.rejects.path))
        self.store.write_bytes(f"{out}/inputs.parquet", _read(self.cache.path))
        self.store.write_text(f"{out}/config.yaml", config.to_yaml())
        self.store.write_json(f"{out}/summary.json", result.to_dict())
        # Last: the manifest's presence marks the version complete.
        self.store.write_bytes(f"{out}/manifest.parquet", _read(self.manifest.path))

    def discard(self) -> None:
        """Remove temporary files and, unless moved into place, the staged shards."""
        for sink in (self.manifest, self.rejects, self.cache):
            sink.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
        try:
            if self.store.exists(self.shards.staging):
                self.store.remove(self.shards.staging)
        finally:
            self.shards.release()


class _ParquetSink:
    """Rows appended a batch at a time to a Parquet file."""

    BATCH = 4096

    def __init__(self, path: str, schema: pa.Schema):
        self.path, self.schema = path, schema
        self._writer = pq.ParquetWriter(path, schema)
        self._columns: dict[str, list] = {name: [] for name in schema.names}
        self._rows = 0

    def add(self, **row) -> None:
        for name, values in self._columns.items():
            values.append(row[name])
        self._rows += 1
        if self._rows == self.BATCH:
            self._flush()

    def _flush(self) -> None:
        if self._rows:
            self._writer.write_table(pa.table(self._columns, schema=self.schema))
            self._columns = {name: [] for name in self.schema.names}
            self._rows = 0

    def close(self) -> None:
        if self._writer is not None:
            self._flush()
            self._writer.close()
            self._writer = None


def _read(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def _point_at(cache: pa.Table, slots: dict[str, tuple[str, int]]) -> pa.Table:
    fine = cache["reason"].is_null().to_pylist()
    found = [slots.get(sha) if ok else None for sha, ok in zip(cache["sha256"].to_pylist(), fine)]
    cache = cache.set_column(
        cache.schema.get_field_index("shard"),
        "shard",
        pa.array([f[0] if f else None for f in found], pa.string()),
    )
    return cache.set_column(
        cache.schema.get_field_index("offset"),
        "offset",
        pa.array([f[1] if f else None for f in found], pa.int64()),
    )


def _read_and_decode(item: SourceItem, settings: DecodeSettings, max_bytes: int) -> _Seen:
    if item.problem is not None:
        return _Seen(item, None, Rejected(*item.problem))
    try:
        data = item.read()
    except Exception as exc:  # permissions, broken links, vanished objects
        if is_transient(exc):  # an outage, not a property of this input: fail, to be retried
            raise StoreUnavailable(
                f"the input {item.uri} could not be reached ({type(exc).__name__}: "
                f"{str(exc)[:200]})",
                where="dataset.sources",
                fix="check that the source is up and reachable; a rerun reads only what is new",
            ) from exc
        return _Seen(item, None, Rejected("unreadable", f"{type(exc).__name__}: {exc}"))
    if len(data) > max_bytes:
        detail = f"{len(data)} bytes exceeds dataset.max_bytes={max_bytes}"
        return _Seen(item, sha256_bytes(data), Rejected("too_large", detail))
    return _Seen(item, sha256_bytes(data), decode_image(data, settings))


def _list(config: Config, registry: Registry) -> list[SourceItem]:
    """Every input; a source that cannot be reached is an outage (retried by the flows), and one
    whose plugin raises is named."""
    try:
        return list_items(config, registry)
    except GanpipeError:
        raise
    except Exception as exc:
        if is_transient(exc):
            problem = f"{type(exc).__name__}: {str(exc)[:200]}"
            raise StoreUnavailable(
                f"the dataset sources could not be listed ({problem})",
                where=f"dataset.sources = {config.dataset.sources}",
                fix="check that the source is up and reachable, then rerun",
            ) from exc
        plugin = registry.blame(exc)
        if plugin is None:
            raise
        raise PluginError(
            f"plugin {plugin!r} raised while listing the dataset sources: "
            f"{type(exc).__name__}: {exc}",
            where="ganpipe_sources",
            fix="fix or uninstall the plugin, or remove its sources from dataset.sources",
        ) from exc


def _too_large_by_listing(item: SourceItem, max_bytes: int) -> SourceItem:
    """Refuse a file the listing says is too big: it is never downloaded, and, being decided
    without reading, it never stops a re-ingest from recognising unchanged data."""
    size = int(item.identity.split(":", 1)[0]) if item.identity else 0
    if size <= max_bytes or item.problem is not None:
        return item
    detail = f"{size} bytes exceeds dataset.max_bytes={max_bytes}"
    return SourceItem(item.uri, item.label, item.read, item.identity, None, ("too_large", detail))


def _with_identity(item: SourceItem) -> SourceItem:
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


def _from_cache(item: SourceItem, row: dict) -> _Seen:
    if item.problem is not None:
        return _Seen(item, None, Rejected(*item.problem))
    if row["reason"] is not None:
        return _Seen(item, row["sha256"], Rejected(row["reason"], row["detail"]), row)
    meta = (int(row["width"]), int(row["height"]), row["mode"])
    return _Seen(item, row["sha256"], Decoded(None, *meta), row)


def _known_outcome(items, hits) -> tuple[list[tuple[str, str]], Counter]:
    """What a full run would decide, from the input cache alone (same rules as _VersionWriter)."""
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


def _cached_pixels(shards: ShardCache, row: dict):
    return None if row["shard"] is None else shards.get(row["shard"], int(row["offset"]))


def _result(config, store, fingerprint, inputs, accepted, by_reason, decoded) -> IngestResult:
    rejected = sum(by_reason.values())
    if inputs != accepted + rejected:
        raise AssertionError(f"ingest lost track of inputs: {inputs} != {accepted} + {rejected}")
    if not accepted:
        summary = ", ".join(f"{k}: {v}" for k, v in sorted(by_reason.items()))
        raise GanpipeError(
            f"no usable images among {inputs} inputs (rejected: {summary})",
            where=f"dataset.sources = {config.dataset.sources}",
            fix="check that the sources hold readable images of at least dataset.min_size pixels",
        )
    name = config.dataset.name
    return IngestResult(
        name, fingerprint, store.uri(layout.dataset_dir(name, fingerprint)),
        {"inputs": inputs, "accepted": accepted, "rejected": rejected},
        dict(sorted(by_reason.items())), decoded, inputs - decoded,
    )  # fmt: skip


def _split(sha: str, val_fraction: float) -> str:
    """Deterministic per image: adding images never moves old ones between splits."""
    return "val" if int(sha[:8], 16) / 0xFFFFFFFF < val_fraction else "train"


def _load_cache(store: RunStore, name: str) -> dict[tuple, dict]:
    """The input cache of the dataset's latest version; its shard paths become store paths."""
    if not store.exists(layout.dataset_latest(name)):
        return {}
    fingerprint = store.read_json(layout.dataset_latest(name))["fingerprint"]
    rel = layout.dataset_input_cache(name, fingerprint)
    if not store.exists(rel):
        return {}
    table = pq.ParquetFile(pa.BufferReader(store.read_bytes(rel))).read()
    columns = {c: table[c].to_pylist() for c in table.column_names}
    folder = layout.dataset_dir(name, fingerprint)
    columns["shard"] = [f"{folder}/{x}" if x else None for x in columns["shard"]]
    rows = (dict(zip(columns, values)) for values in zip(*columns.values()))
    return {(r["source"], r["identity"], r["settings"]): r for r in rows}
