"""What a component is handed at run time: the quality filters' ``FilterContext``, the
``TrainingContext`` a regulariser's ``bind`` receives, and the ``TrainState`` event hooks see.

The stages build them (``ganpipe.stages.filter``, ``ganpipe.training``); they are defined here,
beside the contracts that name them, so that a plugin, the hook specifications and the contracts
import no stage (docs/architecture.md, "Layers").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import torch

from ganpipe.data.dataset import to_tensor

if TYPE_CHECKING:
    import pandas as pd

    from ganpipe.config import Config
    from ganpipe.data.dataset import Dataset
    from ganpipe.domain.style_table import StyleTable

REAL_PER_STYLE = 256  # real images per style sampled for score distributions


@dataclass
class FilterContext:
    """What a quality filter sees. Embeddings and discriminator scores are computed once and
    shared by every filter that asks."""

    images: torch.Tensor  # candidates (N, 3, H, W) in [-1, 1]
    styles: torch.Tensor  # requested style index per candidate (N,)
    real_images: torch.Tensor  # a sample of the dataset's images, train and val (M, 3, H, W)
    real_styles: torch.Tensor  # their style index (M,)
    table: StyleTable
    encoder: torch.nn.Module
    discriminator: torch.nn.Module | None
    dataset: Dataset | None = None  # the training data, for anything else a filter needs
    row_styles: pd.Series | None = None  # style name of each row of ``dataset.manifest``

    @property
    def num_styles(self) -> int:
        return len(self.table.names)

    def held_out_images(self) -> torch.Tensor:
        """Real images training never saw: the dataset's ``val`` split, at most
        ``REAL_PER_STYLE`` per style (seeded), loaded on first use. The reference for anything
        scored by the model itself (``real_images`` mixes in the discriminator's own training
        images, which it scores higher than any new picture). Empty without a dataset."""
        return self._held_out[0]

    @property
    def held_out_styles(self) -> torch.Tensor:
        """The style index of each of ``held_out_images()``."""
        return self._held_out[1]

    @cached_property
    def _held_out(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.dataset is None or self.row_styles is None:
            return self.images[:0], torch.zeros(0, dtype=torch.long)
        manifest = self.dataset.manifest
        return real_sample(self.dataset, self.row_styles, self.table,
                            manifest[manifest["split"] == "val"])  # fmt: skip

    def fake_embeddings(self) -> torch.Tensor:
        return self._fake_embeddings

    def real_embeddings(self) -> torch.Tensor:
        return self._real_embeddings

    @cached_property
    def _fake_embeddings(self) -> torch.Tensor:
        return _embed_tensor(self.encoder, self.images)

    @cached_property
    def _real_embeddings(self) -> torch.Tensor:
        return _embed_tensor(self.encoder, self.real_images)

    def centroid_distance(self, embeddings: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
        return (embeddings - self.table.centroids[styles]).norm(dim=1)

    @torch.inference_mode()
    def discriminator_scores(self, images: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
        out = [
            self.discriminator(images[i : i + 256], styles[i : i + 256])
            for i in range(0, len(images), 256)
        ]
        return torch.cat(out).float() if out else torch.zeros(0)


def real_sample(dataset: Dataset, row_styles: pd.Series, table: StyleTable,
                 rows: pd.DataFrame) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Pixels and style indices of at most ``REAL_PER_STYLE`` of ``rows`` per style (seeded): a
    sample estimates a score distribution as well as every image would, at a bounded cost."""
    picked = dataset.sample(REAL_PER_STYLE, row_styles.loc[rows.index], seed=0, rows=rows)
    styles = [table.names.index(s) for s in row_styles.loc[picked.index]]
    return to_tensor(dataset.load_pixels(picked)), torch.tensor(styles, dtype=torch.long)


@torch.inference_mode()
def _embed_tensor(encoder, images: torch.Tensor) -> torch.Tensor:
    return torch.cat([encoder(images[i : i + 256]) for i in range(0, len(images), 256)]).float()


@dataclass
class TrainingContext:
    """What ``bind(context)`` gives a regulariser that needs the run's styles."""

    style_encoder: torch.nn.Module
    centroids: torch.Tensor
    style_names: list[str]


@dataclass
class TrainState:
    """What event hooks see; plugins may read it, not replace its members."""

    step: int
    generator: torch.nn.Module
    discriminator: torch.nn.Module
    ema: torch.nn.Module
    config: Config
    # the run's augmentations and regularisers by "kind:name" (e.g. "augmentation:ada")
    components: dict[str, object] = field(default_factory=dict)
