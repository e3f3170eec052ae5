"""Built-in quality filters. Thresholds default to values derived from the real data, so that
most real images of a style would pass: a sample is rejected for being unlike the data, not for
missing an arbitrary number."""

from __future__ import annotations

import torch


def _quantile(values: torch.Tensor, q: float) -> float:
    return float(torch.quantile(values.float(), q))


class Realism:
    """The discriminator's realism logit; passes above the ``quantile`` of real images' logits
    (or above an explicit ``threshold``)."""

    higher_is_better = True

    def __init__(self, quantile: float = 0.02, threshold: float | None = None):
        self.quantile = float(quantile)
        self.threshold = None if threshold is None else float(threshold)
        if not 0 <= self.quantile < 1:
            raise ValueError("realism quantile must be in [0, 1)")

    def score(self, context):
        if context.discriminator is None:
            raise ValueError("the realism filter needs the model's discriminator")
        fake = context.discriminator_scores(context.images, context.styles)
        real = context.discriminator_scores(context.real_images, context.real_styles)
        threshold = self.threshold if self.threshold is not None else _quantile(real, self.quantile)
        return fake.numpy(), (fake >= threshold).numpy()


class StyleMatch:
    """Style-encoder distance to the requested style's centroid, divided by the distance within
    which ``quantile`` of that style's real images lie: <= ``margin`` passes."""

    higher_is_better = False

    def __init__(self, quantile: float = 0.95, margin: float = 1.0):
        self.quantile, self.margin = float(quantile), float(margin)
        if not 0 < self.quantile <= 1 or self.margin <= 0:
            raise ValueError("style_match needs 0 < quantile <= 1 and margin > 0")

    def score(self, context):
        fake_dist = context.centroid_distance(context.fake_embeddings(), context.styles)
        real_dist = context.centroid_distance(context.real_embeddings(), context.real_styles)
        limits = torch.ones(context.num_styles)
        for s in range(context.num_styles):
            mine = real_dist[context.real_styles == s]
            limits[s] = _quantile(mine, self.quantile) if len(mine) else float(real_dist.max())
        ratio = fake_dist / limits[context.styles].clamp_min(1e-8)
        return ratio.numpy(), (ratio <= self.margin).numpy().astype(bool)


FILTERS = {"realism": Realism, "style_match": StyleMatch}
