"""Checkpoints and exported models: self-describing, and safe to load from anyone.

A checkpoint holds the full training state (networks, EMA, optimisers, RNG states, step) as plain
tensors and numbers, loaded with ``weights_only=True`` so a tampered file cannot run code. An
exported model is safetensors weights plus a JSON of constructor arguments and the style table:
``ganpipe generate`` rebuilds it from the registry without the training config or code.
"""

from __future__ import annotations

import io
import re

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from ganpipe.errors import StoreError
from ganpipe.progress import log
from ganpipe.store import RunStore, layout

_CKPT = re.compile(r"^step-(\d{8})\.pt$")


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}.pt"


def save_checkpoint(store: RunStore, folder: str, step: int, state: dict) -> str:
    buf = io.BytesIO()
    torch.save(state, buf)
    return store.write_bytes(f"{folder}/{checkpoint_name(step)}", buf.getvalue())


def refusal(exc: BaseException) -> str:
    """Why ``torch.load(..., weights_only=True)`` refused a file, in one whole sentence (torch's
    own message runs to a page of advice about unsafe loading, which does not apply here)."""
    import pickle

    text = str(exc)
    if "Weights only load failed" in text or isinstance(exc, pickle.UnpicklingError):
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
        what = f" ({found.group(1)})" if found else ""
        return (f"it holds Python objects other than tensors{what}, which are never "
                "unpickled, so nothing in it ran")  # fmt: skip
    if isinstance(exc, (EOFError, RuntimeError)) and ("zip" in text or "EOF" in text or not text):
        return "it is truncated or not a torch file"
    name = type(exc).__name__
    return (
        f"it is not a torch file of tensors ({name})"
        if name[:1].isupper()
        else ("it is not a torch file of tensors")
    )


def load_checkpoint_bytes(data: bytes, where: str) -> dict:
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise StoreError(
            f"the checkpoint cannot be loaded safely: {refusal(exc)}",
            where=where,
            fix="use another checkpoint, or delete this one so training resumes from the one "
            "before (or starts again)",
        ) from None


def newest_valid_checkpoint(store: RunStore, folder: str) -> tuple[int, dict] | None:
    """The newest checkpoint that loads; a truncated newest one (a crash mid-write on a store
    without atomic rename) is skipped with a warning rather than ending the run. Temporary files
    of a writer killed mid-checkpoint are swept first (they are never taken for checkpoints)."""
    store.sweep(folder)
    steps = sorted(
        (int(m.group(1)) for name in store.listdir(folder) if (m := _CKPT.match(name))),
        reverse=True,
    )
    for step in steps:
        rel = f"{folder}/{checkpoint_name(step)}"
        try:
            return step, load_checkpoint_bytes(store.read_bytes(rel), store.uri(rel))
        except StoreError as exc:
            log.warning("skipping checkpoint %s: %s", rel, exc.what)
    return None


def export_network(
    store: RunStore,
    folder: str,
    kind: str,
    name: str,
    options: dict,
    module: torch.nn.Module,
    metadata: dict,
) -> str:
    files = layout.ModelFiles(folder)
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    store.write_bytes(files.network(kind), save_safetensors(state))
    return store.write_json(
        files.network(kind, "json"),
        {"kind": kind, "name": name, "options": options, **metadata},
    )


def load_network(store: RunStore, folder: str, kind: str, registry) -> tuple[torch.nn.Module, dict]:
    """Rebuild an exported network from its JSON description and safetensors weights."""
    files = layout.ModelFiles(folder)
    description = files.network(kind, "json")
    if not store.exists(description):
        raise StoreError(
            f"no exported {kind} in {store.uri(folder)}",
            where="model",
            fix="train the model first ('ganpipe train'), or point --model at a model version",
        )
    fix = "export the model again (rerun 'ganpipe train'), or use another model version"
    try:
        meta = store.read_json(description, dict)
        name, options = meta["name"], dict(meta["options"])
    except (ValueError, KeyError, TypeError) as exc:
        raise StoreError(
            f"{store.uri(description)} is not a model description ({type(exc).__name__}: "
            f"{str(exc)[:120]})",
            where=store.uri(folder),
            fix=fix,
        ) from None
    # The name is only ever looked up among registered components: never imported.
    component = registry.get(kind, name)
    try:
        module = component.factory(**options)
    except (TypeError, ValueError) as exc:
        raise StoreError(
            f"the exported {kind} options do not fit {name!r} ({component.plugin}): {exc}",
            where=store.uri(description),
            fix=fix,
        ) from None
    registry.check(kind, name, module)
    weights = files.network(kind)
    try:
        state = load_safetensors(store.read_bytes(weights))
    except StoreError:
        raise
    except Exception as exc:  # safetensors parses only tensors: a bad file is just refused
        raise StoreError(
            f"{store.uri(weights)} is not a safetensors file ({type(exc).__name__}: "
            f"{str(exc)[:120]})",
            where=store.uri(folder),
            fix=fix,
        ) from None
    try:
        missing, unexpected = module.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # tensors of the wrong shape
        missing, unexpected = [str(exc).strip().splitlines()[-1][:160]], []
    if missing or unexpected:
        raise StoreError(
            f"exported {kind} weights do not fit {meta['name']!r} "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})",
            where=store.uri(folder),
            fix="the plugin providing this architecture changed; use the version that trained it",
        )
    return module.eval(), meta
