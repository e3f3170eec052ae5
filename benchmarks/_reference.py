"""The plain conditional DCGAN a team writes by hand: tensors in memory, two Adam optimisers,
the non-saturating loss, no EMA, no augmentation, no regularisers, on ganpipe's own DCGAN networks:
train_overhead measures what ganpipe's training loop costs over it on the same networks. (The
quality benchmark's reference is written independently of ganpipe: _examples_dcgan.py.)"""

from __future__ import annotations

import time

import torch
from torch.nn import functional as F

from ganpipe.builtin.nets import DCGANDiscriminator, DCGANGenerator


class PlainDCGAN:
    """Trainable in slices (``train(steps, seconds)``), so a benchmark can interleave it with
    ganpipe and give both the same share of a busy machine."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, styles_n: int, seed: int = 0):
        torch.manual_seed(seed)
        self.images, self.labels = images, labels
        self.G = DCGANGenerator(styles_n, images.shape[-1])
        self.D = DCGANDiscriminator(styles_n, images.shape[-1])
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=2e-4, betas=(0.5, 0.99))
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=2e-4, betas=(0.5, 0.99))
        self.steps = 0

    def train(self, steps: int, batch: int, seconds: float | None = None) -> float:
        """Up to ``steps`` more steps or ``seconds``, whichever ends first; returns img/s."""
        G, D, opt_g, opt_d = self.G.train(), self.D, self.opt_g, self.opt_d
        start, done = time.perf_counter(), 0
        while done < steps:
            done += 1
            idx = torch.randint(len(self.images), (batch,))
            real, s = self.images[idx], self.labels[idx]
            fake = G(torch.randn(batch, G.z_dim), s)
            d_loss = F.softplus(-D(real, s)).mean() + F.softplus(D(fake.detach(), s)).mean()
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            g_loss = F.softplus(-D(fake, s)).mean()
            opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            opt_g.step()
            if seconds is not None and time.perf_counter() - start > seconds:
                break
        self.steps += done
        return done * batch / (time.perf_counter() - start)


def plain_loop(images, labels, steps: int, batch: int, styles_n: int, seed: int = 0) -> float:
    """``steps`` steps of a fresh plain DCGAN; its img/s."""
    return PlainDCGAN(images, labels, styles_n, seed).train(steps, batch)
