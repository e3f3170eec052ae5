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

    def index(self, name: str | int) -> int:
        if name in self.names:  # names first: a style may well be called "3"
            return self.names.index(name)
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
    if store.exists(saved) and store.read_json(saved).get("options_hash") == options_hash:
        _load_weights(encoder, store.read_bytes(files.encoder_weights), store.uri(folder))
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


def _fit(encoder, dataset: Dataset, name: str) -> None:
    rows = dataset.manifest.sample(min(len(dataset.manifest), FIT_IMAGES), random_state=0)
    pixels = torch.from_numpy(dataset.load_pixels(rows))

    def draw(n: int, gen: torch.Generator) -> torch.Tensor:
        batch = pixels[torch.randint(len(pixels), (n,), generator=gen)]
        return batch.permute(0, 3, 1, 2).float() / 127.5 - 1.0

    steps = getattr(encoder, "steps", None)
    with step(f"train style encoder {name}", total=steps) as advance:
        encoder.fit(draw, log=lambda done, loss: advance(50))


def _load_weights(encoder: torch.nn.Module, data: bytes, where: str) -> None:
    try:
        encoder.load_state_dict(load_safetensors(data))
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
    embeddings = _embed_all(config, registry, dataset)
    assignment, names, quality = _assign(dataset, embeddings, s)
    table = _table(dataset, embeddings, assignment, names, s)
    result = StylesResult(
        dataset.fingerprint, s.encoder, store.uri(out), table.names, table.sizes, quality
    )
    # Write, the style table last.
    _write(store, out, dataset, embeddings, assignment, table, config)
    _write_table(store, out, table, result, settings_hash)
    return result


def _up_to_date(store: RunStore, out: str, settings_hash: str) -> StylesResult | None:
    """The stored result, when the styles in ``out`` were made with these style settings."""
    files = layout.StyleFiles(out)
    if not (store.exists(files.table) and store.exists(files.table_json)):
        return None
    previous = store.read_json(files.table_json)
    if previous.get("settings_hash") != settings_hash:
        return None
    return StylesResult(**{**previous["result"], "reused": True})


def _embed_all(config: Config, registry: Registry, dataset: Dataset) -> torch.Tensor:
    """Every image's embedding (fitting a learning encoder first); a plugin encoder that fails
    on the images or returns the wrong shape is named."""
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
    return embeddings


def _assign(
    dataset: Dataset, embeddings: torch.Tensor, s
) -> tuple[np.ndarray, list[str], dict[str, float]]:
    """Each image's style index, the style names, and how well clusters match the labels the
    data carries (when it carries them for every image)."""
    labels = dataset.manifest["label"]
    quality: dict[str, float] = {}
    if s.source == "labels":
        assignment, names = _from_labels(labels)
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


def _from_labels(labels: pd.Series) -> tuple[np.ndarray, list[str]]:
    if labels.isna().any():
        missing = int(labels.isna().sum())
        raise ConfigError(
            f"style.source is 'labels' but {missing} of {len(labels)} images carry no label",
            where="style.source",
            fix="set dataset.labels to dirs or column:<name>, or use style.source=clusters",
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


def _table(dataset: Dataset, embeddings, assignment, names, s) -> StyleTable:
    centroids, sizes, exemplars = [], [], []
    ids = dataset.manifest["id"].to_numpy()
    for i in range(len(names)):
        members = np.flatnonzero(assignment == i)
        if len(members) == 0:
            raise StoreError(f"style {names[i]!r} has no images", where="styles stage")
        centroid = embeddings[members].mean(0)
        dist = (embeddings[members] - centroid).norm(dim=1)
        nearest = members[dist.argsort()[: s.exemplars].numpy()]
        centroids.append(centroid)
        sizes.append(len(members))
        exemplars.append([str(x) for x in ids[nearest]])
    return StyleTable(
        names, sizes, torch.stack(centroids), exemplars, s.encoder, dict(s.encoder_options)
    )


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
    table = StyleTable.from_json(store.read_json(files.table_json)["table"])
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
