"""The quality benchmark's reference: a conditional DCGAN as the pytorch/examples DCGAN builds
it, written here independently of ganpipe's networks so that ganpipe is not judged against
itself.

pytorch/examples ``dcgan/main.py``: ngf = ndf = 64, transposed convolutions with batch norm and
ReLU in G (tanh out), strided convolutions with batch norm and LeakyReLU(0.2) in D, weights
drawn from N(0, 0.02), BCE loss, Adam(lr 2e-4, betas (0.5, 0.999)), no EMA, no augmentation,
no regularisers. The style is a one-hot vector concatenated to G's latent and, as constant
planes, to D's input: the common way a team makes that script conditional.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def _init(m: nn.Module) -> None:
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def _levels(image_size: int) -> int:
    """Doublings from 4x4 to the image size (3 for 32 px, 4 for 64 px as in the example)."""
    return image_size.bit_length() - 3


class ExamplesGenerator(nn.Module):
    def __init__(self, num_styles: int, image_size: int, nz: int = 100, ngf: int = 64):
        super().__init__()
        self.z_dim, self.num_styles = nz, num_styles
        n = _levels(image_size)
        width = ngf * 2 ** (n - 1)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(nz + num_styles, width, 4, 1, 0, bias=False),
            nn.BatchNorm2d(width), nn.ReLU(True),
        ]  # fmt: skip
        for _ in range(n - 1):
            layers += [nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=False),
                       nn.BatchNorm2d(width // 2), nn.ReLU(True)]  # fmt: skip
            width //= 2
        layers += [nn.ConvTranspose2d(width, 3, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)
        self.apply(_init)

    def forward(self, z: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        onehot = F.one_hot(style, self.num_styles).to(z.dtype)
        return self.main(torch.cat([z, onehot], 1)[:, :, None, None])


class ExamplesDiscriminator(nn.Module):
    def __init__(self, num_styles: int, image_size: int, ndf: int = 64):
        super().__init__()
        self.num_styles = num_styles
        n = _levels(image_size)
        layers: list[nn.Module] = [
            nn.Conv2d(3 + num_styles, ndf, 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, True),
        ]
        width = ndf
        for _ in range(n - 1):
            layers += [nn.Conv2d(width, width * 2, 4, 2, 1, bias=False),
                       nn.BatchNorm2d(width * 2), nn.LeakyReLU(0.2, True)]  # fmt: skip
            width *= 2
        layers += [nn.Conv2d(width, 1, 4, 1, 0, bias=False)]
        self.main = nn.Sequential(*layers)
        self.apply(_init)

    def forward(self, images: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        planes = F.one_hot(style, self.num_styles).to(images.dtype)[:, :, None, None]
        planes = planes.expand(-1, -1, *images.shape[2:])
        return self.main(torch.cat([images, planes], 1)).flatten()


class ExamplesDCGAN:
    """Trained a step at a time (``step``, ``train_steps``), so the benchmark gives it a budget
    in steps like every other recipe."""

    def __init__(self, images, labels, num_styles: int, batch: int = 64, seed: int = 0):
        torch.manual_seed(seed)
        self.images, self.labels, self.batch = images, labels, batch
        size = images.shape[-1]
        self.G = ExamplesGenerator(num_styles, size)
        self.D = ExamplesDiscriminator(num_styles, size)
        self.z_dim = self.G.z_dim
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.gen = torch.Generator().manual_seed(seed)
        self.steps = 0

    def step(self) -> None:
        G, D = self.G.train(), self.D.train()
        idx = torch.randint(len(self.images), (self.batch,), generator=self.gen)
        real, s = self.images[idx], self.labels[idx]
        fake = G(torch.randn(self.batch, G.z_dim, generator=self.gen), s)
        ones, zeros = torch.ones(self.batch), torch.zeros(self.batch)
        d_loss = F.binary_cross_entropy_with_logits(D(real, s), ones) + \
            F.binary_cross_entropy_with_logits(D(fake.detach(), s), zeros)  # fmt: skip
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()
        g_loss = F.binary_cross_entropy_with_logits(D(fake, s), ones)
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt_g.step()
        self.steps += 1

    def train_steps(self, n: int) -> None:
        for _ in range(n):
            self.step()

    @torch.inference_mode()
    def sample(self, z: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """Rendered as the example renders its samples: batch norm on batch statistics."""
        self.G.train()
        return torch.cat([self.G(z[i : i + 256], style[i : i + 256])
                          for i in range(0, len(z), 256)])  # fmt: skip
