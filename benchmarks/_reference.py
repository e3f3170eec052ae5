"""The plain conditional DCGAN a team writes by hand: tensors in memory, two Adam optimisers,
the non-saturating loss, no EMA, no augmentation, no regularisers. Benchmarks compare ganpipe
against it on speed (train_overhead) and on quality per minute (quality_per_minute)."""

from __future__ import annotations

import time

import torch
from torch.nn import functional as F

from ganpipe.builtin.nets import DCGANDiscriminator, DCGANGenerator


def plain_loop(
    images: torch.Tensor,
    labels: torch.Tensor,
    steps: int,
    batch: int,
    styles_n: int,
    seconds: float | None = None,
    seed: int = 0,
):
    """Train for ``steps`` or ``seconds``, whichever ends first; returns (G, img/s, steps)."""
    torch.manual_seed(seed)
    G, D = (
        DCGANGenerator(styles_n, images.shape[-1]),
        DCGANDiscriminator(styles_n, images.shape[-1]),
    )
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.99))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.99))
    start = time.perf_counter()
    done = 0
    while done < steps:
        done += 1
        idx = torch.randint(len(images), (batch,))
        real, s = images[idx], labels[idx]
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
    return G.eval(), done * batch / (time.perf_counter() - start), done
