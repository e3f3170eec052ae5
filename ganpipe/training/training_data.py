"""The data a run trains on: the dataset version, its style table and each image's style.

Its own module because both ``setup`` (which loads it) and ``trainer`` (which draws batches from
it) need it, and ``setup`` builds the trainer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ganpipe.config import Config
from ganpipe.data.dataset import Dataset, TrainingImages, load_dataset
from ganpipe.domain.style_table import StyleTable, load_styles
from ganpipe.hashing import stable_hash
from ganpipe.store import RunStore


@dataclass
class TrainingData:
    """The dataset version a run trains on, with its style table and each image's style."""

    dataset: Dataset
    table: StyleTable
    assignments: pd.DataFrame  # image id -> style name
    styles_hash: str  # of the style table, part of the model version

    def images(self, t) -> TrainingImages:
        """The training split as batches, each image with its style's index."""
        manifest = self.dataset.manifest
        train_manifest = manifest[manifest["split"] == "train"]
        if len(train_manifest) == 0:  # a tiny dataset may have every image in val
            train_manifest = manifest
        style_of = dict(zip(self.assignments["id"], self.assignments["style"]))
        names = self.table.names
        style_indices = np.array([names.index(style_of[i]) for i in train_manifest["id"]])
        return TrainingImages(self.dataset, train_manifest, style_indices, t.data_memory_mb,
                              t.batch_size, t.seed)  # fmt: skip


def load_training_data(config: Config, store: RunStore) -> TrainingData:
    dataset = load_dataset(store, config.dataset.name)
    table, assignments = load_styles(store, dataset.fingerprint, config.style.encoder)
    return TrainingData(dataset, table, assignments, stable_hash(table.to_json()))
