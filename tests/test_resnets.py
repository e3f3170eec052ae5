"""The SNGAN/BigGAN-style networks (ganpipe/builtin/resnets.py): generator ``resnet`` and
discriminator ``sngan``. Shapes, conditioning, gradients, the parts of the recipe that can be
checked by hand, and one tiny run through the trainer, export and generation."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import parametrize

from ganpipe.builtin.resnets import DownBlock, ResNetGenerator, SNGANDiscriminator, UpBlock
from ganpipe.contracts import (
    ConditionalGenerator,
    FeatureDiscriminator,
    MappedGenerator,
    supports,
)

SMALL = {"channels": 8, "max_channels": 32}  # quick on CPU


def pair(size: int, g_options: dict | None = None, d_options: dict | None = None):
    torch.manual_seed(0)
    G = ResNetGenerator(3, size, **{**SMALL, **(g_options or {})})
    D = SNGANDiscriminator(3, size, **{**SMALL, **(d_options or {})})
    return G, D


@pytest.mark.parametrize("size", [32, 64])
def test_shapes_range_and_feature_maps(size):
    G, D = pair(size)
    z, style = torch.randn(5, G.z_dim), torch.arange(5) % 3
    images = G(z, style)
    assert images.shape == (5, 3, size, size)
    assert images.abs().max() <= 1.0  # tanh
    assert D(images, style).shape == (5,)
    maps = D.feature_maps(images)
    assert [m.shape[-1] for m in maps] == [size // 2**i for i in range(1, len(maps) + 1)]
    assert maps[-1].shape[-1] == 8  # SNGAN's layout: halvings to 8x8, two blocks there
    # a projection compares one image at a time: each image's maps are its own (in eval
    # mode: in training, every forward takes a power-iteration step of the spectral norm)
    D.eval()
    maps, alone = D.feature_maps(images), D.feature_maps(images[2:3])
    assert all(torch.allclose(a[0], m[2], atol=1e-5) for a, m in zip(alone, maps))
    assert supports(G, ConditionalGenerator) and not supports(G, MappedGenerator)
    assert supports(D, FeatureDiscriminator)


def test_styles_and_the_style_embedding_change_the_output():
    G, D = pair(32, {"style_embedding_dim": 5})
    G.eval()
    z = torch.randn(1, G.z_dim).repeat(3, 1)
    with torch.no_grad():
        images = G(z, torch.arange(3))
        assert torch.cdist(images.flatten(1), images.flatten(1)).triu(1)[0, 1:].min() > 0.1
        # a one-hot row of weights is exactly that style; forward is render(condition)
        onehot = F.one_hot(torch.arange(3), 3).float()
        assert torch.allclose(G.render(z, G.condition(onehot)), images, atol=1e-6)
        steered = G(z, torch.arange(3), torch.randn(3, 5))
        assert (steered - images).abs().max() > 1e-3
        x = torch.rand(1, 3, 32, 32).repeat(3, 1, 1, 1) * 2 - 1
        logits = D.eval()(x, torch.arange(3))
        assert (logits[1:] - logits[0]).abs().min() > 1e-4  # the projection term


@pytest.mark.parametrize("d_options", [{}, {"minibatch": "style", "pack": 2}])
def test_every_parameter_receives_a_gradient(d_options):
    G, D = pair(32, {"style_embedding_dim": 5}, d_options)
    style = torch.arange(6) % 3
    fakes = G(torch.randn(6, G.z_dim), style, torch.randn(6, 5))
    (D(fakes, style).mean() + fakes.pow(2).mean()).backward()
    for net in (G, D):
        silent = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.any()]
        assert silent == [], type(net).__name__


def test_up_block_shortcut_is_the_doubled_1x1_convolution():
    """With the residual path's last convolution zeroed, an up-block is its shortcut alone:
    a 1x1 convolution of the input, doubled by nearest neighbour."""
    torch.manual_seed(0)
    block = UpBlock(6, 4, cond_dim=5)
    nn.init.zeros_(block.conv2.weight)
    nn.init.zeros_(block.conv2.bias)
    x, cond = torch.randn(2, 6, 4, 4), torch.randn(2, 5)
    expected = block.shortcut(F.interpolate(x, scale_factor=2, mode="nearest"))
    assert torch.allclose(block(x, cond), expected, atol=1e-6)
    # nearest doubling then a 3x3 convolution on the main path, as SNGAN's generator does
    assert isinstance(block.conv1[0], nn.Upsample) and block.conv1[1].kernel_size == (3, 3)
    transposed = UpBlock(6, 4, cond_dim=5, upsample="transpose")
    assert isinstance(transposed.conv1, nn.ConvTranspose2d)
    with pytest.raises(ValueError, match="transpose, nearest"):
        ResNetGenerator(3, 32, upsample="bilinear")


def test_down_block_shortcuts_and_the_optimized_first_block():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 8, 8)
    down, first, same = DownBlock(4, 6), DownBlock(4, 6, first=True), DownBlock(4, 4, False)
    for block in (down, first, same):
        nn.init.zeros_(block.conv2.weight)
        nn.init.zeros_(block.conv2.bias)
    # residual path zeroed: 1x1 convolution then pooling (pooling first on the first block)
    assert torch.allclose(down(x), F.avg_pool2d(down.shortcut(x), 2), atol=1e-6)
    assert torch.allclose(first(x), first.shortcut(F.avg_pool2d(x, 2)), atol=1e-6)
    assert same.shortcut is None and torch.equal(same(x), x)  # identity shortcut
    # shortcut zeroed: the first block sees the raw pixels (no ReLU before its first
    # convolution), so negative pixels matter; any later block clips them to zero first
    negative, zeros = -torch.rand(1, 4, 8, 8), torch.zeros(1, 4, 8, 8)
    for block in (DownBlock(4, 6, first=True), DownBlock(4, 6)):
        nn.init.zeros_(block.shortcut.weight)
        nn.init.zeros_(block.shortcut.bias)
        with torch.no_grad():
            differ = not torch.allclose(block(negative), block(zeros))
        assert differ == block.first


def test_logit_is_a_linear_score_plus_the_projection_of_sum_pooled_relu_features():
    _, D = pair(32, d_options={"spectral_norm": False})
    D.eval()
    x, style = torch.rand(4, 3, 32, 32) * 2 - 1, torch.tensor([0, 1, 2, 1])
    h = x
    for block in D.blocks:
        h = block(h)
    h = F.relu(D.tail[1](D.tail[0](h))).sum(dim=(2, 3))
    expected = D.linear(h)[:, 0] + (D.embed(style) * h).sum(dim=1)
    with torch.no_grad():
        assert torch.allclose(D(x, style), expected, atol=1e-5)
    assert not any(isinstance(m, nn.LeakyReLU) for m in D.modules())


def test_spectral_norm_on_every_layer_by_default_and_the_spread_channel_optional():
    _, D = pair(16)
    layers = [m for m in D.modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding))]
    assert layers and all(parametrize.is_parametrized(m, "weight") for m in layers)
    x, style = torch.rand(2, 3, 16, 16) * 2 - 1, torch.arange(2)
    for _ in range(12):  # one power-iteration step per training forward
        D(x, style)
    for m in layers:
        sigma = torch.linalg.matrix_norm(m.weight.detach().flatten(1), ord=2)
        assert float(sigma) == pytest.approx(1.0, abs=0.05)
    off = SNGANDiscriminator(3, 16, spectral_norm=False, **SMALL)
    assert not any(parametrize.is_parametrized(m) for m in off.modules())
    spread = SNGANDiscriminator(3, 16, minibatch="style", **SMALL)
    assert spread.tail[0].conv1.in_channels == D.tail[0].conv1.in_channels + 1
    # constant width (SNGAN's 32 px layout): the 8x8 blocks' shortcuts are the identity,
    # unless the spread channel widens the input
    constant = {"channels": 8, "max_channels": 8}
    assert [b.shortcut for b in SNGANDiscriminator(3, 32, **constant).tail] == [None, None]
    widened = SNGANDiscriminator(3, 32, minibatch="batch", **constant).tail
    assert widened[0].shortcut is not None and widened[1].shortcut is None
    with pytest.raises(ValueError, match="style, batch, off"):
        SNGANDiscriminator(3, 16, minibatch="sometimes")


def test_exported_weights_load_back_as_the_same_networks(tmp_path):
    from ganpipe.config import load_config
    from ganpipe.registry import load_registry
    from ganpipe.store import RunStore
    from ganpipe.store.checkpoints import export_network, load_network

    G, D = pair(16)
    G(torch.randn(16, G.z_dim), torch.arange(16) % 3)  # batch-norm statistics of its own
    G.eval()
    store, registry = RunStore(str(tmp_path)), load_registry(load_config(None, []))
    z, style = torch.randn(4, G.z_dim), torch.arange(4) % 3
    for kind, name, net in (("generator", "resnet", G), ("discriminator", "sngan", D.eval())):
        options = {"num_styles": 3, "image_size": 16, **SMALL}
        export_network(store, kind, kind, name, options, net, {"version": "v"})
        loaded, _ = load_network(store, kind, kind, registry)
        args = (z, style) if kind == "generator" else (G(z, style).detach(), style)
        with torch.no_grad():
            assert torch.equal(loaded.eval()(*args), net(*args))


def test_resnet_and_sngan_train_export_and_generate(tmp_path):
    from ganpipe.config import load_config
    from ganpipe.domain.model_pointers import ModelRef, promote
    from ganpipe.export import export_model
    from ganpipe.registry import load_registry
    from ganpipe.stages.generate import generate
    from ganpipe.stages.train import train
    from ganpipe.store import RunStore, layout
    from tests.conftest import prepare_tiny_store, tiny_overrides

    root = prepare_tiny_store(tmp_path / "store")
    cfg = load_config(None, tiny_overrides(root, **{
        "train.steps": 3, "train.batch_size": 12, "train.checkpoint_every": 3,
        "model.generator": "resnet", "model.discriminator": "sngan",
        "model.generator_options": "{channels: 8, max_channels: 32}",
        "model.discriminator_options": "{channels: 8, max_channels: 32, minibatch: style}",
    }))  # fmt: skip
    store = RunStore.from_config(cfg)
    result = train(cfg, store)
    promote(store, result.model, result.version)
    ref = ModelRef(store, layout.model_dir(result.model, result.version))
    exported = export_model(ref, load_registry(cfg), "onnx", "uint8", RunStore(str(tmp_path / "x")))
    assert os.path.getsize(tmp_path / "x" / "generator.onnx") > 0
    assert exported.verified["identical_pixels"] >= 0.999
    batch = generate(load_config(None, tiny_overrides(root, **{"generate.per_style": 2})), store)
    manifest = store.read_parquet(f"{layout.batch_dir(batch.batch_id)}/manifest.parquet")
    assert len(manifest) == 2 * 6
    first = store.read_bytes(f"{layout.batch_dir(batch.batch_id)}/{manifest['path'][0]}")
    assert np.asarray(Image.open(io.BytesIO(first))).shape == (16, 16, 3)
