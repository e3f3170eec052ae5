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
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from ganpipe.config import Config
from ganpipe.contracts import TrainableStyleEncoder, supports
from ganpipe.data.dataset import Dataset, load_dataset, to_tensor
from ganpipe.data.images import encode, grid
from ganpipe.errors import ConfigError, GanpipeError, StoreError
from ganpipe.hashing import stable_hash
from ganpipe.progress import log, step
from ganpipe.registry import Registry, load_registry
from ganpipe.stages.style_lineage import Matched, Previous, log_lineage, match, place_previous
from ganpipe.stats.cluster import choose_k, kmeans, nmi, purity
from ganpipe.store import RunStore, layout, read_uri


@dataclass
class StyleTable:
    names: list[str]
    sizes: list[int]
    centroids: torch.Tensor  # (S, D)
    exemplars: list[list[str]]  # dataset image ids nearest each centroid
    encoder: str
    encoder_options: dict
    # stable ids (style-N, or the labels) that survive retrains; ``names`` are what users see
    # (``style.names`` renames an id). None: the same as ``names`` (tables from before ids)
    ids: list[str] | None = None
    retired: dict[str, dict] = field(default_factory=dict)  # id -> {"name", "nearest": id}
    source: str = "clusters"

    def __post_init__(self) -> None:
        if self.ids is None:
            self.ids = list(self.names)

    def index(self, name: str | int) -> int:
        if name in self.names:  # names first: a style may well be called "3"
            return self.names.index(name)
        if name in self.ids:
            return self.ids.index(name)
        gone = [i for i, r in self.retired.items() if name in (i, r.get("name"))]
        if gone:
            nearest = self.retired[gone[0]].get("nearest")
            shown = self.names[self.ids.index(nearest)] if nearest in self.ids else nearest
            raise ConfigError(
                f"style {name!r} no longer exists: it vanished or merged when the styles were "
                f"found again on newer data; the nearest surviving style is {shown!r}",
                where="--style",
                fix=f"ask for {shown!r} (or another of: {', '.join(self.names)}); "
                "'ganpipe styles' prints the lineage table",
            )
        if isinstance(name, int) or (isinstance(name, str) and name.isdigit()):
            i = int(name)
            if 0 <= i < len(self.names):
                return i
        raise ConfigError(
            f"unknown style {name!r}; this model's styles are: {', '.join(self.names)}",
            where="--style",
            fix="use one of those names or an index from 0 to " + str(len(self.names) - 1),
        )

    def to_json(self) -> dict:
        return {
            "names": self.names,
            "sizes": self.sizes,
            "centroids": self.centroids.tolist(),
            "exemplars": self.exemplars,
            "encoder": self.encoder,
            "encoder_options": self.encoder_options,
            "ids": self.ids,
            "retired": self.retired,
            "source": self.source,
        }

    @classmethod
    def from_json(cls, data: dict) -> StyleTable:
        return cls(
            data["names"],
            data["sizes"],
            torch.tensor(data["centroids"]),
            data["exemplars"],
            data["encoder"],
            data["encoder_options"],
            data.get("ids"),
            dict(data.get("retired", {})),
            data.get("source", "clusters"),
        )


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


FIT_IMAGES = 20_000  # most images a learning encoder trains on (a seeded sample)


def encoder_for(registry: Registry, dataset: Dataset, name: str, options: dict, image_size: int,
                fit_if_missing: bool = False) -> torch.nn.Module:  # fmt: skip
    """The style encoder of a dataset version, ready to embed.

    An encoder that learns (one with a ``fit`` method) takes its weights from its ``weights``
    option (a local path or store URI), else from ``encoder.safetensors`` beside the style
    table, else, when ``fit_if_missing``, by training on the dataset now and saving them there.
    """
    encoder = registry.create("style_encoder", name, config_key="style.encoder_options",
                              image_size=image_size, **options)  # fmt: skip
    if not supports(encoder, TrainableStyleEncoder):
        return encoder.eval()
    if options.get("weights"):
        weights = read_uri(
            options["weights"], what="the style encoder weights",
            where="style.encoder_options.weights",
            fix="give the path or store URI of a .safetensors file of this encoder's weights",
        )  # fmt: skip
        _load_weights(encoder, weights, options["weights"])
        return encoder.eval()
    folder = layout.styles_dir(dataset.fingerprint, name)
    files = layout.StyleFiles(folder)
    store, options_hash = dataset.store, stable_hash(options)
    saved = files.encoder_meta
    if _saved_encoder(store, files, options_hash) and not fit_if_missing:
        _load_weights(encoder, store.read_bytes(files.encoder_weights), store.uri(folder))
    elif _saved_encoder(store, files, options_hash):
        try:  # the styles stage refits an encoder whose weights are damaged
            _load_weights(encoder, store.read_bytes(files.encoder_weights), store.uri(folder))
        except StoreError as exc:
            log.warning("%s: fitting the style encoder again", exc.what)
            _fit(encoder, dataset, name)
            state = {k: v.detach().contiguous() for k, v in encoder.state_dict().items()}
            store.write_bytes(files.encoder_weights, save_safetensors(state))
    elif fit_if_missing:
        _fit(encoder, dataset, name)
        state = {k: v.detach().contiguous() for k, v in encoder.state_dict().items()}
        store.write_bytes(files.encoder_weights, save_safetensors(state))
        store.write_json(saved, {"name": name, "options": options, "options_hash": options_hash})
    else:
        raise StoreError(
            f"style encoder {name!r} has not been trained for dataset {dataset.fingerprint}",
            where=store.uri(folder),
            fix="run 'ganpipe styles' with this config first",
        )
    return encoder.eval()


def _saved_encoder(store: RunStore, files, options_hash: str) -> bool:
    """Whether fitted weights for these options are recorded (a damaged record: not)."""
    try:
        meta = store.read_json(files.encoder_meta, dict) if store.exists(files.encoder_meta) else {}
    except StoreError:
        return False
    return meta.get("options_hash") == options_hash


def _fit(encoder, dataset: Dataset, name: str) -> None:
    rows = dataset.manifest.sample(min(len(dataset.manifest), FIT_IMAGES), random_state=0)
    pixels = torch.from_numpy(dataset.load_pixels(rows))

    def draw(n: int, gen: torch.Generator) -> torch.Tensor:
        batch = pixels[torch.randint(len(pixels), (n,), generator=gen)]
        return batch.permute(0, 3, 1, 2).float() / 127.5 - 1.0

    steps = getattr(encoder, "steps", None)
    with step(f"train style encoder {name}", total=steps) as advance:
        encoder.fit(draw, log=lambda done, loss: advance(50))


def _load_weights(encoder: torch.nn.Module | None, data: bytes, where: str) -> None:
    """Weights into ``encoder`` (None: only check that they read). Bytes that are not a
    safetensors file are damage, named as such; tensors that do not fit are a config error."""
    try:
        state = load_safetensors(data)
    except Exception as exc:
        raise StoreError(
            f"the style encoder weights in {where} are damaged ({type(exc).__name__})",
            where=where,
            fix="rerun 'ganpipe styles', which fits the encoder again (or, for weights you "
            "gave, give a readable .safetensors file)",
        ) from None
    if encoder is None:
        return
    try:
        encoder.load_state_dict(state)
    except Exception as exc:
        raise ConfigError(
            f"the style encoder weights do not fit the encoder: {str(exc).splitlines()[0][:200]}",
            where=where,
            fix="use weights saved by this encoder with the same options",
        ) from None


@torch.inference_mode()
def embed(encoder: torch.nn.Module, pixels: np.ndarray, batch_size: int = 256) -> torch.Tensor:
    out = [
        encoder(to_tensor(pixels[i : i + batch_size])) for i in range(0, len(pixels), batch_size)
    ]
    return torch.cat(out).float()


def embed_dataset(encoder: torch.nn.Module, dataset: Dataset, advance=None) -> torch.Tensor:
    """Embeddings of every image, aligned with the manifest, reading one shard at a time."""
    out: torch.Tensor | None = None
    position = {label: i for i, label in enumerate(dataset.manifest.index)}
    for part, pixels in dataset.iter_shards():
        e = embed(encoder, pixels)
        if out is None:
            out = torch.empty(len(dataset.manifest), *e.shape[1:])
        out[[position[i] for i in part.index]] = e
        if advance:
            advance(len(part))
    return out


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
            _load_weights(None, store.read_bytes(files.encoder_weights), store.uri(out))
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


def load_styles(store: RunStore, fingerprint: str, encoder: str) -> tuple[StyleTable, pd.DataFrame]:
    out = layout.styles_dir(fingerprint, encoder)
    files = layout.StyleFiles(out)
    if not store.exists(files.table):
        raise StoreError(
            f"no styles for dataset {fingerprint} with encoder {encoder!r} in {store.uri()}",
            where="style.encoder",
            fix="run 'ganpipe styles' with this config first",
        )
    table = StyleTable.from_json(store.read_json(files.table_json, dict)["table"])
    assignments = store.read_parquet(files.assignments)
    if not set(assignments["style"]) <= set(table.names):
        raise StoreError(
            f"the styles in {store.uri(out)} are incomplete (a styles run was interrupted)",
            where="styles stage",
            fix="run 'ganpipe styles' again",
        )
    return table, assignments


def check_same_styles(table: StyleTable, model_table: StyleTable, where: str) -> None:
    """A model conditions on the style table it was trained with; if the dataset's styles were
    recomputed since, scoring its samples against the new ones would be wrong."""
    same = table.names == model_table.names and torch.allclose(
        table.centroids, model_table.centroids
    )
    if not same:
        raise StoreError(
            "the dataset's styles were recomputed after this model was trained",
            where=where,
            fix="retrain ('ganpipe train') with the current styles, or restore the style "
            "settings the model was trained with",
        )


def match_reference(config: Config, store: RunStore, data: bytes,
                    registry: Registry | None = None) -> dict:  # fmt: skip
    """Map a reference image to its nearest style and its continuous style embedding (what
    reference-guided generation conditions on)."""
    from ganpipe.data.decode import Rejected, decode_image
    from ganpipe.stages.ingest import decode_settings

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
