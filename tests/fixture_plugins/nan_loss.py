import torch

from ganpipe import hookimpl


class NanAfter:
    """A loss that turns NaN after ``after`` discriminator updates, for ``burst`` updates (or for
    good when ``burst`` is null)."""

    def __init__(self, after: int = 5, burst: int | None = None):
        self.after, self.burst, self.calls = after, burst, 0

    def d_loss(self, real_logits, fake_logits):
        self.calls += 1
        value = torch.relu(1 - real_logits).mean() + torch.relu(1 + fake_logits).mean()
        bad = self.calls > self.after and (
            self.burst is None or self.calls <= self.after + self.burst
        )
        return value * float("nan") if bad else value

    def g_loss(self, fake_logits, real_logits):
        return -fake_logits.mean()


@hookimpl
def ganpipe_losses():
    return {"nan_after": NanAfter}
