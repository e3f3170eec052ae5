"""Styles stage: embed every image with the style encoder and group images into styles.

Styles come from the labels the data carries (``style.source: labels``) or from k-means over the
embeddings (``clusters``). The style table (names, sizes, centroids, exemplars) is what training
conditions on, generation asks for by name, and the filters check against.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import torch

from ganpipe.config import Config
from ganpipe.data.dataset import Dataset, load_dataset
from ganpipe.data.images import encode, grid
from ganpipe.domain.style_table import StyleTable, load_styles
from ganpipe.errors import ConfigError, GanpipeError, StoreError
from ganpipe.progress import log, step
from ganpipe.registry import Registry, load_registry
from ganpipe.stages.style_lineage import Matched, Previous, log_lineage, match, place_previous
from ganpipe.stats.cluster import choose_k, kmeans, nmi, purity
from ganpipe.store import RunStore, layout
from ganpipe.style_encoders import embed, embed_dataset, encoder_for, load_weights


@dataclass
class StylesResult:
    fingerprint: str
    encoder: str
    uri: str
    names: list[str]
    sizes: list[int]
    quality: dict[str, float] = field(default_factory=dict)
    reused: bool = False
    ids: list[str] = field(default_factory=list)
    previous: str | None = None  # the dataset version whose style names carried over
    lineage: list[dict] = field(default_factory=list)  # LineageRow dicts

    def to_dict(self) -> dict:
        return asdict(self)


def styles(config: Config, store: RunStore, registry: Registry | None = None) -> StylesResult:
    registry = registry or load_registry(config)
    dataset = load_dataset(store, config.dataset.name)
    s = config.style
    out = layout.styles_dir(dataset.fingerprint, s.encoder)
    settings_hash = config.section_hash("style")
    previous = _up_to_date(store, out, settings_hash)
    if previous is not None:
        log.info("styles of %s with %s are up to date", dataset.fingerprint, s.encoder)
        return previous
    encoder, embeddings = _embed_all(config, registry, dataset)
    assignment, ids, quality = _assign(dataset, embeddings, s, config.dataset.labels)
    matched = None
    if s.source == "clusters":
        previous = _previous(store, dataset, s, encoder)
        assignment, matched = _identify(embeddings, assignment, previous, s.match_limit)
        ids = matched.ids
        if previous is not None:
            log_lineage(matched.lineage, previous.fingerprint)
    table = _table(dataset, embeddings, assignment, ids, s, matched)
    result = StylesResult(
        dataset.fingerprint, s.encoder, store.uri(out), table.names, table.sizes, quality,
        ids=list(table.ids),
    )  # fmt: skip
    if matched is not None and previous is not None:
        result.previous = previous.fingerprint
        result.lineage = [r.to_dict() for r in matched.lineage]
    # Write, the style table last.
    _write(store, out, dataset, embeddings, assignment, table, config)
    if result.previous is not None:
        store.write_json(layout.StyleFiles(out).lineage,
                         {"previous": result.previous, "rows": result.lineage})  # fmt: skip
    _write_table(store, out, table, result, settings_hash)
    return result


def _previous(store: RunStore, dataset: Dataset, s, encoder) -> Previous | None:
    """The styles of the newest earlier version of this dataset (by ``latest.json``'s history)
    that found its styles by clustering with this encoder, placed in this encoder's space."""
    if s.match_limit == 0:
        return None
    pointer = store.read_json(layout.dataset_latest(dataset.name))
    history = [str(f) for f in pointer.get("history", [])]
    if dataset.fingerprint in history:
        history = history[: len(history) - 1 - history[::-1].index(dataset.fingerprint)]
    for fingerprint in reversed(history):
        files = layout.StyleFiles(layout.styles_dir(fingerprint, s.encoder))
        if fingerprint == dataset.fingerprint or not store.exists(files.table_json):
            continue
        table, assignments = load_styles(store, fingerprint, s.encoder)
        if table.source != "clusters":
            continue
        old = load_dataset(store, dataset.name, fingerprint)
        return place_previous(fingerprint, table, assignments, old, encoder, embed)
    return None


def _identify(embeddings: torch.Tensor, assignment: np.ndarray, previous: Previous | None,
              limit: float) -> tuple[np.ndarray, Matched]:  # fmt: skip
    """Stable ids for the clusters, and the clusters renumbered in the order of their ids
    (``style-0``, ``style-1``, ... then any new ones), so indices stay meaningful too."""
    k = int(assignment.max()) + 1
    centroids = torch.stack([embeddings[torch.from_numpy(assignment == i)].mean(0)
                             for i in range(k)])  # fmt: skip
    sizes = [int((assignment == i).sum()) for i in range(k)]
    matched = match(previous, centroids, sizes, limit)
    order = sorted(range(k), key=lambda i: _id_key(matched.ids[i]))
    renumber = np.empty(k, dtype=np.int64)
    renumber[order] = np.arange(k)
    matched.ids = [matched.ids[i] for i in order]
    return renumber[assignment], matched


def _id_key(style_id: str) -> tuple[int, str]:
    number = style_id.removeprefix("style-")
    return (int(number), "") if number.isdigit() else (1 << 30, style_id)


def _up_to_date(store: RunStore, out: str, settings_hash: str) -> StylesResult | None:
    """The stored result, when the styles in ``out`` were made with these style settings."""
    files = layout.StyleFiles(out)
    if not (store.exists(files.table) and store.exists(files.table_json)):
        return None
    try:  # every file the stage wrote must read, or the styles are found again
        previous = store.read_json(files.table_json, dict)
        if previous.get("settings_hash") != settings_hash:
            return None
        StyleTable.from_json(previous["table"])
        for rel in (files.table, files.assignments):
            store.read_parquet(rel)
        if store.exists(files.encoder_weights):  # a learning encoder's fitted weights
            load_weights(None, store.read_bytes(files.encoder_weights), store.uri(out))
        return StylesResult(**{**previous["result"], "reused": True})
    except (StoreError, KeyError, TypeError, ValueError) as exc:
        log.warning("%s: finding the styles again", getattr(exc, "what", exc))
        return None


def _embed_all(config: Config, registry: Registry,
               dataset: Dataset) -> tuple[torch.nn.Module, torch.Tensor]:  # fmt: skip
    """The encoder and every image's embedding (fitting a learning encoder first); a plugin
    encoder that fails on the images or returns the wrong shape is named."""
    s = config.style
    encoder = encoder_for(registry, dataset, s.encoder, s.encoder_options,
                          config.dataset.image_size, fit_if_missing=True)  # fmt: skip
    n = len(dataset.manifest)
    with step(f"embed with {s.encoder}", total=n) as advance:
        try:
            embeddings = embed_dataset(encoder, dataset, advance)
        except GanpipeError:
            raise
        except Exception as exc:
            problem = f"failed on the dataset's images: {type(exc).__name__}: {exc}"
            raise registry.fault("style_encoder", s.encoder, problem) from exc
    if embeddings.ndim != 2 or embeddings.shape[0] != n:
        raise registry.fault("style_encoder", s.encoder, f"returned shape "
                             f"{tuple(embeddings.shape)}, expected ({n}, D)")  # fmt: skip
    return encoder, embeddings


def _assign(
    dataset: Dataset, embeddings: torch.Tensor, s, labels_mode: str | None = None
) -> tuple[np.ndarray, list[str], dict[str, float]]:
    """Each image's style index, the style names, and how well clusters match the labels the
    data carries (when it carries them for every image)."""
    labels = dataset.manifest["label"]
    quality: dict[str, float] = {}
    if s.source == "labels":
        assignment, names = _from_labels(labels, dataset.manifest, labels_mode)
    else:
        assignment, names, quality = _from_clusters(embeddings, s)
    if labels.notna().all() and s.source == "clusters":
        truth = labels.astype(str).to_numpy()
        quality.update(nmi=nmi(truth, assignment), purity=purity(truth, assignment))
    return assignment, names, quality


def _write_table(
    store: RunStore, out: str, table: StyleTable, result: StylesResult, settings_hash: str
) -> None:
    """The style table, written last: its presence marks the styles complete."""
    files = layout.StyleFiles(out)
    store.write_json(
        files.table_json,
        {"settings_hash": settings_hash, "table": table.to_json(), "result": result.to_dict()},
    )
    centroids = [c.tolist() for c in table.centroids]
    frame = {"style": table.names, "size": table.sizes, "centroid": centroids,
             "exemplars": table.exemplars}  # fmt: skip
    store.write_parquet(files.table, pd.DataFrame(frame))


def _from_labels(
    labels: pd.Series, manifest: pd.DataFrame, mode: str | None = None
) -> tuple[np.ndarray, list[str]]:
    if labels.isna().any():
        missing = int(labels.isna().sum())
        unlabelled = manifest.loc[labels.isna(), "source"].astype(str).head(3).tolist()
        shown = ", ".join(unlabelled) + (" ..." if missing > 3 else "")
        if mode == "dirs":
            fix = (
                "with labels: dirs, each image's first folder under the source names its "
                "style: move these into a style's folder, or use style.source=clusters"
            )
        elif mode and mode.startswith("column:"):
            fix = f"fill the {mode.split(':', 1)[1]!r} column for these rows"
        else:
            fix = "set dataset.labels to dirs or column:<name>, or use style.source=clusters"
        raise ConfigError(
            f"style.source is 'labels' but {missing} of {len(labels)} images carry no label "
            f"({shown})",
            where="style.source",
            fix=fix,
        )
    names = sorted(labels.astype(str).unique())
    index = {n: i for i, n in enumerate(names)}
    return labels.astype(str).map(index).to_numpy(), names


def _from_clusters(embeddings: torch.Tensor, s) -> tuple[np.ndarray, list[str], dict]:
    quality: dict[str, float] = {}
    k = s.num_styles
    if k == "auto":
        with step("choose the number of styles", total=1) as advance:
            k, scores = choose_k(embeddings, s.max_styles, seed=s.seed)
            advance(1)
        quality["silhouette"] = scores.get(k, 0.0)
        log.info("chose %d styles (silhouette %.3f)", k, quality["silhouette"])
    if k > len(embeddings):
        raise ConfigError(
            f"style.num_styles={k} exceeds the {len(embeddings)} images in the dataset",
            where="style.num_styles",
        )
    labels, _ = kmeans(embeddings, k, seed=s.seed)
    return labels.numpy(), [f"style-{i}" for i in range(k)], quality


def display_names(ids: list[str], renames: dict[str, str], retired: dict) -> list[str]:
    """What users see for each style id: ``style.names`` renames some. A key naming no style
    is an error (a misspelt id would otherwise be ignored); one naming a style that has since
    vanished is only logged, so a scheduled retrain does not fail over it."""
    unknown = [k for k in renames if k not in ids and k not in retired]
    if unknown:
        raise ConfigError(
            f"style.names renames styles that do not exist: {', '.join(map(repr, unknown))}",
            where="style.names",
            fix=f"use ids of this dataset's styles: {', '.join(ids)}",
        )
    gone = [k for k in renames if k in retired]
    if gone:
        log.info("style.names: %s no longer exist (see the lineage table)", ", ".join(gone))
    names = [str(renames.get(i, i)) for i in ids]
    clash = sorted({n for n in names if names.count(n) > 1}
                   | {n for i, n in zip(ids, names) if n != i and n in ids})  # fmt: skip
    if clash:
        raise ConfigError(
            f"style.names gives two styles the same name: {', '.join(map(repr, clash))}",
            where="style.names",
            fix="give every style a name of its own, different from every other style's id",
        )
    return names


def _table(dataset: Dataset, embeddings, assignment, ids, s,
           matched: Matched | None = None) -> StyleTable:  # fmt: skip
    retired = matched.retired if matched is not None else {}
    names = display_names(list(ids), dict(s.names), retired)
    centroids, sizes, exemplars = [], [], []
    image_ids = dataset.manifest["id"].to_numpy()
    for i in range(len(names)):
        members = np.flatnonzero(assignment == i)
        if len(members) == 0:
            raise StoreError(f"style {names[i]!r} has no images", where="styles stage")
        centroid = embeddings[members].mean(0)
        dist = (embeddings[members] - centroid).norm(dim=1)
        nearest = members[dist.argsort()[: s.exemplars].numpy()]
        centroids.append(centroid)
        sizes.append(len(members))
        exemplars.append([str(x) for x in image_ids[nearest]])
    return StyleTable(names, sizes, torch.stack(centroids), exemplars, s.encoder,
                      dict(s.encoder_options), list(ids), dict(retired), s.source)  # fmt: skip


def _write(store, out, dataset, embeddings, assignment, table, config) -> None:
    """Everything but the style table: embeddings, assignments, exemplar grids, config."""
    files = layout.StyleFiles(out)
    ids = dataset.manifest["id"]
    store.write_parquet(
        files.embeddings,
        pd.DataFrame({"id": ids, "embedding": [e.tolist() for e in embeddings]}),
    )
    store.write_parquet(
        files.assignments,
        pd.DataFrame({"id": ids, "style": [table.names[i] for i in assignment]}),
    )
    rows = [dataset.load_pixels(dataset.rows_for(ex)) for ex in table.exemplars]
    for name, row in zip(table.names, rows):  # one grid per style, and all styles in one
        store.write_bytes(files.exemplar(name), encode(grid(row, scale=2)))
    width = max(len(r) for r in rows)
    tiles = np.concatenate(
        [np.concatenate([r, np.full((width - len(r), *r.shape[1:]), 255, np.uint8)]) for r in rows]
    )
    store.write_bytes(files.exemplars, encode(grid(tiles, cols=width, scale=2)))
    store.write_text(files.config, config.to_yaml())


def match_reference(config: Config, store: RunStore, data: bytes,
                    registry: Registry | None = None) -> dict:  # fmt: skip
    """Map a reference image to its nearest style and its continuous style embedding (what
    reference-guided generation conditions on)."""
    from ganpipe.data.decode import Rejected, decode_image, decode_settings

    registry = registry or load_registry(config)
    dataset = load_dataset(store, config.dataset.name)
    table, _ = load_styles(store, dataset.fingerprint, config.style.encoder)
    decoded = decode_image(data, decode_settings(config))
    if isinstance(decoded, Rejected):
        raise ConfigError(
            f"the reference image cannot be used: {decoded.reason} ({decoded.detail})",
            where="--reference",
            fix="give a readable image file of at least dataset.min_size pixels",
        )
    encoder = encoder_for(registry, dataset, table.encoder, table.encoder_options,
                          config.dataset.image_size)  # fmt: skip
    embedding = embed(encoder, decoded.pixels[None])[0]
    distances = (table.centroids - embedding).norm(dim=1)
    best = int(distances.argmin())
    return {
        "style": table.names[best],
        "distance": float(distances[best]),
        "distances": {n: round(float(d), 4) for n, d in zip(table.names, distances)},
        "embedding": [round(float(x), 6) for x in embedding],
    }
