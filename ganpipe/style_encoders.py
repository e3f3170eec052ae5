"""Style encoders of a dataset version: built by name from the registry, fitted once (those that
learn) and saved beside the style table, loaded again by every stage that embeds images.

The styles stage fits and saves; training (style-aware regularisers), generation (reference
images), the filters and the evaluation load. It sits above the registry and below every
stage (docs/architecture.md, "Layers").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from ganpipe.contracts import TrainableStyleEncoder, supports
from ganpipe.data.dataset import Dataset, to_tensor
from ganpipe.errors import ConfigError, StoreError
from ganpipe.hashing import stable_hash
from ganpipe.progress import log, step
from ganpipe.store import RunStore, layout, read_uri

if TYPE_CHECKING:
    from ganpipe.registry import Registry

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
        load_weights(encoder, weights, options["weights"])
        return encoder.eval()
    folder = layout.styles_dir(dataset.fingerprint, name)
    files = layout.StyleFiles(folder)
    store, options_hash = dataset.store, stable_hash(options)
    saved = files.encoder_meta
    if _saved_encoder(store, files, options_hash) and not fit_if_missing:
        load_weights(encoder, store.read_bytes(files.encoder_weights), store.uri(folder))
    elif _saved_encoder(store, files, options_hash):
        try:  # the styles stage refits an encoder whose weights are damaged
            load_weights(encoder, store.read_bytes(files.encoder_weights), store.uri(folder))
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


def load_weights(encoder: torch.nn.Module | None, data: bytes, where: str) -> None:
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
