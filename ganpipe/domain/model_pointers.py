"""Model versions as generation sees them: where one lives, which one is current, promotion.

``models/<name>/current`` names the version production generation uses (the champion). It is
read here alone, so the generate stage and the retrain gate cannot disagree about it. Nothing
here imports torch, so the command line and the gate stay quick to load.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ganpipe.config import Config
from ganpipe.errors import StoreError
from ganpipe.store import RunStore, layout


@dataclass
class ModelRef:
    """Where an exported model lives: a store and a folder in it (``""``: the store's root,
    as for a model given by its URI)."""

    store: RunStore
    folder: str

    @property
    def uri(self) -> str:
        return self.store.uri(self.folder) if self.folder else self.store.uri()

    @property
    def files(self) -> layout.ModelFiles:
        """The version's files (``generator.json``, ``evaluation.json``...) in its store."""
        return layout.ModelFiles(self.folder)


_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")  # a version folder's name
_ANY = "<any version>"  # promote's default: whatever is current now


def champion(config: Config, store: RunStore) -> ModelRef | None:
    """The version ``models/<name>/current`` names, or None before any model was promoted."""
    pointer = layout.model_current(config.model_name)
    if not store.exists(pointer):
        return None
    version = store.read_text(pointer).strip()
    folder = layout.model_dir(config.model_name, version) if version else ""
    described = layout.ModelFiles(folder).network("generator", "json")
    if not _VERSION.match(version) or not store.exists(described):
        raise StoreError(
            f"{store.uri(pointer)} is damaged: it names "
            + (f"version {version[:80]!r}, which holds no exported model" if version else "none"),
            where=store.uri(pointer),
            fix="rerun 'ganpipe train', which makes the model it trains current again, or "
            "delete that file",
        )
    return ModelRef(store, folder)


def current_model(config: Config, store: RunStore) -> ModelRef:
    """The champion, which production generation uses; a missing one says how to make it."""
    model = champion(config, store)
    if model is None:
        raise StoreError(
            f"model {config.model_name!r} has no current version in {store.uri()}",
            where="model.name",
            fix="train it first ('ganpipe train' or 'ganpipe run'), or pass --model URI",
        )
    return model


def promote(store: RunStore, model_name: str, version: str, expected: str | None = _ANY) -> bool:
    """Make ``version`` the one production generation uses. Under the model's lock, so two
    runs promoting at once take turns; with ``expected`` (the version a decision was made
    against, None for "no current model yet") nothing is written, and False returned, if
    another run changed ``current`` meanwhile."""
    pointer = layout.model_current(model_name)
    with store.lock(layout.model_current_lock(model_name)):
        if expected is not _ANY:
            now = store.read_text(pointer).strip() if store.exists(pointer) else None
            if now != expected:
                return False
        store.write_text(pointer, version + "\n")
    return True


def generator_meta(model: ModelRef) -> dict:
    """The exported generator's description (``generator.json``: version, styles, dataset)."""
    description = model.files.network("generator", "json")
    if not model.store.exists(description):
        raise StoreError(
            f"no exported generator in {model.uri}",
            where="model",
            fix="train the model first ('ganpipe train'), or point --model at a model version",
        )
    return model.store.read_json(description, dict)
