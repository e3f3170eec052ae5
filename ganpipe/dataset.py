"""Reading an ingested dataset back: its manifest and its pixels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ganpipe import layout
from ganpipe.errors import StoreError
from ganpipe.store import RunStore


@dataclass
class Dataset:
    name: str
    fingerprint: str
    manifest: pd.DataFrame  # rows in shard order, aligned with ``pixels``
    pixels: np.ndarray  # (N, H, W, 3) uint8

    def subset(self, mask) -> Dataset:
        mask = np.asarray(mask, dtype=bool)
        return Dataset(
            self.name,
            self.fingerprint,
            self.manifest[mask].reset_index(drop=True),
            self.pixels[mask],
        )


def latest_fingerprint(store: RunStore, name: str) -> str:
    pointer = layout.dataset_latest(name)
    if not store.exists(pointer):
        raise StoreError(
            f"dataset {name!r} has not been ingested into {store.uri()}",
            where="dataset.name",
            fix="run 'ganpipe ingest' (or 'ganpipe run') with this config first",
        )
    return store.read_json(pointer)["fingerprint"]


def load_dataset(store: RunStore, name: str, fingerprint: str | None = None) -> Dataset:
    fingerprint = fingerprint or latest_fingerprint(store, name)
    folder = layout.dataset_dir(name, fingerprint)
    manifest = store.read_parquet(f"{folder}/manifest.parquet")
    arrays = [store.read_npy(f"{folder}/{shard}") for shard in manifest["shard"].unique()]
    return Dataset(name, fingerprint, manifest, np.concatenate(arrays))


def to_tensor(pixels: np.ndarray):
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [-1, 1], the range every model sees."""
    import torch

    pixels = np.ascontiguousarray(pixels)
    if not pixels.flags.writeable:  # torch cannot share read-only memory
        pixels = pixels.copy()
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def to_pixels(images) -> np.ndarray:
    """float (N, 3, H, W) in [-1, 1] -> uint8 (N, H, W, 3)."""
    arr = ((images.detach().float().clamp(-1, 1) + 1.0) * 127.5).round()
    return arr.permute(0, 2, 3, 1).to("cpu").numpy().astype(np.uint8)
