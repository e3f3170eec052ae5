"""Filter stage: score every candidate of a batch with the configured quality filters and decide
which to keep. The manifest keeps every candidate, with each filter's score, ``kept`` and the
``reject_reason`` (the first filter it failed, or ``top_k`` when it passed but was not among the
best), so nothing generated disappears without a trace."""

from __future__ import annotations

import io
import posixpath
from dataclasses import asdict, dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd
import torch
from PIL import Image

from ganpipe.config import Config
from ganpipe.data.dataset import Dataset, load_dataset, to_tensor
from ganpipe.errors import ConfigError, GanpipeError, PluginError, StoreError
from ganpipe.progress import step
from ganpipe.registry import Registry, load_registry
from ganpipe.stages.generate import ModelRef
from ganpipe.stages.styles import StyleTable, check_same_styles, encoder_for, load_styles
from ganpipe.store import RunStore, layout
from ganpipe.store.checkpoints import load_network

REAL_PER_STYLE = 256  # real images per style sampled for score distributions


@dataclass
class FilterContext:
    """What a quality filter sees. Embeddings and discriminator scores are computed once and
    shared by every filter that asks."""

    images: torch.Tensor  # candidates (N, 3, H, W) in [-1, 1]
    styles: torch.Tensor  # requested style index per candidate (N,)
    real_images: torch.Tensor  # the dataset's images (M, 3, H, W)
    real_styles: torch.Tensor  # their style index (M,)
    table: StyleTable
    encoder: torch.nn.Module
    discriminator: torch.nn.Module | None
    dataset: Dataset | None = None  # the training data, for anything else a filter needs

    @property
    def num_styles(self) -> int:
        return len(self.table.names)

    def fake_embeddings(self) -> torch.Tensor:
        return self._fake_embeddings

    def real_embeddings(self) -> torch.Tensor:
        return self._real_embeddings

    @cached_property
    def _fake_embeddings(self) -> torch.Tensor:
        return _embed_tensor(self.encoder, self.images)

    @cached_property
    def _real_embeddings(self) -> torch.Tensor:
        return _embed_tensor(self.encoder, self.real_images)

    def centroid_distance(self, embeddings: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
        return (embeddings - self.table.centroids[styles]).norm(dim=1)

    @torch.inference_mode()
    def discriminator_scores(self, images: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
        out = [
            self.discriminator(images[i : i + 256], styles[i : i + 256])
            for i in range(0, len(images), 256)
        ]
        return torch.cat(out).float()


@torch.inference_mode()
def _embed_tensor(encoder, images: torch.Tensor) -> torch.Tensor:
    return torch.cat([encoder(images[i : i + 256]) for i in range(0, len(images), 256)]).float()


@dataclass
class FilterResult:
    batch_id: str
    uri: str
    candidates: int
    kept: int
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    pass_rates: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def load_batch_images(store: RunStore, folder: str, paths) -> torch.Tensor:
    arrays = []
    for p in paths:
        with Image.open(io.BytesIO(store.read_bytes(posixpath.join(folder, p)))) as img:
            arrays.append(np.asarray(img.convert("RGB")))
    return to_tensor(np.stack(arrays))


def build_context(config, store, registry, model, images, styles_idx) -> FilterContext:
    discriminator, meta = load_network(model.store, model.folder, "discriminator", registry)
    table = StyleTable.from_json(meta["styles"])
    fingerprint = meta["dataset_fingerprint"]
    if not store.exists(layout.dataset_dir(config.dataset.name, fingerprint), "manifest.parquet"):
        raise StoreError(
            f"the dataset version the model {model.uri} was trained on ({config.dataset.name}/"
            f"{fingerprint}) is not in the run store {store.uri()}",
            where="store.root, dataset.name",
            fix="use the config (store.root and dataset.name) the model was trained with",
        )
    dataset = load_dataset(store, config.dataset.name, fingerprint)
    current, assignments = load_styles(store, dataset.fingerprint, table.encoder)
    check_same_styles(current, table, model.uri)
    style_of = dict(zip(assignments["id"], assignments["style"]))
    # Thresholds come from the real images' score distributions; a seeded sample per style
    # estimates them as well as every image would, at a bounded cost.
    all_styles = dataset.manifest["id"].map(style_of)
    real = dataset.sample(REAL_PER_STYLE, all_styles, seed=0)
    real_styles = torch.tensor([table.names.index(style_of[i]) for i in real["id"]])
    encoder = encoder_for(registry, dataset, table.encoder, table.encoder_options,
                          config.dataset.image_size)  # fmt: skip
    return FilterContext(
        images,
        styles_idx,
        to_tensor(dataset.load_pixels(real)),
        real_styles,
        table,
        encoder,
        discriminator,
        dataset,
    )


def open_batch(uri: str, storage_options: dict | None = None) -> tuple[ModelRef, RunStore, str]:
    """A batch folder named by its URI (``<out>/batches/<id>`` after ``ganpipe generate --out
    <out>``, local or s3://): the model that made it, read from its ``request.json``, the store
    that holds the folder and the folder's name in it, as the filter and report stages take
    them."""
    parent, name = posixpath.split(uri.rstrip("/"))
    if not name or parent.endswith(":") or parent.endswith(":/"):
        raise ConfigError(
            f"{uri!r} is not a batch folder", where="--batch",
            fix="give the folder of one batch, e.g. <out>/batches/<batch-id>",
        )  # fmt: skip
    out = RunStore(parent or ".", storage_options)
    if not out.exists(name, "manifest.parquet"):
        inside = [out.uri(name, "batches", b) for b in out.listdir(name, "batches")[:5]]
        hint = "give a folder that 'ganpipe generate' made, e.g. <out>/batches/<batch-id>"
        raise ConfigError(
            f"{out.uri(name)} is not a batch folder (it has no manifest.parquet)",
            where="--batch",
            fix=f"pass one of {', '.join(inside)}" if inside else hint,
        )
    request = posixpath.join(name, "request.json")
    model_uri = out.read_json(request).get("model") if out.exists(request) else None
    if not model_uri:
        raise StoreError(
            f"batch {out.uri(name)} does not say which model made it (no model in request.json)",
            where="--batch",
            fix="generate the batch again with this version of ganpipe",
        )
    model = ModelRef(RunStore(model_uri, storage_options), "")
    if not model.store.exists("generator.json"):
        raise StoreError(
            f"the model that made batch {out.uri(name)}, {model_uri}, is no longer there",
            where=out.uri(request),
            fix="restore the model version, or generate the batch again from a current model",
        )
    return model, out, name


def batch_context(config, store, batch_folder, model, registry, out):
    """A generated batch's manifest, the model's description (``generator.json``: style table,
    fingerprints) and the context to score it: what the filter and report stages start from."""
    manifest = out.read_parquet(f"{batch_folder}/manifest.parquet")
    images = load_batch_images(out, batch_folder, manifest["path"])
    meta = model.store.read_json(posixpath.join(model.folder, "generator.json"))
    table = StyleTable.from_json(meta["styles"])
    styles_idx = torch.tensor([table.index(s) for s in manifest["style"]])
    context = build_context(config, store, registry, model, images, styles_idx)
    return manifest, meta, context


def filter_batch(
    config: Config,
    store: RunStore,
    batch_folder: str,
    model,
    registry: Registry | None = None,
    out: RunStore | None = None,
) -> FilterResult:
    registry = registry or load_registry(config)
    out = out or store
    manifest, _, context = batch_context(config, store, batch_folder, model, registry, out)

    passed_all = np.ones(len(manifest), dtype=bool)
    reasons = pd.Series([None] * len(manifest), dtype="string")
    ranks, verdicts = [], []
    with step("quality filters", total=len(config.filter.filters)) as advance:
        for name in config.filter.filters:
            qf = registry.create(
                "quality_filter",
                name,
                config_key=f"filter.options.{name}",
                **config.filter.options.get(name, {}),
            )
            scores, passed = _run_filter(registry, name, qf, context, len(manifest))
            manifest[name] = scores
            verdicts.append(passed)
            newly = passed_all & ~passed
            reasons[newly] = name
            passed_all &= passed
            ranks.append(pd.Series(scores).rank(pct=True, ascending=qf.higher_is_better).to_numpy())
            advance(1)

    # Keep policy: every passing candidate, or only the best k of each style.
    keep = config.filter.keep
    if keep.startswith("top_k:"):
        k = int(keep.split(":", 1)[1])
        quality = np.mean(ranks, axis=0) if ranks else np.zeros(len(manifest))
        for style in manifest["style"].unique():
            members = np.flatnonzero((manifest["style"] == style).to_numpy() & passed_all)
            beyond = (
                members[np.argsort(-quality[members], kind="stable")][k:] if len(members) else []
            )
            passed_all[beyond] = False
            reasons[beyond] = "top_k"
    manifest["kept"] = passed_all
    manifest["reject_reason"] = reasons
    out.write_parquet(f"{batch_folder}/manifest.parquet", manifest)

    batch_id = posixpath.basename(batch_folder)
    # A filter's pass rate counts every candidate it passed, whatever the others said.
    pass_rates = {n: round(float(p.mean()), 4) for n, p in zip(config.filter.filters, verdicts)}
    result = FilterResult(
        batch_id,
        out.uri(batch_folder),
        len(manifest),
        int(passed_all.sum()),
        {k: int(v) for k, v in reasons.value_counts().items()},
        pass_rates,
    )
    out.write_json(f"{batch_folder}/filter.json", result.to_dict())
    return result


def _run_filter(registry, name, qf, context, n) -> tuple[np.ndarray, np.ndarray]:
    plugin = registry.get("quality_filter", name).plugin
    try:
        scores, passed = qf.score(context)
    except GanpipeError:
        raise
    except Exception as exc:
        raise PluginError(
            f"quality filter {name!r} ({plugin}) failed: {type(exc).__name__}: {exc}",
            where="ganpipe_quality_filters",
        ) from None
    scores, passed = np.asarray(scores, dtype=float), np.asarray(passed, dtype=bool)
    if scores.shape != (n,) or passed.shape != (n,):
        raise PluginError(
            f"quality filter {name!r} ({plugin}) returned shapes {scores.shape} and "
            f"{passed.shape}, expected ({n},) for both",
            where="ganpipe_quality_filters",
        )
    return scores, passed
