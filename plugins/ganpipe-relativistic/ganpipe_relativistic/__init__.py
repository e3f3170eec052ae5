"""A ganpipe plugin that adds the relativistic average loss (Jolicoeur-Martineau, 2018).

Written only against ganpipe's public plugin API: one ``ganpipe_losses`` hook implementation.
Select it with ``train.loss: relativistic`` once this package is installed. The module itself
imports nothing heavy: every ganpipe command loads installed plugins, so torch is imported only
when the loss is used (keeping ``ganpipe ingest`` and ``ganpipe --help`` fast).
"""

from __future__ import annotations

from ganpipe import hookimpl


class RelativisticAverage:
    """D judges whether real data is more realistic than the average fake (and vice versa);
    G gets gradients from real data too, which steadies early training."""

    def __init__(self, label_smoothing: float = 0.0):
        if not 0.0 <= label_smoothing < 0.5:
            raise ValueError("label_smoothing must be in [0, 0.5)")
        self.smooth = label_smoothing

    def _pair(self, a, b):
        from torch.nn import functional as F

        # softplus(-x) is -log(sigmoid(x)); smoothing moves the target from 1 towards 0.5.
        x = a - b.mean()
        return (1 - self.smooth) * F.softplus(-x).mean() + self.smooth * F.softplus(x).mean()

    def d_loss(self, real_logits, fake_logits):
        return self._pair(real_logits, fake_logits) + self._pair(-fake_logits, -real_logits)

    def g_loss(self, fake_logits, real_logits):
        return self._pair(fake_logits, real_logits) + self._pair(-real_logits, -fake_logits)


@hookimpl
def ganpipe_losses():
    return {"relativistic": RelativisticAverage}
