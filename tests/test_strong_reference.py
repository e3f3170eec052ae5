"""The benchmark's strong reference (benchmarks/_strong_reference.py): shapes, determinism,
exact resumption from a snapshot, and DiffAugment's geometry on hand-made images."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from _strong_reference import StrongReference, rand_cutout, rand_translation  # noqa: E402

SMALL = {"batch": 8, "ch": 8}  # the recipe at toy width: these tests check mechanics only


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny convolutions on two threads of a busy machine spend their time waiting on each
    other (30x slower here); one thread keeps this file to seconds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _ref(images, labels, seed: int = 0) -> StrongReference:
    ref = StrongReference(images, labels, num_styles=2, seed=seed, **SMALL)
    ref.bn_batches, ref.bn_batch_size = 2, 32  # EMA statistics from 64 latents: enough here
    return ref


def _data(size: int = 32, n: int = 24, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, size, size, generator=gen) * 2 - 1
    labels = torch.arange(n) % 2
    return images, labels


def _latents(m: int = 6):
    gen = torch.Generator().manual_seed(123)
    return torch.randn(m, StrongReference.z_dim, generator=gen), torch.arange(m) % 2


@pytest.mark.parametrize("size", [32, 64])
def test_sample_shape_and_range(size):
    images, labels = _data(size)
    ref = _ref(images, labels)
    ref.train_steps(1)
    z, s = _latents()
    out = ref.sample(z, s)
    assert out.shape == (6, 3, size, size)
    assert out.min() >= -1 and out.max() <= 1
    assert ref.steps == 1 and ref.z_dim == 128


def test_same_seed_same_samples():
    images, labels = _data()
    a = _ref(images, labels, 3)
    b = _ref(images, labels, 3)
    a.train_steps(3)
    b.train_steps(3)
    z, s = _latents()
    assert torch.equal(a.sample(z, s), b.sample(z, s))
    c = _ref(images, labels, 4)
    c.train_steps(3)
    assert not torch.equal(a.sample(z, s), c.sample(z, s))


def test_snapshot_resumes_exactly():
    images, labels = _data()
    a = _ref(images, labels, 1)
    a.train_steps(2)
    snap = a.snapshot()
    z, s = _latents()
    at_two = a.sample(z, s)  # sampling must not disturb training either
    a.train_steps(2)
    b = _ref(images, labels, 9)
    b.load_snapshot(snap)
    assert b.steps == 2
    assert torch.equal(b.sample(z, s), at_two)
    b.train_steps(2)
    assert b.steps == 4
    assert torch.equal(a.sample(z, s), b.sample(z, s))
    # the snapshot is a copy: training on did not change it, so it loads again to step 2
    c = _ref(images, labels, 1)
    c.load_snapshot(snap)
    assert torch.equal(c.sample(z, s), at_two)


def test_translation_moves_a_pixel_or_drops_it():
    x = torch.zeros(64, 3, 32, 32)
    x[:, :, 30, 2] = 1.0  # near a corner, so some draws push it out of the image
    out, shifts = rand_translation(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    assert shifts.abs().max() <= 4 and shifts.abs().max() == 4  # 1/8 of 32 px, all reached
    dropped = 0
    for img, (dy, dx) in zip(out, shifts.tolist()):
        y, xx = 30 + dy, 2 + dx
        if 0 <= y < 32 and 0 <= xx < 32:
            expected = torch.zeros(3, 32, 32)
            expected[:, y, xx] = 1.0
            assert torch.equal(img, expected)
        else:
            assert img.abs().sum() == 0
            dropped += 1
    assert 0 < dropped < 64


def test_cutout_zeroes_a_square():
    x = torch.ones(64, 3, 32, 32)
    out, corners = rand_cutout(x, torch.Generator().manual_seed(0))
    whole = 0
    for img, (top, left) in zip(out, corners.tolist()):
        expected = torch.ones(3, 32, 32)
        expected[:, max(top, 0) : max(top + 16, 0), max(left, 0) : max(left + 16, 0)] = 0
        assert torch.equal(img, expected)
        assert 0 < (img[0] == 0).sum() <= 16 * 16
        whole += int((img[0] == 0).sum() == 16 * 16)
    assert whole > 0  # most squares lie wholly inside the image
