"""Pixel shards: normalised images stored as uint8 ``.npy`` arrays of a bounded size.

Ingestion appends images and a shard is flushed to the store whenever it reaches its byte budget,
so memory stays flat however large the dataset; readers (styles, training) stream shard by
shard. Shards are first written under a staging folder because the dataset fingerprint (their
final folder) is known only once every input has been seen. The staging folder's name carries
its writer's token (see ``ganpipe.store``), so one left by a killed ingest is recognised and
swept by the next, while a running ingest's is left alone.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from ganpipe.store import RunStore, claim_working_name, release_working_name


class ShardWriter:
    def __init__(self, store: RunStore, staging: str, image_size: int, shard_mb: float):
        self.store = store
        self.staging = staging
        self.capacity = max(1, int(shard_mb * (1 << 20)) // (image_size * image_size * 3))
        # One preallocated buffer, filled in place and reused: no per-shard copies.
        self._buffer = np.empty((self.capacity, image_size, image_size, 3), np.uint8)
        self._count = 0
        self.names: list[str] = []

    def add(self, pixels: np.ndarray) -> tuple[str, int]:
        """Queue one image; returns (shard file name, offset) it will have."""
        if self._count == self.capacity:
            self.flush()
        self._buffer[self._count] = pixels
        self._count += 1
        return self._name(len(self.names)), self._count - 1

    def flush(self) -> None:
        if self._count:
            name = self._name(len(self.names))
            self.store.write_npy(f"{self.staging}/{name}", self._buffer[: self._count])
            self.names.append(name)
            self._count = 0

    @staticmethod
    def _name(index: int) -> str:
        return f"shard-{index:05d}.npy"

    @staticmethod
    def staging_folder(dataset_root: str) -> str:
        """A new staging folder name, marked in use by this process until ``release``."""
        return f"{dataset_root}/{claim_working_name('.staging-')}"

    def release(self) -> None:
        """The staging folder is moved into place or removed: no longer ours to protect."""
        release_working_name(self.staging.rsplit("/", 1)[-1])


class ShardCache:
    """A few recently read shards, for copying already-decoded images into a new dataset
    version without decoding them again. Images are read in the order they were written, so a
    small cache sees each shard once."""

    def __init__(self, store: RunStore, size: int = 2):
        self.store, self.size = store, size
        self._arrays: OrderedDict[str, np.ndarray] = OrderedDict()

    def get(self, path: str, offset: int) -> np.ndarray | None:
        if path not in self._arrays:
            if not self.store.exists(path):
                return None
            self._arrays[path] = self.store.read_npy(path)
            while len(self._arrays) > self.size:
                self._arrays.popitem(last=False)
        array = self._arrays[path]
        return array[offset] if offset < len(array) else None
