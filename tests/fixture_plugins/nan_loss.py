import torch

from ganpipe import hookimpl


class NanAfter:
    """A loss that turns NaN after ``after`` discriminator updates."""

    def __init__(self, after: int = 5):
        self.after, self.calls = after, 0

    def d_loss(self, real_logits, fake_logits):
        self.calls += 1
        value = torch.relu(1 - real_logits).mean() + torch.relu(1 + fake_logits).mean()
        return value * float("nan") if self.calls > self.after else value

    def g_loss(self, fake_logits, real_logits):
        return -fake_logits.mean()


@hookimpl
def ganpipe_losses():
    return {"nan_after": NanAfter}
