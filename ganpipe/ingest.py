"""Ingest stage: every input file becomes an accepted, normalised image or a quarantine record.

Counts always balance: inputs == accepted + rejected. The dataset fingerprint depends only on the
accepted content, its labels and the preprocessing settings, so ingesting the same data again
gives the same fingerprint and writes nothing new.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from ganpipe import layout
from ganpipe.config import Config
from ganpipe.decode import Decoded, DecodeSettings, Rejected, decode_image
from ganpipe.errors import GanpipeError
from ganpipe.hashing import sha256_bytes, stable_hash
from ganpipe.plugins import Registry, load_registry
from ganpipe.progress import log, step
from ganpipe.sources import SourceItem, list_items
from ganpipe.store import RunStore

SHARD_SIZE = 4096
MANIFEST_COLUMNS = ["id", "source", "sha256", "width", "height", "mode", "label", "split"]
REJECT_COLUMNS = ["source", "reason", "detail"]


@dataclass
class IngestResult:
    name: str
    fingerprint: str
    uri: str
    counts: dict[str, int] = field(default_factory=dict)
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    reused: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Outcome:
    item: SourceItem
    sha256: str | None
    result: Decoded | Rejected


def _process(item: SourceItem, settings: DecodeSettings) -> _Outcome:
    try:
        data = item.read()
    except Exception as exc:  # permissions, broken links, vanished objects
        return _Outcome(item, None, Rejected("unreadable", f"{type(exc).__name__}: {exc}"))
    return _Outcome(item, sha256_bytes(data), decode_image(data, settings))


def decode_settings(config: Config) -> DecodeSettings:
    d = config.dataset
    return DecodeSettings(d.image_size, d.resize, d.min_size, d.max_pixels)


def ingest(config: Config, store: RunStore, registry: Registry | None = None) -> IngestResult:
    registry = registry or load_registry(config)
    d = config.dataset
    settings = decode_settings(config)

    # List inputs.
    items = list_items(d, registry, config.store.storage_options)
    if not items:
        raise GanpipeError(
            "the dataset sources list no files",
            where=f"dataset.sources = {d.sources}",
            fix="point dataset.sources at a folder or glob that holds images",
        )

    # Read, hash and decode in parallel (PIL releases the GIL while decoding and resizing).
    with (
        step(f"ingest {d.name}", total=len(items)) as advance,
        ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool,
    ):
        outcomes = []
        for outcome in pool.map(lambda it: _process(it, settings), items):
            outcomes.append(outcome)
            advance(1)

    # Sort accepted from rejected; the first copy of identical bytes wins.
    accepted, rejects, first_seen = [], [], {}
    for o in outcomes:
        if isinstance(o.result, Rejected):
            rejects.append((o.item.uri, o.result.reason, o.result.detail))
        elif o.sha256 in first_seen:
            rejects.append((o.item.uri, "duplicate", f"same content as {first_seen[o.sha256]}"))
        else:
            first_seen[o.sha256] = o.item.uri
            accepted.append(o)
    assert len(accepted) + len(rejects) == len(items)  # nothing may go missing

    rejected_frame = pd.DataFrame(rejects, columns=REJECT_COLUMNS)
    by_reason = rejected_frame["reason"].value_counts().sort_index().to_dict()
    counts = {"inputs": len(items), "accepted": len(accepted), "rejected": len(rejects)}
    if not accepted:
        summary = ", ".join(f"{k}: {v}" for k, v in by_reason.items())
        raise GanpipeError(
            f"no usable images among {len(items)} inputs (rejected: {summary})",
            where=f"dataset.sources = {d.sources}",
            fix="check that the sources hold readable images of at least dataset.min_size pixels",
        )

    # Fingerprint: accepted content + labels + preprocessing, nothing else.
    accepted.sort(key=lambda o: o.sha256)
    preprocessing = {
        "image_size": d.image_size,
        "resize": d.resize,
        "val_fraction": d.val_fraction,
        "labels": d.labels,
        "format": 1,
    }
    fingerprint = stable_hash(
        {"images": [(o.sha256, o.item.label) for o in accepted], "preprocessing": preprocessing}
    )
    out = layout.dataset_dir(d.name, fingerprint)
    result = IngestResult(d.name, fingerprint, store.uri(out), counts, by_reason)

    if store.exists(f"{out}/manifest.parquet"):
        result.reused = True
        log.info("dataset %s/%s is unchanged: reusing it", d.name, fingerprint)
    else:
        _write_dataset(store, out, accepted, rejected_frame, config, result)
    store.write_json(layout.dataset_latest(d.name), {"fingerprint": fingerprint})
    return result


def _split(sha: str, val_fraction: float) -> str:
    """Deterministic per image: adding images never moves old ones between splits."""
    return "val" if int(sha[:8], 16) / 0xFFFFFFFF < val_fraction else "train"


def _write_dataset(store, out, accepted, rejected_frame, config, result) -> None:
    rows = []
    for start in range(0, len(accepted), SHARD_SIZE):
        chunk = accepted[start : start + SHARD_SIZE]
        shard = f"shards/shard-{start // SHARD_SIZE:05d}.npy"
        store.write_npy(f"{out}/{shard}", np.stack([o.result.pixels for o in chunk]))
        for offset, o in enumerate(chunk):
            rows.append(
                {
                    "id": o.sha256[:16],
                    "source": o.item.uri,
                    "sha256": o.sha256,
                    "width": o.result.width,
                    "height": o.result.height,
                    "mode": o.result.mode,
                    "label": o.item.label,
                    "split": _split(o.sha256, config.dataset.val_fraction),
                    "shard": shard,
                    "offset": offset,
                }
            )
    manifest = pd.DataFrame(rows)
    manifest["label"] = manifest["label"].astype("string")
    store.write_parquet(f"{out}/rejects.parquet", rejected_frame)
    store.write_text(f"{out}/config.yaml", config.to_yaml())
    store.write_json(f"{out}/summary.json", result.to_dict())
    store.write_parquet(f"{out}/manifest.parquet", manifest)  # last: marks the dataset complete
