"""Filter stage: score every candidate of a batch with the configured quality filters and decide
which to keep. The manifest keeps every candidate, with each filter's score, ``kept`` and the
``reject_reason`` (the first filter it failed, or ``top_k`` when it passed but was not among the
best), so nothing generated disappears without a trace."""

from __future__ import annotations

import io
import posixpath
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import torch
from PIL import Image

from ganpipe.config import Config
from ganpipe.contracts import QualityFilter
from ganpipe.contracts.contexts import FilterContext, real_sample
from ganpipe.data.dataset import load_dataset, to_tensor
from ganpipe.domain.model_pointers import ModelRef
from ganpipe.domain.style_table import StyleTable, check_same_styles, load_styles
from ganpipe.errors import ConfigError, StoreError
from ganpipe.progress import step
from ganpipe.registry import Registry, load_registry
from ganpipe.store import RunStore, layout
from ganpipe.store.checkpoints import load_network
from ganpipe.style_encoders import encoder_for


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
    """The batch's images its manifest lists; a missing or damaged one is an error that says
    how to restore it (generate rewrites exactly the images that are missing)."""
    arrays = []
    for p in paths:
        rel = posixpath.join(folder, p)
        fix = ("rerun 'ganpipe generate' with the same config (and --out, if the batch was "
               "written elsewhere): it restores missing images exactly")  # fmt: skip
        if not store.exists(rel):
            raise StoreError(f"the batch image {p} is missing", where=store.uri(rel), fix=fix)
        try:
            with Image.open(io.BytesIO(store.read_bytes(rel))) as img:
                arrays.append(np.asarray(img.convert("RGB")))
        except (OSError, ValueError) as exc:
            raise StoreError(
                f"the batch image {p} cannot be read ({type(exc).__name__})",
                where=store.uri(rel),
                fix=f"delete it, then {fix}",
            ) from None
    return to_tensor(np.stack(arrays))


def build_context(config, store, registry, model, images, styles_idx) -> FilterContext:
    discriminator, meta = load_network(model.store, model.folder, "discriminator", registry)
    table = StyleTable.from_json(meta["styles"])
    fingerprint = meta["dataset_fingerprint"]
    data_files = layout.DatasetFiles(layout.dataset_dir(config.dataset.name, fingerprint))
    if not store.exists(data_files.manifest):
        raise StoreError(
            f"the dataset version the model {model.uri} was trained on ({config.dataset.name}/"
            f"{fingerprint}) is not in the run store {store.uri()}",
            where="store.root, dataset.name",
            fix="use the config (store.root and dataset.name) the model was trained with",
        )
    dataset = load_dataset(store, config.dataset.name, fingerprint)
    current, assignments = load_styles(store, dataset.fingerprint, table.encoder)
    check_same_styles(current, table, model.uri)
    row_styles = dataset.manifest["id"].map(dict(zip(assignments["id"], assignments["style"])))
    # Thresholds come from the real images' score distributions (train and val alike).
    real_images, real_styles = real_sample(dataset, row_styles, table, dataset.manifest)
    encoder = encoder_for(registry, dataset, table.encoder, table.encoder_options,
                          config.dataset.image_size)  # fmt: skip
    return FilterContext(
        images,
        styles_idx,
        real_images,
        real_styles,
        table,
        encoder,
        discriminator,
        dataset,
        row_styles,
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
    out, files = RunStore(parent or ".", storage_options, origin="--batch"), layout.BatchFiles(name)
    if not out.exists(files.manifest):
        inside = [out.uri(name, "batches", b) for b in out.listdir(name, "batches")[:5]]
        hint = "give a folder that 'ganpipe generate' made, e.g. <out>/batches/<batch-id>"
        raise ConfigError(
            f"{out.uri(name)} is not a batch folder (it has no manifest.parquet)",
            where="--batch",
            fix=f"pass one of {', '.join(inside)}" if inside else hint,
        )
    model_uri = out.read_json(files.request).get("model") if out.exists(files.request) else None
    if not model_uri:
        raise StoreError(
            f"batch {out.uri(name)} does not say which model made it (no model in request.json)",
            where="--batch",
            fix="generate the batch again with this version of ganpipe",
        )
    model = ModelRef(RunStore(model_uri, storage_options), "")
    if not model.store.exists(model.files.network("generator", "json")):
        raise StoreError(
            f"the model that made batch {out.uri(name)}, {model_uri}, is no longer there",
            where=out.uri(files.request),
            fix="restore the model version, or generate the batch again from a current model",
        )
    return model, out, name


def batch_context(config, store, batch_folder, model, registry, out):
    """A generated batch's manifest, the model's description (``generator.json``: style table,
    fingerprints) and the context to score it: what the filter and report stages start from."""
    manifest = out.read_parquet(layout.BatchFiles(batch_folder).manifest)
    images = load_batch_images(out, batch_folder, manifest["path"])
    meta = model.store.read_json(model.files.network("generator", "json"))
    table = StyleTable.from_json(meta["styles"])
    styles_idx = torch.tensor([table.index(s) for s in manifest["style"]])
    context = build_context(config, store, registry, model, images, styles_idx)
    return manifest, meta, context


def filter_batch(
    config: Config,
    store: RunStore,
    batch_folder: str,
    model: ModelRef,
    registry: Registry | None = None,
    out: RunStore | None = None,
) -> FilterResult:
    """Score the batch in ``out`` (default ``store``) at ``batch_folder`` with every filter of
    ``filter.filters``, apply ``filter.keep``, and record it all in the batch's manifest (every
    candidate stays in it) and ``filter.json``. ``store`` holds the model's dataset and styles."""
    registry = registry or load_registry(config)
    out = out or store
    manifest, _, context = batch_context(config, store, batch_folder, model, registry, out)
    verdicts = _run_filters(config, registry, context, manifest)
    if config.filter.keep.startswith("top_k:"):
        _keep_top_k(int(config.filter.keep.split(":", 1)[1]), manifest["style"], verdicts)
    manifest["kept"] = verdicts.passed
    manifest["reject_reason"] = verdicts.reasons
    files = layout.BatchFiles(batch_folder)
    out.write_parquet(files.manifest, manifest)

    # A filter's pass rate counts every candidate it passed, whatever the others said.
    pass_rates = {n: round(float(p.mean()), 4) for n, p in verdicts.by_filter.items()}
    result = FilterResult(
        posixpath.basename(batch_folder),
        out.uri(batch_folder),
        len(manifest),
        int(verdicts.passed.sum()),
        {k: int(v) for k, v in verdicts.reasons.value_counts().items()},
        pass_rates,
    )
    out.write_json(files.filter, result.to_dict())
    return result


@dataclass
class _Verdicts:
    """The filters' verdicts so far: who passes every filter, the first filter each candidate
    failed, each filter's own verdicts and each filter's ranking of the candidates."""

    passed: np.ndarray  # (N,) bool: passed every filter so far
    reasons: pd.Series  # the first filter failed (``top_k`` once the keep policy ran), or NA
    by_filter: dict[str, np.ndarray] = field(default_factory=dict)
    ranks: list[np.ndarray] = field(default_factory=list)  # percentile rank, best highest

    @classmethod
    def start(cls, n: int) -> _Verdicts:
        return cls(np.ones(n, dtype=bool), pd.Series([None] * n, dtype="string"))

    def record(self, name: str, scores: np.ndarray, passed: np.ndarray, higher: bool) -> None:
        self.by_filter[name] = passed
        self.reasons[self.passed & ~passed] = name
        self.passed &= passed
        self.ranks.append(pd.Series(scores).rank(pct=True, ascending=higher).to_numpy())


def _run_filters(
    config: Config, registry: Registry, context: FilterContext, manifest: pd.DataFrame
) -> _Verdicts:
    """Every configured filter, in order; its scores become a manifest column."""
    verdicts = _Verdicts.start(len(manifest))
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
            verdicts.record(name, scores, passed, qf.higher_is_better)
            advance(1)
    return verdicts


def _keep_top_k(k: int, styles: pd.Series, verdicts: _Verdicts) -> None:
    """Of each style's passing candidates keep the best ``k`` by mean rank over the filters;
    the others are rejected as ``top_k``."""
    n = len(styles)
    quality = np.mean(verdicts.ranks, axis=0) if verdicts.ranks else np.zeros(n)
    for style in styles.unique():
        members = np.flatnonzero((styles == style).to_numpy() & verdicts.passed)
        beyond = members[np.argsort(-quality[members], kind="stable")][k:] if len(members) else []
        verdicts.passed[beyond] = False
        verdicts.reasons[beyond] = "top_k"


def _run_filter(
    registry: Registry, name: str, qf: QualityFilter, context: FilterContext, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """``qf.score(context)`` as arrays, checked to hold one entry per candidate; anything
    wrong is the filter's plugin's fault (``Registry.call``/``fault``)."""
    scores, passed = registry.call("quality_filter", name, _scored, qf, context)
    if scores.shape != (n,) or passed.shape != (n,):
        raise registry.fault(
            "quality_filter",
            name,
            f"returned shapes {scores.shape} and {passed.shape}, expected ({n},) for both",
        )
    return scores, passed


def _scored(qf: QualityFilter, context: FilterContext) -> tuple[np.ndarray, np.ndarray]:
    scores, passed = qf.score(context)
    return np.asarray(scores, dtype=float), np.asarray(passed, dtype=bool)
