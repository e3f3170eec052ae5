"""Generate stage: N samples per style from the promoted model, reproducibly from seeds.

Sample ``i`` of every style uses seed ``generate.seed + i`` for its own latent, so the same request
gives the same images whatever the batch size, and the same seed across styles shows one latent
rendered in each style. The batch id is a hash of the model version and the request: rerunning a
request writes only the images that are missing.
"""

from __future__ import annotations

import posixpath
from dataclasses import asdict, dataclass

import pandas as pd
import torch

from ganpipe import layout
from ganpipe.checkpoints import load_network
from ganpipe.config import Config
from ganpipe.dataset import to_pixels
from ganpipe.errors import StoreError
from ganpipe.hashing import stable_hash
from ganpipe.images import encode
from ganpipe.plugins import Registry, load_registry
from ganpipe.progress import step
from ganpipe.store import RunStore
from ganpipe.styles import StyleTable

BATCH_COLUMNS = ["path", "style", "seed", "model", "kept", "reject_reason"]


@dataclass
class ModelRef:
    """Where an exported model lives: a store and a folder in it."""

    store: RunStore
    folder: str

    @property
    def uri(self) -> str:
        return self.store.uri(self.folder) if self.folder else self.store.uri()


@dataclass
class GenerateResult:
    batch_id: str
    uri: str
    model: str
    count: int
    written: int

    def to_dict(self) -> dict:
        return asdict(self)


def current_model(config: Config, store: RunStore) -> ModelRef:
    """The version ``models/<name>/current`` names (what production generation uses)."""
    pointer = layout.model_current(config.model_name)
    if not store.exists(pointer):
        raise StoreError(
            f"model {config.model_name!r} has no current version in {store.uri()}",
            where="model.name",
            fix="train it first ('ganpipe train' or 'ganpipe run'), or pass --model URI",
        )
    version = store.read_text(pointer).strip()
    return ModelRef(store, layout.model_dir(config.model_name, version))


def promote(store: RunStore, model_name: str, version: str) -> str:
    """Make ``version`` the one production generation uses."""
    return store.write_text(layout.model_current(model_name), version + "\n")


def latent(seed: int, z_dim: int) -> torch.Tensor:
    return torch.randn(z_dim, generator=torch.Generator().manual_seed(seed))


def batch_request(config: Config, table: StyleTable, styles: list[str] | None = None) -> dict:
    """What a batch is made of; its hash names the batch."""
    g = config.generate
    wanted = [table.names[table.index(s)] for s in styles] if styles else table.names
    return {
        "styles": wanted,
        "per_style": g.per_style,
        "seed": g.seed,
        "format": g.format,
        "quality": g.quality,
    }


def batch_id_for(model_meta: dict, request: dict) -> str:
    return f"{model_meta['model']}-{model_meta['version']}-{stable_hash(request, length=8)}"


def planned_batch(config: Config, store: RunStore, registry: Registry) -> tuple[ModelRef, str]:
    """The model and batch folder that ``generate`` makes for this config, so the filter and
    report stages can run alone on the same store."""
    model = current_model(config, store)
    meta = model.store.read_json(posixpath.join(model.folder, "generator.json"))
    table = StyleTable.from_json(meta["styles"])
    folder = layout.batch_dir(batch_id_for(meta, batch_request(config, table)))
    if not store.exists(f"{folder}/manifest.parquet"):
        raise StoreError(
            f"batch {folder} has not been generated yet",
            where=store.uri(folder),
            fix="run 'ganpipe generate' with this config first",
        )
    return model, folder


def generate(
    config: Config,
    store: RunStore,
    registry: Registry | None = None,
    model: ModelRef | None = None,
    styles: list[str] | None = None,
    out: RunStore | None = None,
) -> GenerateResult:
    """Generate ``generate.per_style`` samples for each style (or only ``styles``) into
    ``batches/<batch-id>/`` of ``out`` (default: the run store)."""
    registry = registry or load_registry(config)
    model = model or current_model(config, store)
    out = out or store
    generator, meta = load_network(model.store, model.folder, "generator", registry)
    table = StyleTable.from_json(meta["styles"])
    request = batch_request(config, table, styles)
    batch_id = batch_id_for(meta, request)
    folder = layout.batch_dir(batch_id)
    g = config.generate
    wanted = request["styles"]
    model_label = f"{meta['model']}/{meta['version']}"

    jobs = [(s, g.seed + i) for s in wanted for i in range(g.per_style)]
    rows, written = [], 0
    with step(f"generate {batch_id}", total=len(jobs)) as advance:
        for start in range(0, len(jobs), g.batch_size):
            chunk = jobs[start : start + g.batch_size]
            paths = [f"images/{s}/{seed:08d}.{g.format}" for s, seed in chunk]
            rows += [
                {"path": p, "style": s, "seed": seed, "model": model_label}
                for p, (s, seed) in zip(paths, chunk)
            ]
            todo = [i for i, p in enumerate(paths) if not out.exists(posixpath.join(folder, p))]
            if todo:
                pixels = _render(generator, table, [chunk[i] for i in todo])
                for i, px in zip(todo, pixels):
                    out.write_bytes(
                        posixpath.join(folder, paths[i]), encode(px, g.format, g.quality)
                    )
                written += len(todo)
            advance(len(chunk))

    previous = f"{folder}/manifest.parquet"
    same = (
        not written
        and out.exists(previous)
        and (list(out.read_parquet(previous)["path"]) == [r["path"] for r in rows])
    )
    if not same:  # a rerun of a complete batch keeps its manifest, so the filter's verdicts too
        manifest = pd.DataFrame(rows)
        manifest["kept"] = True  # until the filter stage scores them
        manifest["reject_reason"] = pd.Series([None] * len(rows), dtype="string")
        out.write_json(f"{folder}/request.json", {**request, "model": model.uri})
        out.write_text(f"{folder}/config.yaml", config.to_yaml())
        out.write_parquet(previous, manifest)
    result = GenerateResult(batch_id, out.uri(folder), model_label, len(rows), written)
    registry.pm.hook.ganpipe_batch_generated(batch=result.to_dict())
    return result


@torch.inference_mode()
def _render(generator, table: StyleTable, jobs: list[tuple[str, int]]):
    z = torch.stack([latent(seed, generator.z_dim) for _, seed in jobs])
    s = torch.tensor([table.names.index(name) for name, _ in jobs])
    return to_pixels(generator(z, s))
