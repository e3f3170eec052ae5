"""A plugin module loaded by dotted name from ``plugins:``; it counts its own use."""

import torch

from ganpipe import hookimpl

CALLS = {"d": 0, "g": 0}


class ScaledHinge:
    def __init__(self, scale: float = 1.0):
        self.scale = scale

    def d_loss(self, real_logits, fake_logits):
        CALLS["d"] += 1
        return self.scale * (
            torch.relu(1 - real_logits).mean() + torch.relu(1 + fake_logits).mean()
        )

    def g_loss(self, fake_logits, real_logits):
        CALLS["g"] += 1
        return -self.scale * fake_logits.mean()


@hookimpl
def ganpipe_losses():
    return {"scaled_hinge": ScaledHinge}
