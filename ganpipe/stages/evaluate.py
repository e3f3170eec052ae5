"""Evaluate stage: how good a trained model is, measured against its own dataset.

Samples are drawn in memory (sample ``i`` of every style from seed ``evaluate.seed + i``, turned
into 8-bit pixels like a saved image), real images are a seeded sample of the dataset per style,
and both are compared in the style encoder's feature space, plus any other registered style
encoder named in ``evaluate.features``. The same model and config give the same numbers, so a
retrain can compare a challenger with the champion on ``metrics`` and ``HIGHER_IS_BETTER``.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from ganpipe.config import Config, EvaluateConfig
from ganpipe.contracts import TrainableStyleEncoder, supports
from ganpipe.data.dataset import Dataset, load_dataset, to_pixels, to_tensor
from ganpipe.domain.model_pointers import ModelRef, current_model
from ganpipe.domain.style_table import StyleTable, check_same_styles, load_styles
from ganpipe.errors import ConfigError
from ganpipe.generation.render import latent
from ganpipe.progress import log, step
from ganpipe.registry import Registry, load_registry
from ganpipe.stats import metrics as m
from ganpipe.stats.artefacts import relative_artefacts
from ganpipe.store import RunStore
from ganpipe.store.checkpoints import load_network
from ganpipe.style_encoders import embed, encoder_for

PR_K = 3  # neighbourhood of precision and recall (Kynkäänniemi et al. use 3)
DC_K = 5  # neighbourhood of density and coverage (Naeem et al. use 5)
KID_SUBSETS = 100

# Which way is better for each key of ``EvaluationResult.metrics``: what a promotion gate reads.
HIGHER_IS_BETTER: dict[str, bool] = {
    "fd": False,  # Fréchet distance to the real images
    "kid": False,  # kernel distance (unbiased MMD²) to the real images
    "precision": True,  # share of samples that look like some real image
    "recall": True,  # share of real images some sample looks like
    "density": True,  # how tightly samples sit among real images (about 1 for a perfect model)
    "coverage": True,  # share of real images with a sample close by
    "style_accuracy": True,  # share of samples nearest the style they were asked for
    "diversity_ratio": True,  # within-style spread of samples over that of real images
}


@dataclass
class EvaluationResult:
    model: str  # name/version
    uri: str  # where evaluation.json was written
    features: str  # the primary feature space: the style table's encoder
    metrics: dict[str, float]  # the primary space's figures, keys as in HIGHER_IS_BETTER
    spaces: dict[str, dict] = field(default_factory=dict)  # every space: metrics and per style
    # pixel artefacts per style, each relative to the real images of that style (1 = like them):
    # checkerboard energy, mean saturation, clipped share (ganpipe.stats.artefacts)
    artefacts: dict[str, dict[str, float]] = field(default_factory=dict)
    samples: int = 0
    real_images: int = 0
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def evaluate(
    config: Config,
    store: RunStore,
    model: ModelRef | None = None,
    registry: Registry | None = None,
    features: list[str] | None = None,
    against: str | None = None,
    write: bool = True,
) -> EvaluationResult:
    """Measure the current (or given) model; ``features`` replaces ``evaluate.features``.

    ``against`` names the dataset version whose *held-out* images are the reference, per style
    of that version's style table (styles matched by id): the retrain gate passes the
    challenger's, so champion and challenger are measured on the same images and the same
    seeds, and a style the model lacks is left out (and listed). By default the reference is
    every image of the model's own dataset. ``write``: also write ``evaluation.json`` beside
    the model's weights."""
    registry = registry or load_registry(config)
    e = config.evaluate
    extra = _check_names(registry, e.features if features is None else features)
    model = model or current_model(config, store)
    generator, meta = load_network(model.store, model.folder, "generator", registry)
    model_table = StyleTable.from_json(meta["styles"])
    dataset = load_dataset(store, config.dataset.name, against or meta["dataset_fingerprint"])
    table = model_table
    if against is not None:
        table, _ = load_styles(store, against, model_table.encoder)
    spaces = _feature_spaces(e.space, e.space_options, extra, e.feature_options)
    images = _Images.draw(config, store, model, dataset, table, model_table, generator,
                          held_out=against is not None)  # fmt: skip
    found, hashes = {}, {}
    for name, options in spaces.items():
        found[name], hashes[name] = _measure(registry, dataset, name, options, table, images,
                                             config)  # fmt: skip
    result = _result(model, meta, found, hashes, images, dataset.fingerprint, e)
    result.artefacts = _artefacts(images, table)
    if write:
        model.store.write_json(model.files.evaluation, result.to_dict())
    return result


@dataclass
class _Images:
    """What every feature space compares: real images and samples (8-bit pixels), with the
    style index of each (in the evaluation's style table)."""

    real: np.ndarray
    real_styles: torch.Tensor
    fake: np.ndarray
    fake_styles: torch.Tensor
    styles: list[int]  # indices of the evaluated styles in the table
    split: str  # the reference images: "all" of the dataset, or its held-out "val" split
    missing: list[str]  # styles of the table the model does not have

    @property
    def smallest(self) -> int:
        return min(len(self.real), len(self.fake))

    @classmethod
    def draw(cls, config: Config, store: RunStore, model: ModelRef, dataset: Dataset,
             table: StyleTable, model_table: StyleTable, generator: torch.nn.Module,
             held_out: bool) -> _Images:  # fmt: skip
        """Real images: a seeded sample of each style (of the held-out split when
        ``held_out``). Samples: ``per_style`` of each style the model has, seeds ``seed + i``,
        as the 8-bit images a user gets. Too few of either is a config error."""
        e = config.evaluate
        current, assignments = load_styles(store, dataset.fingerprint, table.encoder)
        if table is model_table:
            check_same_styles(current, table, model.uri)
        shared = [i for i, sid in enumerate(table.ids) if sid in model_table.ids]
        style_of = dict(zip(assignments["id"], assignments["style"]))
        manifest = dataset.manifest
        if held_out and (manifest["split"] == "val").sum() > DC_K:
            manifest = manifest[manifest["split"] == "val"]
        elif held_out:  # still the same images for every model compared, but seen in training
            log.warning("dataset %s holds %d held-out images, too few to measure on: the gate "
                        "measures on all of its images (raise dataset.val_fraction)",
                        dataset.fingerprint, int((manifest["split"] == "val").sum()))  # fmt: skip
            held_out = False
        labels = manifest["id"].map(style_of)
        manifest = manifest[labels.isin([table.names[i] for i in shared]).to_numpy()]
        real_rows = dataset.sample(e.per_style, manifest["id"].map(style_of), e.seed, manifest)
        real_styles = torch.tensor([table.index(style_of[i]) for i in real_rows["id"]],
                                   dtype=torch.long)  # fmt: skip
        fake_styles = torch.tensor(shared, dtype=torch.long).repeat_interleave(e.per_style)
        model_styles = torch.tensor([model_table.ids.index(table.ids[i]) for i in shared],
                                    dtype=torch.long).repeat_interleave(e.per_style)  # fmt: skip
        seeds = [e.seed + i for i in range(e.per_style)] * len(shared)
        images = cls(
            dataset.load_pixels(real_rows) if len(real_rows) else np.zeros((0, 1, 1, 3), np.uint8),
            real_styles,
            _render(generator, model_styles, seeds, config.generate.batch_size),
            fake_styles,
            shared,
            "val" if held_out else "all",
            [table.ids[i] for i in range(len(table.ids)) if i not in shared],
        )
        if images.smallest <= DC_K:
            raise ConfigError(
                f"too few images to evaluate: {len(images.real)} real "
                f"({'held-out ' if held_out else ''}images of dataset {dataset.fingerprint}) and "
                f"{len(images.fake)} generated, and the neighbourhood metrics need more than "
                f"{DC_K} of each",
                where="evaluate.per_style",
                fix="raise evaluate.per_style, or add images to the dataset"
                + (" (or raise dataset.val_fraction)" if held_out else ""),
            )
        return images


def _measure(registry: Registry, dataset: Dataset, name: str, options: dict,
             table: StyleTable, images: _Images, config: Config) -> tuple[dict, str]:  # fmt: skip
    """The metrics in one feature space, and the space's content hash."""
    encoder = _encoder(
        registry,
        dataset,
        name,
        options,
        config.dataset.image_size,
        pinned=name == config.evaluate.space,
    )
    with step(f"evaluate in {name} features", total=2) as advance:
        real_e = _embed(registry, encoder, name, images.real)
        advance(1)
        fake_e = _embed(registry, encoder, name, images.fake)
        found = _space_metrics(real_e, images.real_styles, fake_e, images.fake_styles,
                               {i: table.names[i] for i in images.styles},
                               _centroids(real_e, images.real_styles, len(table.names)),
                               config.evaluate.seed)  # fmt: skip
        advance(1)
    return found, space_hash(name, options, encoder)


def _centroids(real: torch.Tensor, styles: torch.Tensor, count: int) -> torch.Tensor:
    """Each style's mean reference image in this space (where style accuracy asks "nearest
    its own style?"); a style with no reference images is put out of reach."""
    out = torch.full((count, real.shape[1]), 1e12)
    for s in styles.unique():
        out[s] = real[styles == s].mean(0)
    return out


def space_hash(name: str, options: dict, encoder: torch.nn.Module) -> str:
    """What pins a feature space: its name, options and every weight, hashed, so figures
    measured in two spaces are never compared as if they were one."""
    digest = hashlib.sha256(json.dumps([name, options], sort_keys=True, default=str).encode())
    for key, tensor in sorted(encoder.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _result(model: ModelRef, meta: dict, found: dict[str, dict], hashes: dict[str, str],
            images: _Images, fingerprint: str, e: EvaluateConfig) -> EvaluationResult:  # fmt: skip
    primary = found[e.space]["metrics"]
    return EvaluationResult(
        model=f"{meta['model']}/{meta['version']}",
        uri=model.store.uri(model.files.evaluation),
        features=e.space,
        metrics={k: primary[k] for k in HIGHER_IS_BETTER},
        spaces=found,
        samples=len(images.fake),
        real_images=len(images.real),
        settings={
            "per_style": e.per_style,
            "seed": e.seed,
            "features": list(found),
            "space": e.space,
            "space_hash": hashes[e.space],
            "space_hashes": hashes,
            "split": images.split,
            "missing_styles": images.missing,
            "precision_recall_k": PR_K,
            "density_coverage_k": DC_K,
            "kid_subsets": KID_SUBSETS,
            "kid_subset_size": _kid_subset_size(images.smallest),
            "dataset_fingerprint": fingerprint,
        },
    )


def _artefacts(images: _Images, table: StyleTable) -> dict[str, dict[str, float]]:
    """Per evaluated style: what a person would spot in its samples and the feature spaces
    barely see (a checkerboard, colours pushed to the ends), relative to its real images."""
    fake, real = to_tensor(images.fake), to_tensor(images.real)
    ratios = relative_artefacts(fake, images.fake_styles, real, images.real_styles,
                                len(table.names))  # fmt: skip
    return {table.names[i]: {k: ratios[k][i] for k in ratios} for i in images.styles}


def _check_names(registry: Registry, names: list[str]) -> list[str]:
    """Every extra feature extractor must be a registered style encoder: checked before any
    work starts."""
    available = {c.name: c.plugin for c in registry.all() if c.kind == "style_encoder"}
    for name in names:
        if name not in available:
            listed = ", ".join(f"{n} ({p})" for n, p in sorted(available.items()))
            raise ConfigError(
                f"unknown feature extractor {name!r}; available: {listed}",
                where="evaluate.features",
                fix="name registered style encoders (see 'ganpipe plugins'), or install the "
                "plugin that provides one",
            )
    return names


def _feature_spaces(space: str, space_options: dict, names: list[str],
                    options: dict[str, dict]) -> dict:  # fmt: skip
    """The pinned space first (``evaluate.space``), then each extra name once, with its
    ``evaluate.feature_options``."""
    spaces = {space: space_options}
    for name in names:
        spaces.setdefault(name, options.get(name, {}))
    stray = sorted(set(options) - set(spaces))
    if stray:
        raise ConfigError(
            f"evaluate.feature_options names {', '.join(stray)}, which is not evaluated",
            where="evaluate.feature_options",
            fix="add it to evaluate.features, or remove its options",
        )
    return spaces


def _encoder(registry, dataset: Dataset, name: str, options: dict, image_size: int,
             pinned: bool) -> torch.nn.Module:  # fmt: skip
    """The pinned space (``evaluate.space``) must be one no training touches: an encoder that
    learns from the data needs fixed weights (``weights``), or figures for two dataset versions
    would be measured in two different spaces. An extra space that learns is fitted once per
    dataset version (seeded) and kept beside the styles, as ``ganpipe styles`` would."""
    where = "evaluate.space_options" if pinned else f"evaluate.feature_options.{name}"
    probe = registry.create("style_encoder", name, config_key=where, image_size=image_size,
                            **options)  # fmt: skip
    if not supports(probe, TrainableStyleEncoder):
        return probe.eval()  # nothing to fit or load beside the styles: use it as built
    if pinned and not options.get("weights"):
        raise ConfigError(
            f"evaluate.space {name!r} learns from each dataset version, so its figures for two "
            "versions would not compare",
            where="evaluate.space",
            fix=f"pin it with {where}.weights (a .safetensors of its weights, a local path or "
            "store URI), or use the texture space",
        )
    try:
        return encoder_for(registry, dataset, name, options, image_size, fit_if_missing=not pinned)
    except ConfigError as exc:
        if exc.where != "style.encoder_options":
            raise
        raise ConfigError(exc.what, where=where, fix=exc.fix) from None


def _embed(registry: Registry, encoder, name: str, pixels: np.ndarray) -> torch.Tensor:
    """Embeddings ``(N, D)`` of ``pixels``; an encoder that fails or gives another shape is
    its plugin's fault (``Registry.call``/``fault``)."""
    out = registry.call("style_encoder", name, embed, encoder, pixels)
    if out.ndim != 2 or len(out) != len(pixels):
        raise registry.fault(
            "style_encoder",
            name,
            f"returned shape {tuple(out.shape)} as a feature extractor, expected "
            f"({len(pixels)}, D)",
        )
    return out


@torch.inference_mode()
def _render(generator, styles: torch.Tensor, seeds: list[int], batch_size: int) -> np.ndarray:
    parts = []
    with step("evaluate: generate samples", total=len(seeds)) as advance:
        for start in range(0, len(seeds), batch_size):
            chunk = seeds[start : start + batch_size]
            z = torch.stack([latent(s, generator.z_dim) for s in chunk])
            parts.append(to_pixels(generator(z, styles[start : start + len(chunk)])))
            advance(len(chunk))
    return np.concatenate(parts)


def _kid_subset_size(n: int) -> int:
    # Subsets of half the smaller set (at most 1,000) keep KID's spread informative on small
    # evaluations: subsets of everything would all be the same set.
    return max(2, min(1000, n // 2))


def _space_metrics(
    real,
    real_styles,
    fake,
    fake_styles,
    names: dict[int, str],
    centroids: torch.Tensor,
    seed: int,
) -> dict:
    """Pooled figures, then per style (``names``: index -> name of each evaluated style)."""
    kid_mean, kid_std = m.kid(
        real, fake, KID_SUBSETS, _kid_subset_size(min(len(real), len(fake))), seed=seed
    )
    precision, recall = m.precision_recall(real, fake, k=PR_K)
    density, coverage = m.density_coverage(real, fake, k=DC_K)
    coverage_by = m.coverage_per_style(real, real_styles, fake, fake_styles, k=DC_K)
    diversity_by = m.diversity_ratio_per_style(real, real_styles, fake, fake_styles)
    figures = {
        "fd": m.frechet_distance(real, fake),
        "kid": kid_mean,
        "kid_std": kid_std,
        "precision": precision,
        "recall": recall,
        "density": density,
        "coverage": coverage,
        "diversity_ratio": float(np.mean(list(diversity_by.values())))
        if diversity_by
        else math.nan,
    }
    per_style = {
        name: {"coverage": coverage_by.get(i, 0.0), "diversity_ratio": diversity_by.get(i)}
        for i, name in names.items()
    }
    figures["style_accuracy"] = m.style_accuracy(fake, fake_styles, centroids)
    for i, name in names.items():
        mine = fake_styles == i
        per_style[name]["style_accuracy"] = m.style_accuracy(
            fake[mine], fake_styles[mine], centroids
        )
    return {"metrics": figures, "per_style": per_style}
