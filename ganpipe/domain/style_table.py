"""The style table: the styles a dataset version was grouped into, as every layer reads them.

Training conditions on it, generation asks for a style by name or id, the filters and the
evaluation check samples against it, and the retrain gate compares tables by id. The styles stage
(``ganpipe.stages.styles``) writes it; everything else reads it through ``load_styles``, so no
layer below the stages imports the stage (docs/architecture.md, "Layers").
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
import torch

from ganpipe.errors import ConfigError, StoreError
from ganpipe.store import RunStore, layout


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
