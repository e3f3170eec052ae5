"""Warm starts: a new model version begins from an earlier model instead of random weights.

A retrain after a few percent more data should not pay the whole training budget again; the
established GAN tools resume from a trained network (and FreezeD keeps the discriminator's early
layers fixed). ``train.init`` names where to start:

- ``scratch``: random weights from ``train.seed``;
- ``champion``: the current model (``models/<name>/current``), if any; else scratch;
- ``auto`` (the default): scratch, except in the ``retrain`` flow, which asks for the champion;
- a model URI (a model version folder, local or ``s3://``).

G and its EMA copy start from the exported (EMA) generator, D from the exported discriminator.
Styles are matched by their stable id (see ``stages.style_lineage``): the rows of every
per-style embedding of a matched style are copied, a new style keeps its freshly initialised
row. Everything else must have the same shape, so the architecture and its options must agree;
otherwise the error says which setting differs.

The start is part of the model version (``identity``: the start model's version and a hash of
its generator's bytes), so two versions trained from different starts never share a name.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

from ganpipe.config import Config
from ganpipe.domain.model_pointers import ModelRef, champion
from ganpipe.errors import ConfigError, StoreError
from ganpipe.progress import log
from ganpipe.store import RunStore

SCRATCH = "scratch"


@dataclass
class InitSource:
    """Where a run's weights start; ``model`` is None for scratch."""

    identity: str  # what the model version hashes: "scratch" or "<uri>#<sha of generator>"
    model: ModelRef | None = None

    @property
    def is_scratch(self) -> bool:
        return self.model is None


def resolve_init(config: Config, store: RunStore) -> InitSource:
    """The concrete start ``train.init`` names for this run."""
    init = config.train.init
    if init in (SCRATCH, "auto"):
        return InitSource(SCRATCH)
    if init == "champion":
        found = champion(config, store)
        if found is None:
            log.info("train.init=champion: no current model yet, starting from scratch")
            return InitSource(SCRATCH)
        model = found
    else:
        model = ModelRef(RunStore(init, config.store.storage_options), "")
    generator = model.files.network("generator")
    if not model.store.exists(generator):
        raise ConfigError(
            f"train.init names {model.uri}, which holds no exported generator",
            where="train.init",
            fix="use scratch, champion, or the URI of a trained model version folder",
        )
    digest = hashlib.sha256(model.store.read_bytes(generator)).hexdigest()[:16]
    return InitSource(f"{model.uri}#{digest}", model)


def start_for_retrain(config: Config, store: RunStore) -> str:
    """What ``train.init: auto`` means in the retrain flow: the champion, when there is one of
    the same architecture and image size (a changed architecture starts from scratch)."""
    if config.train.init != "auto":
        return config.train.init
    found = champion(config, store)
    description = found.files.network("generator", "json") if found else None
    if found is None or not found.store.exists(description):
        return SCRATCH
    meta = found.store.read_json(description)
    wanted = {"image_size": config.dataset.image_size, **config.model.generator_options}
    same = meta.get("name") == config.model.generator and _architecture(
        meta.get("options", {})
    ) == _architecture(wanted)
    if not same:
        log.info("the current model has another architecture: the challenger starts afresh")
    return "champion" if same else SCRATCH


def warm_start(nets, source: InitSource, table, config: Config, registry) -> dict:
    """Load the start model into ``nets`` (G, D and EMA); returns what was carried over, for
    the training record."""
    from ganpipe.domain.style_table import StyleTable
    from ganpipe.store.checkpoints import load_network

    model = source.model
    generator, meta = load_network(model.store, model.folder, "generator", registry)
    _check_compatible(meta, nets.g_options, config.model.generator, "generator", model)
    old = StyleTable.from_json(meta["styles"])
    rows = {j: old.ids.index(i) for j, i in enumerate(table.ids) if i in old.ids}
    counts = (len(old.ids), len(table.ids))
    _load_rows(nets.G, generator.state_dict(), rows, counts, "generator", model)
    if nets.ema is not nets.G:
        nets.ema.load_state_dict(nets.G.state_dict())
    carried = {"init": source.identity, "styles_copied": [table.ids[j] for j in sorted(rows)],
               "styles_fresh": [i for i in table.ids if i not in old.ids],
               "discriminator": False}  # fmt: skip
    if model.store.exists(model.files.network("discriminator", "json")):
        D, d_meta = load_network(model.store, model.folder, "discriminator", registry)
        _check_compatible(d_meta, nets.d_options, config.model.discriminator, "discriminator",
                          model)  # fmt: skip
        _load_rows(nets.D, D.state_dict(), rows, counts, "discriminator", model)
        carried["discriminator"] = True
    log.info("warm start from %s: %d styles copied, %d new", model.uri,
             len(carried["styles_copied"]), len(carried["styles_fresh"]))  # fmt: skip
    return carried


def _check_compatible(meta: dict, options: dict, name: str, kind: str, model: ModelRef) -> None:
    """Same architecture, same options but for the number of styles."""
    theirs, ours = _architecture(meta["options"]), _architecture(options)
    if meta["name"] != name or theirs != ours:
        differ = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
        what = f"{kind} options differ in {', '.join(differ)}: {theirs} vs {ours}"
        if meta["name"] != name:
            what = f"{kind} {meta['name']!r}, this config {name!r}"
        raise ConfigError(
            f"train.init model {model.uri} has another architecture ({what})",
            where="train.init",
            fix="use the start model's model.* settings, or train.init=scratch",
        )


def _architecture(options: dict) -> dict:
    """A network's constructor options but the number of styles, which a warm start may
    change (new styles get rows of their own)."""
    return {k: v for k, v in options.items() if k != "num_styles"}


def _style_rows(module: torch.nn.Module) -> set[str]:
    """Prefixes of the per-style tables in ``module``: every embedding with a row per style."""
    found = set()
    for prefix, child in module.named_modules():
        if isinstance(child, torch.nn.Embedding):
            found.add(prefix + "." if prefix else "")
    return found


def _load_rows(module: torch.nn.Module, old: dict, rows: dict[int, int],
               counts: tuple[int, int], kind: str, model: ModelRef) -> None:  # fmt: skip
    """Copy ``old`` into ``module``: per-style tables row by matched style, the rest whole.
    ``counts``: the number of styles of the start model and of this run."""
    prefixes = _style_rows(module)
    state = module.state_dict()
    old_styles, new_styles = counts
    for key, target in state.items():
        if key not in old:
            raise StoreError(f"the {kind} of {model.uri} has no tensor {key!r}",
                             where="train.init",
                             fix="use a model of the same architecture")  # fmt: skip
        source = old[key].to(target.dtype)
        per_style = (
            any(key.startswith(p) for p in prefixes)
            and target.ndim >= 1
            and (source.shape[0] == old_styles and target.shape[0] == new_styles)
        )
        with torch.no_grad():
            if per_style:
                for new_row, old_row in rows.items():
                    target[new_row].copy_(source[old_row])
            elif source.shape == target.shape:
                target.copy_(source)
            else:
                raise StoreError(
                    f"the {kind} tensor {key!r} of {model.uri} has shape {tuple(source.shape)}, "
                    f"this run's has {tuple(target.shape)}",
                    where="train.init", fix="use a model of the same architecture and image size",
                )  # fmt: skip
    module.load_state_dict(state)


def freeze_early_layers(D: torch.nn.Module, count: int) -> list[str]:
    """FreezeD (Mo et al. 2020): the first ``count`` layers of the discriminator that hold
    weights stop learning, so fine-tuning on new data keeps the low-level features the start
    model learnt. Returns the frozen layers' names."""
    if count == 0:
        return []
    layers = [(n, m) for n, m in D.named_modules()
              if any(True for _ in m.parameters(recurse=False))]  # fmt: skip
    if count > len(layers):
        raise ConfigError(
            f"train.freeze_d_layers={count}, but the discriminator has {len(layers)} layers "
            "with weights",
            where="train.freeze_d_layers",
            fix=f"use a number from 0 to {len(layers) - 1}",
        )
    for _, layer in layers[:count]:
        layer.requires_grad_(False)
    return [n for n, _ in layers[:count]]
