"""Writing one dataset version as its inputs are decided: accepted images into shards and the
manifest, quarantined ones into the rejects, every decision into the input cache.

Outputs are streamed, so memory stays nearly flat however many images there are, and staged, so
a killed ingest leaves nothing visible: pixels go to a staging folder that only a complete run
moves into place, and the manifest, whose presence marks a version complete, is written last
(docs/architecture.md, "The store").
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from ganpipe.config import Config
from ganpipe.data.dataset import version_damage
from ganpipe.data.decode import Rejected
from ganpipe.data.input_cache import CACHE_SCHEMA, point_at
from ganpipe.data.inputs import Seen
from ganpipe.progress import log
from ganpipe.store import RunStore, layout
from ganpipe.store.shards import ShardWriter


@dataclass
class IngestResult:
    """What an ingest made: the dataset version, its counts, and what it reused. Defined here,
    where the version is placed; the ingest stage returns it."""

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


MANIFEST_SCHEMA = pa.schema([
    ("id", pa.string()), ("source", pa.string()), ("sha256", pa.string()),
    ("width", pa.int64()), ("height", pa.int64()), ("mode", pa.string()),
    ("label", pa.string()), ("split", pa.string()), ("shard", pa.string()),
    ("offset", pa.int64()),
])  # fmt: skip
REJECTS_SCHEMA = pa.schema([("source", pa.string()), ("reason", pa.string()),
                            ("detail", pa.string())])  # fmt: skip


class VersionWriter:
    """Decides each input (accepted, or rejected with its reason, the first copy of identical
    bytes winning) and streams the outputs: pixels into shards under a staging folder, manifest,
    rejects and input-cache rows into Parquet files in a local temporary folder. Per image only
    its hash, label and where its pixels went stay in memory."""

    def __init__(self, store: RunStore, config: Config, settings_key: str):
        d = config.dataset
        self.store, self.settings_key, self.val_fraction = store, settings_key, d.val_fraction
        self.name = d.name
        self.shards = ShardWriter(store, ShardWriter.staging_folder(layout.dataset_root(d.name)),
                                  d.image_size, d.shard_mb)  # fmt: skip
        self.tmp = tempfile.mkdtemp(prefix="ganpipe-ingest-")
        self.manifest = ParquetSink(os.path.join(self.tmp, "manifest.parquet"), MANIFEST_SCHEMA)
        self.rejects = ParquetSink(os.path.join(self.tmp, "rejects.parquet"), REJECTS_SCHEMA)
        self.cache = ParquetSink(os.path.join(self.tmp, "inputs.parquet"), CACHE_SCHEMA)
        self.first: dict[str, tuple[str, str, int]] = {}  # sha256 -> (uri, shard, offset)
        self.content: list[tuple[str, str]] = []  # (sha256, label) of accepted images
        self.by_reason: Counter[str] = Counter()

    def take(self, s: Seen) -> None:
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
                split=split_of(s.sha256, self.val_fraction), shard=f"shards/{shard}",
                offset=offset,
            )  # fmt: skip
            self.content.append((s.sha256, s.item.label or ""))
            self._remember(s, (shard, offset))

    def _reject(self, uri: str, reason: str, detail: str) -> None:
        self.rejects.add(source=uri, reason=reason, detail=detail)
        self.by_reason[reason] += 1

    def _remember(self, s: Seen, slot: tuple[str, int] | None) -> None:
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
        with self.store.lock(layout.dataset_lock(self.name, result.fingerprint)):
            self._place(result, config, layout.dataset_dir(self.name, result.fingerprint))

    def _place(self, result: IngestResult, config: Config, out: str) -> None:
        files = layout.DatasetFiles(out)
        damage = version_damage(self.store, out)
        if damage:  # a torn manifest or a lost shard: the version is written again, whole
            log.warning("%s: writing dataset version %s again", damage, result.fingerprint)
            self.store.remove(out)
        elif self.store.exists(files.manifest):
            # The version existed (only its input cache was lost or stale): keep its files and
            # point the new input cache at its shards.
            result.reused = True
            existing = self.store.read_parquet(files.manifest)
            slots = dict(zip(existing["sha256"], zip(existing["shard"], existing["offset"])))
            cache = point_at(pq.ParquetFile(self.cache.path).read(), slots)
            self.store.write_table(files.inputs, cache)
            return
        self.store.remove(files.shards)  # left by a run that crashed before its manifest
        self.store.sweep(out)  # temporary files of a run killed mid-write
        if self.shards.names:
            self.store.move(self.shards.staging, files.shards)
        self.store.write_bytes(files.rejects, _read(self.rejects.path))
        self.store.write_bytes(files.inputs, _read(self.cache.path))
        self.store.write_text(files.config, config.to_yaml())
        self.store.write_json(files.summary, result.to_dict())
        # Last: the manifest's presence marks the version complete.
        self.store.write_bytes(files.manifest, _read(self.manifest.path))

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


class ParquetSink:
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


def split_of(sha: str, val_fraction: float) -> str:
    """Deterministic per image: adding images never moves old ones between splits."""
    return "val" if int(sha[:8], 16) / 0xFFFFFFFF < val_fraction else "train"


def _read(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()
