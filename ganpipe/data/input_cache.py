"""The input cache of a dataset version (``inputs.parquet``): what each input, by URI, identity
(size plus mtime or ETag) and decode settings, hashed and decoded to.

It is what makes ingestion incremental: an input whose row matches is not read again, and a fine
image's pixels are taken from the shard the row points at. Shard paths in it are relative to the
version's folder, so the cache moves with the version (docs/architecture.md, "The store").
"""

from __future__ import annotations

import pyarrow as pa

from ganpipe.store import RunStore, layout
from ganpipe.store.formats import ARROW_TABLE

CACHE_SCHEMA = pa.schema([
    ("source", pa.string()), ("identity", pa.string()), ("settings", pa.string()),
    ("sha256", pa.string()), ("reason", pa.string()), ("detail", pa.string()),
    ("width", pa.int64()), ("height", pa.int64()), ("mode", pa.string()),
    ("shard", pa.string()), ("offset", pa.int64()),
])  # fmt: skip

CacheKey = tuple[str, str, str]  # (source URI, identity, settings key)


def load_input_cache(store: RunStore, name: str) -> dict[CacheKey, dict]:
    """The input cache of the dataset's latest version; its shard paths become store paths.
    Empty when there is none, or when the pointer, the cache or the version it describes is
    damaged: every input is then read again and the version written anew."""
    from ganpipe.data.dataset import latest_fingerprint, version_damage
    from ganpipe.progress import log
    from ganpipe.store import StoreDataError

    if not store.exists(layout.dataset_latest(name)):
        return {}
    try:
        fingerprint = latest_fingerprint(store, name)
        folder = layout.dataset_dir(name, fingerprint)
        rel = layout.DatasetFiles(folder).inputs
        damage = version_damage(store, folder)
        if damage or not store.exists(rel):
            if damage:
                log.warning("%s: reading every input again", damage)
            return {}
        table = store.load(rel, ARROW_TABLE)
    except StoreDataError as exc:
        log.warning("%s: reading every input again", exc.what)
        return {}
    columns = {c: table[c].to_pylist() for c in table.column_names}
    columns["shard"] = [f"{folder}/{x}" if x else None for x in columns["shard"]]
    rows = (dict(zip(columns, values)) for values in zip(*columns.values()))
    return {(r["source"], r["identity"], r["settings"]): r for r in rows}


def point_at(cache: pa.Table, slots: dict[str, tuple[str, int]]) -> pa.Table:
    """The cache rows of fine images re-pointed at an existing version's shards (``slots``:
    sha256 -> (shard, offset)); rows of rejects keep no shard."""
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
