"""Project stage: for each real image, the code that makes the model reproduce it, with the
reconstruction, a side-by-side picture and how close it got (PSNR, and the distance in the
style encoder's space in units of the distance between style centroids).

Results go to ``projections/<model>-<version>/<image>-<hash>/`` (of ``--out``, default the
run store): ``code.npz``, ``reconstruction.png``, ``side_by_side.png`` and, last,
``projection.json``. The hash covers the image's bytes, the model version and the project
settings, so a rerun skips images already projected and a changed setting projects again.
"""

from __future__ import annotations

import posixpath
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from ganpipe.config import Config
from ganpipe.contracts import ConditionalGenerator, MixingGenerator, supports
from ganpipe.data.dataset import to_pixels
from ganpipe.data.images import encode, grid
from ganpipe.domain.latent_codes import ProjectedCode
from ganpipe.domain.model_pointers import ModelRef, current_model, generator_meta
from ganpipe.domain.style_table import StyleTable
from ganpipe.errors import ConfigError, StoreError
from ganpipe.generation.render import centroid_spread, decode_for_model, model_encoder, soft_weights
from ganpipe.hashing import sha256_bytes, stable_hash
from ganpipe.progress import log, step
from ganpipe.projection.loss import ReconstructionLoss, psnr
from ganpipe.projection.optimise import Found, project_w, project_z
from ganpipe.registry import Registry, load_registry
from ganpipe.store import RunStore, layout, read_uri
from ganpipe.store.checkpoints import load_network

STYLE_TEMPERATURE = 0.1  # the starting style weights, as a reference image's default


@dataclass
class Projection:
    image: str  # the source image's URI
    folder: str  # URI of the results
    code: str  # URI of code.npz
    psnr: float
    style_distance: float  # in units of the mean distance between style centroids
    nearest_style: str
    seconds: float
    skipped: bool = False  # already projected with these settings

    def to_dict(self) -> dict:
        return asdict(self)


def projection_kind(generator: torch.nn.Module, name: str) -> str:
    """``w+`` for generators with a mapping network and levels, ``z`` for those that take
    style weights; any other is a clear error naming it."""
    if supports(generator, MixingGenerator):
        return "w+"
    if supports(generator, ConditionalGenerator):
        return "z"
    raise ConfigError(
        f"generator {name!r} cannot be projected into: it has neither condition() and "
        "render() (ConditionalGenerator) nor a mapping network with levels (MixingGenerator)",
        where="--model",
        fix="add those methods to the plugin (README, 'Writing a plugin'), or use a dcgan, "
        "resnet or stylegan model",
    )


def _folder(meta: dict, uri: str, data: bytes, settings: dict) -> str:
    stem = posixpath.splitext(posixpath.basename(uri.rstrip("/")))[0] or "image"
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)[:60]
    key = stable_hash({"image": sha256_bytes(data), "settings": settings}, 10)
    return layout.projection_dir(meta["model"], meta["version"], f"{stem}-{key}")


@dataclass
class _Model:
    """The networks a projection uses, loaded once for every image."""

    ref: ModelRef
    meta: dict
    table: StyleTable
    generator: torch.nn.Module
    discriminator: torch.nn.Module | None
    encoder: torch.nn.Module
    kind: str

    @property
    def label(self) -> str:
        return f"{self.meta['model']}/{self.meta['version']}"


def _load(config: Config, store: RunStore, registry: Registry, ref: ModelRef) -> _Model:
    generator, meta = load_network(ref.store, ref.folder, "generator", registry)
    kind = projection_kind(generator, meta.get("name", type(generator).__name__))
    try:
        discriminator, _ = load_network(ref.store, ref.folder, "discriminator", registry)
    except StoreError:
        discriminator = None
        log.warning("no discriminator in %s: projecting with pixels and styles only", ref.uri)
    table = StyleTable.from_json(meta["styles"])
    encoder = model_encoder(config, store, registry, meta, table).eval()
    for net in (generator, discriminator, encoder):
        if net is not None:
            net.eval().requires_grad_(False)
    return _Model(ref, meta, table, generator, discriminator, encoder, kind)


def _code(model: _Model, found: Found, info: dict) -> ProjectedCode:
    def arr(t: torch.Tensor | None) -> np.ndarray | None:
        return None if t is None else t.detach().numpy()

    return ProjectedCode(model.kind, arr(found.style), model.label, arr(found.z), arr(found.w),
                         [arr(n) for n in found.noise], info)  # fmt: skip


def project_one(config: Config, model: _Model, uri: str, data: bytes, record=None) -> tuple:
    """(code, reconstruction pixels, target pixels, figures) for one image."""
    s = config.project
    pixels = decode_for_model(config, model.meta, [uri], [data], "IMG", "the image")
    target = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    with torch.no_grad():
        embedding = model.encoder(target)[0]
    weights = soft_weights(model.table, embedding, STYLE_TEMPERATURE)
    spread = float(centroid_spread(model.table))
    loss = ReconstructionLoss(target, model.discriminator, model.encoder, spread, s)
    began = time.perf_counter()
    with torch.enable_grad():
        run = project_w if model.kind == "w+" else project_z
        found = run(model.generator, loss, weights, s, record)
    seconds = time.perf_counter() - began
    with torch.no_grad():
        seen = model.encoder(found.image)[0]
    distance = float((seen - embedding).norm()) / spread
    if model.kind == "w+":  # variations are drawn in the reconstruction's styles, not the target's
        found.style = soft_weights(model.table, seen, STYLE_TEMPERATURE)
    # the reconstruction's style, as the style encoder sees it: what variations are filed under
    nearest = int((model.table.centroids - seen).norm(dim=1).argmin())
    figures = {"psnr": psnr(found.image, target), "style_distance": distance,
               "seconds": seconds, "steps": s.steps, "nearest_index": nearest,
               "nearest_style": model.table.names[nearest]}  # fmt: skip
    code = _code(model, found, {"image": uri, **figures})
    return code, to_pixels(found.image)[0], pixels[0], figures


def side_by_side(target: np.ndarray, reconstruction: np.ndarray) -> bytes:
    """The image and its reconstruction, next to each other, at least 128 px tall."""
    scale = max(1, -(-128 // target.shape[0]))
    return encode(grid(np.stack([target, reconstruction]), cols=2, pad=4, scale=scale))


def project(
    config: Config,
    store: RunStore,
    images: list[str],
    registry: Registry | None = None,
    model: ModelRef | None = None,
    out: RunStore | None = None,
) -> list[Projection]:
    """Project each of ``images`` (paths or URIs) into the model (default: current)."""
    if not images:
        raise ConfigError("no images to project", where="IMG",
                          fix="give one or more image paths or URIs")  # fmt: skip
    registry = registry or load_registry(config)
    ref = model or current_model(config, store)
    out = out or store
    fix = "give the path or URI of an image file"
    sources = [(uri, read_uri(uri, what="the image", where="IMG", fix=fix)) for uri in images]
    meta = generator_meta(ref)
    loaded: list[_Model] = []
    results = []
    with step("project", total=len(sources), unit=("img", 1)) as advance:
        for uri, data in sources:
            results.append(_project_or_skip(config, store, registry, ref, meta, out, loaded,
                                            uri, data))  # fmt: skip
            advance(1)
    return results


def _project_or_skip(config, store, registry, ref, meta, out, loaded, uri, data) -> Projection:
    """One image: its recorded result when these settings projected it before, else a new
    projection (the networks are loaded on the first image that needs them)."""
    folder = _folder(meta, uri, data, config.project.model_dump())
    done = f"{folder}/projection.json"
    if out.exists(done):
        return Projection(**{**out.read_json(done), "skipped": True})
    if not loaded:
        loaded.append(_load(config, store, registry, ref))
    code, reconstruction, target, figures = project_one(config, loaded[0], uri, data)
    out.write_bytes(f"{folder}/code.npz", code.to_bytes())
    out.write_bytes(f"{folder}/reconstruction.png", encode(reconstruction))
    out.write_bytes(f"{folder}/side_by_side.png", side_by_side(target, reconstruction))
    result = Projection(uri, out.uri(folder), out.uri(f"{folder}/code.npz"),
                        round(figures["psnr"], 3), round(figures["style_distance"], 4),
                        figures["nearest_style"], round(figures["seconds"], 3))  # fmt: skip
    out.write_json(done, result.to_dict())
    return result
