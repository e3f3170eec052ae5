"""Reading an ingested dataset back: its manifest, and its pixels shard by shard.

Nothing here holds a whole large dataset in memory unless asked to: stages stream shards
(``iter_shards``), load only the rows they need (``load_pixels``), or train from a bounded
window of shards (``TrainingImages``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ganpipe.errors import StoreError
from ganpipe.store import RunStore, layout


@dataclass
class Dataset:
    """A dataset version's manifest; pixels are read on demand."""

    store: RunStore
    name: str
    fingerprint: str
    manifest: pd.DataFrame

    @property
    def folder(self) -> str:
        return layout.dataset_dir(self.name, self.fingerprint)

    def iter_shards(
        self, rows: pd.DataFrame | None = None
    ) -> Iterator[tuple[pd.DataFrame, np.ndarray]]:
        """(rows, pixels) per shard, for ``rows`` (default: all) in manifest order."""
        rows = self.manifest if rows is None else rows
        for shard, part in rows.groupby("shard", sort=False):
            array = self.store.read_npy(f"{self.folder}/{shard}")
            yield part, array[part["offset"].to_numpy()]

    def load_pixels(self, rows: pd.DataFrame | None = None) -> np.ndarray:
        """Pixels of ``rows`` (default: all), in the order of ``rows``."""
        rows = self.manifest if rows is None else rows
        if len(rows) == 0:
            return np.zeros((0, 0, 0, 3), np.uint8)
        out: np.ndarray | None = None
        position = {label: i for i, label in enumerate(rows.index)}
        for part, pixels in self.iter_shards(rows):
            if out is None:
                out = np.empty((len(rows), *pixels.shape[1:]), np.uint8)
            out[[position[i] for i in part.index]] = pixels
        return out

    def rows_for(self, ids) -> pd.DataFrame:
        """Manifest rows of the given image ids, in that order."""
        by_id = self.manifest.reset_index().set_index("id")
        return self.manifest.loc[by_id.loc[list(ids), "index"].to_numpy()]

    def sample(self, per_group: int, by: pd.Series, seed: int = 0,
               rows: pd.DataFrame | None = None) -> pd.DataFrame:  # fmt: skip
        """At most ``per_group`` rows of each group of ``by`` (seeded), for statistics that do
        not need every image; from ``rows`` (a part of the manifest, ``by`` aligned with it)
        or the whole manifest."""
        rows = self.manifest if rows is None else rows
        if len(rows) == 0:
            return rows
        frame = rows.assign(_group=by.to_numpy())
        picked = frame.groupby("_group", group_keys=False).apply(
            lambda g: g.sample(min(len(g), per_group), random_state=seed), include_groups=False
        )
        return rows.loc[sorted(picked.index)]


def latest_fingerprint(store: RunStore, name: str) -> str:
    pointer = layout.dataset_latest(name)
    if not store.exists(pointer):
        raise StoreError(
            f"dataset {name!r} has not been ingested into {store.uri()}",
            where="dataset.name",
            fix="run 'ganpipe ingest' (or 'ganpipe run') with this config first",
        )
    fingerprint = store.read_json(pointer, dict).get("fingerprint")
    if not isinstance(fingerprint, str) or not fingerprint:
        raise store.damaged(pointer, "it names no dataset version")
    return fingerprint


def version_damage(store: RunStore, folder: str) -> str | None:
    """What is wrong with a dataset version's files (None: its manifest reads and every shard
    it lists is there): a version in that state is written again by the next ingest."""
    from ganpipe.store import StoreDataError

    files = layout.DatasetFiles(folder)
    if not store.exists(files.manifest):
        return None
    try:
        manifest = store.read_parquet(files.manifest)
        shards = {str(s) for s in manifest["shard"].dropna().unique()}
    except (StoreDataError, KeyError) as exc:
        return getattr(exc, "what", f"{store.uri(files.manifest)} is damaged")
    present = set(store.listdir(files.shards))
    lost = sorted(s for s in shards if s.rsplit("/", 1)[-1] not in present)
    return f"{store.uri(folder)} lacks {', '.join(lost[:3])}" if lost else None


def load_dataset(store: RunStore, name: str, fingerprint: str | None = None) -> Dataset:
    fingerprint = fingerprint or latest_fingerprint(store, name)
    files = layout.DatasetFiles(layout.dataset_dir(name, fingerprint))
    manifest = store.read_parquet(files.manifest)
    return Dataset(store, name, fingerprint, manifest)


class TrainingImages:
    """Random training batches streamed from shards within a memory budget.

    When every training image fits in ``budget_mb`` they are all kept (as uint8). Otherwise a
    window of shards is resident and slides by one shard every time the window's images have
    been drawn about once, visiting shards in a seeded order. The window is a pure function of
    the step, so a resumed run sees exactly the batches an uninterrupted one would.
    """

    def __init__(self, dataset: Dataset, rows: pd.DataFrame, styles: np.ndarray,
                 budget_mb: float, batch_size: int, seed: int):  # fmt: skip
        import torch

        self.dataset = dataset
        self.groups = [(shard, part, styles[rows.index.get_indexer(part.index)])
                       for shard, part in rows.groupby("shard", sort=False)]  # fmt: skip
        image_bytes = int(np.prod(dataset.load_pixels(rows.iloc[:1]).shape[1:]))
        total = len(rows) * image_bytes
        budget = int(budget_mb * (1 << 20))
        order = torch.randperm(len(self.groups), generator=torch.Generator().manual_seed(seed))
        self.order = order.tolist()
        if total <= budget:
            self.window_size, self.period = len(self.groups), None
        else:
            per_shard = max(1, total // len(self.groups))
            self.window_size = max(1, min(len(self.groups), budget // per_shard))
            resident = self.window_size * len(rows) // len(self.groups)
            self.period = max(1, resident // batch_size)
        self._window: tuple[int, ...] | None = None
        self.loads = 0  # shard reads so far (for tests and progress)

    def _at(self, step: int) -> None:
        import torch

        start = 0 if self.period is None else step // self.period
        window = tuple(self.order[(start + j) % len(self.order)] for j in range(self.window_size))
        if window == self._window:
            return
        kept = dict(zip(self._window, self._parts)) if self._window else {}
        parts = []
        for g in window:
            if g not in kept:
                shard, part, styles = self.groups[g]
                pixels = self.dataset.store.read_npy(f"{self.dataset.folder}/{shard}")
                # Stored channels-first once, so every batch is a contiguous NCHW tensor.
                chosen = torch.from_numpy(pixels[part["offset"].to_numpy()])
                kept[g] = (chosen.permute(0, 3, 1, 2).contiguous(),
                           torch.from_numpy(styles.astype(np.int64)))  # fmt: skip
                self.loads += 1
            parts.append(kept[g])
        self._window, self._parts = window, parts
        self.pixels = torch.cat([p for p, _ in parts])
        self.styles = torch.cat([s for _, s in parts])

    def batch(self, step: int, size: int, rng, device):
        """(images in [-1, 1], style indices) for ``step``, drawn with ``rng``."""
        import torch

        self._at(step)
        idx = torch.randint(len(self.pixels), (size,), generator=rng)
        images = self.pixels[idx].to(device).float() / 127.5 - 1.0
        return images, self.styles[idx].to(device)

    def __len__(self) -> int:
        return sum(len(part) for _, part, _ in self.groups)


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
