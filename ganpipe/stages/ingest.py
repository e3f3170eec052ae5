"""Ingest stage: every input file becomes an accepted, normalised image or a quarantine record.

Counts always balance: inputs == accepted + rejected. The dataset fingerprint depends only on the
accepted content, its labels and the preprocessing settings, so ingesting the same data again
gives the same fingerprint. Ingestion is incremental: what each input (by URI, size and mtime or
ETag) hashed and decoded to is remembered in the version's ``inputs.parquet``
(``ganpipe.data.input_cache``), so unchanged data is not read again and adding files decodes only
the new ones. Outputs are streamed as inputs are decided (``ganpipe.data.version_writer``), so
memory stays nearly flat however many images there are.

A killed ingest loses nothing and leaves nothing visible: pixels go to a staging folder that only
a complete run moves into place, the manifest is written last, and the next run sweeps staging
folders whose writer is gone. Two ingests finishing the same version take turns (a lock), and a
source that cannot be reached fails the run (to be retried) instead of turning its images into
rejects.

This module orders the work and counts; the per-input work (read, hash, decode, or vouched for
by the cache) is in ``ganpipe.data.inputs``.
"""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import asdict

import pandas  # noqa: F401  pyarrow loads it on its first table; do it here, not mid-stream

from ganpipe.config import Config
from ganpipe.data import inputs
from ganpipe.data.dataset import version_damage
from ganpipe.data.decode import decode_settings
from ganpipe.data.input_cache import load_input_cache
from ganpipe.data.source_listing import SourceItem, list_items
from ganpipe.data.version_writer import IngestResult, VersionWriter
from ganpipe.errors import GanpipeError, PluginError
from ganpipe.hashing import stable_hash
from ganpipe.progress import log, step
from ganpipe.registry import Registry, load_registry
from ganpipe.store import RunStore, StoreUnavailable, is_transient, layout
from ganpipe.store.errors import StoreDataError
from ganpipe.store.shards import ShardCache


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
    settings_key = stable_hash(asdict(decode_settings(config)))
    swept = store.sweep(layout.dataset_root(d.name))
    if swept:
        log.info("removed %d staging folder(s) left by interrupted ingests", len(swept))
    items = _list(config, registry)
    with ThreadPoolExecutor(max_workers=d.workers or os.cpu_count() or 1) as pool:
        items = _identified(items, pool, d.max_bytes)
        cache = load_input_cache(store, d.name)
        hits = [cache.get((it.uri, it.identity, settings_key)) if it.identity else None
                for it in items]  # fmt: skip
        del cache
        result = _unchanged(config, store, items, hits)
        if result is None:
            result = _write_version(config, store, items, hits, pool, settings_key)
    store.write_json(layout.dataset_latest(d.name), _pointer(store, d.name, result.fingerprint))
    return result


def _pointer(store: RunStore, name: str, fingerprint: str) -> dict:
    """``latest.json``: the newest version, and every version that was newest before it, in
    order (the styles stage follows this history to keep style names across versions)."""
    history: list[str] = []
    pointer = layout.dataset_latest(name)
    try:
        found = store.read_json(pointer, dict) if store.exists(pointer) else {}
        history = [str(f) for f in found.get("history", [found["fingerprint"]])] if found else []
    except (StoreDataError, KeyError, TypeError, AttributeError):
        history = []  # a damaged pointer: this version starts the history again
    if not history or history[-1] != fingerprint:
        history.append(fingerprint)
    return {"fingerprint": fingerprint, "history": history}


def _identified(items: list[SourceItem], pool: Executor, max_bytes: int) -> list[SourceItem]:
    """The inputs with the identity the listing did not describe, and those the listing already
    shows to be too large refused unread."""
    unknown = [i for i, it in enumerate(items) if it.identity is None and it.stat is not None]
    for i, item in zip(unknown, pool.map(inputs.with_identity, [items[i] for i in unknown])):
        items[i] = item
    return [inputs.refuse_if_too_large(it, max_bytes) for it in items]


def _unchanged(
    config: Config, store: RunStore, items: list[SourceItem], hits: list[dict | None]
) -> IngestResult | None:
    """Fast path: every input is known and the dataset version exists: nothing to read."""
    if not all(h is not None or it.problem for h, it in zip(hits, items)):
        return None
    d = config.dataset
    content, by_reason = inputs.known_outcome(items, hits)
    fingerprint = fingerprint_of(content, config)
    folder = layout.dataset_dir(d.name, fingerprint)
    manifest = layout.DatasetFiles(folder).manifest
    if not content or not store.exists(manifest) or version_damage(store, folder):
        return None
    result = _result(config, store, fingerprint, len(items), len(content), by_reason, 0)
    result.reused = True
    log.info("dataset %s/%s is unchanged: nothing to read", d.name, fingerprint)
    return result


def _write_version(
    config: Config,
    store: RunStore,
    items: list[SourceItem],
    hits: list[dict | None],
    pool: Executor,
    settings_key: str,
) -> IngestResult:
    """Read, hash and decode what is new, in parallel (PIL releases the GIL while it decodes and
    resizes); each input's outputs are streamed out as it is decided."""
    d = config.dataset
    settings = decode_settings(config)
    version = VersionWriter(store, config, settings_key)
    shards = ShardCache(store)
    decoded = 0
    try:
        with step(f"ingest {d.name}", total=len(items)) as advance:
            for chunk in inputs.in_chunks(items, hits, pool, settings, d.max_bytes):
                for s in chunk:
                    s = inputs.with_pixels(s, shards, settings, d.max_bytes)
                    decoded += s.cached is None and s.item.problem is None
                    version.take(s)
                advance(len(chunk))
        fingerprint = fingerprint_of(version.content, config)
        result = _result(config, store, fingerprint, len(items), len(version.content),
                         version.by_reason, decoded)  # fmt: skip
        version.finish(result, config)
    finally:
        version.discard()
    return result


def _list(config: Config, registry: Registry) -> list[SourceItem]:
    """Every input; a source that cannot be reached is an outage (retried by the flows), one
    whose plugin raises is named, and sources that list nothing are a clear error."""
    try:
        items = list_items(config, registry)
    except GanpipeError:
        raise
    except Exception as exc:
        failure = _listing_failure(exc, config, registry)
        if failure is None:
            raise
        raise failure from exc
    if not items:
        raise GanpipeError(
            "the dataset sources list no files",
            where=f"dataset.sources = {config.dataset.sources}",
            fix="point dataset.sources at a folder, glob or manifest that lists images",
        )
    return items


def _listing_failure(exc: Exception, config: Config, registry: Registry) -> GanpipeError | None:
    """What listing the sources failing with ``exc`` means to the user; None when it is
    neither an outage nor a plugin's fault (a bug, raised as it is)."""
    if is_transient(exc):
        problem = f"{type(exc).__name__}: {str(exc)[:200]}"
        return StoreUnavailable(
            f"the dataset sources could not be listed ({problem})",
            where=f"dataset.sources = {config.dataset.sources}",
            fix="check that the source is up and reachable, then rerun",
        )
    plugin = registry.blame(exc)
    if plugin is None:
        return None
    return PluginError(
        f"plugin {plugin!r} raised while listing the dataset sources: {type(exc).__name__}: {exc}",
        where="ganpipe_sources",
        fix="fix or uninstall the plugin, or remove its sources from dataset.sources",
    )


def _result(config: Config, store: RunStore, fingerprint: str, total: int, accepted: int,
            by_reason: Counter, decoded: int) -> IngestResult:  # fmt: skip
    """The stage's record, once the counts are known to balance: total == accepted + rejected."""
    rejected = sum(by_reason.values())
    if total != accepted + rejected:
        raise AssertionError(f"ingest lost track of inputs: {total} != {accepted} + {rejected}")
    if not accepted:
        summary = ", ".join(f"{k}: {v}" for k, v in sorted(by_reason.items()))
        raise GanpipeError(
            f"no usable images among {total} inputs (rejected: {summary})",
            where=f"dataset.sources = {config.dataset.sources}",
            fix="check that the sources hold readable images of at least dataset.min_size pixels",
        )
    name = config.dataset.name
    return IngestResult(
        name, fingerprint, store.uri(layout.dataset_dir(name, fingerprint)),
        {"inputs": total, "accepted": accepted, "rejected": rejected},
        dict(sorted(by_reason.items())), decoded, total - decoded,
    )  # fmt: skip
