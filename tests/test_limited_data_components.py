"""The limited-data training components: adaptive augmentation (ADA), LeCam regularisation and
spectral normalisation, each on hand-computed cases, and a resume with all of them on."""

import shutil

import pytest
import torch
from safetensors.torch import load as load_safetensors

from ganpipe.builtin.ada import AdaptiveAugment
from ganpipe.builtin.nets import DCGANDiscriminator
from ganpipe.builtin.regularizers import LeCam
from ganpipe.builtin.stylenets import ResidualDiscriminator
from ganpipe.config import load_config
from ganpipe.contracts import Adaptive, LogitPenalty, ReportsMetrics, Stateful, supports
from ganpipe.registry import load_registry
from ganpipe.store import RunStore
from ganpipe.store.checkpoints import export_network, load_network, newest_valid_checkpoint
from ganpipe.training.train import train
from tests.conftest import prepare_tiny_store, tiny_overrides


def test_ada_raises_p_while_the_discriminator_is_sure_of_the_reals_and_lowers_it_after():
    ada = AdaptiveAugment(target=0.6, speed=1000, interval=4)
    sure = torch.full((50,), 3.0)  # sign +1 on every real: r = 1 > target, D overfits
    for _ in range(3):
        ada.observe(sure)
    assert ada.p == 0.0  # adjusted only every `interval` observations
    ada.observe(sure)
    assert ada.p == pytest.approx(4 * 50 / 1000) and ada.last_r == 1.0
    for _ in range(8):
        ada.observe(sure)
    assert ada.p == pytest.approx(12 * 50 / 1000)
    unsure = torch.tensor([1.0, -1.0] * 25)  # r = 0 < target: D is not overfitting
    for _ in range(4):
        ada.observe(unsure)
    assert ada.p == pytest.approx(8 * 50 / 1000) and ada.last_r == 0.0
    for _ in range(40):
        ada.observe(unsure)
    assert ada.p == 0.0  # never below 0
    capped = AdaptiveAugment(speed=10, interval=1, max_p=0.5)
    capped.observe(sure)
    assert capped.p == 0.5  # never above max_p


def test_ada_state_round_trips_so_a_resumed_controller_continues_exactly():
    a = AdaptiveAugment(speed=1000, interval=4)
    for logits in (torch.ones(8), torch.tensor([1.0] * 6 + [-1.0] * 2), torch.ones(8)):
        a.observe(logits)
    b = AdaptiveAugment(speed=1000, interval=4)
    b.load_state_dict(a.state_dict())
    for ada in (a, b):
        ada.observe(torch.ones(8))
    assert a.p == b.p > 0 and a.state_dict() == b.state_dict()


def test_ada_augments_only_at_p_above_zero_keeps_shapes_and_is_seeded():
    images = torch.rand(16, 3, 16, 16) * 2 - 1
    ada = AdaptiveAugment()
    assert torch.equal(ada(images, torch.Generator().manual_seed(0)), images)  # p = 0
    ada.p = 1.0
    out = ada(images, torch.Generator().manual_seed(0))
    again = ada(images, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and torch.equal(out, again)
    assert (out - images).abs().flatten(1).amax(1).min() > 0  # every image changed
    x = images.clone().requires_grad_(True)
    ada(x, torch.Generator().manual_seed(1)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # differentiable, as D's input must be
    assert supports(ada, Adaptive) and supports(ada, Stateful) and supports(ada, ReportsMetrics)


def test_lecam_penalises_distance_to_the_other_sides_moving_averages():
    lecam = LeCam(weight=0.5, decay=0.9)
    real, fake = torch.tensor([1.0, 3.0]), torch.tensor([-2.0, 0.0])
    # First step: the anchors start at this step's means (real 2, fake -1).
    first = lecam.d_logit_penalty(real, fake, step=1)
    expected = 0.5 * (((1 + 1) ** 2 + (3 + 1) ** 2) / 2 + ((-2 - 2) ** 2 + (0 - 2) ** 2) / 2)
    assert float(first) == pytest.approx(expected)
    assert (lecam.anchor_real, lecam.anchor_fake) == pytest.approx((2.0, -1.0))
    # Second step: penalised against the anchors as they were, then they move 10% of the way.
    real2, fake2 = torch.tensor([4.0, 4.0]), torch.tensor([-3.0, -3.0])
    second = lecam.d_logit_penalty(real2, fake2, step=2)
    assert float(second) == pytest.approx(0.5 * ((4 + 1) ** 2 + (-3 - 2) ** 2))
    assert lecam.anchor_real == pytest.approx(0.9 * 2 + 0.1 * 4)
    assert lecam.anchor_fake == pytest.approx(0.9 * -1 + 0.1 * -3)
    # The gradient pushes real logits down towards the fake anchor and fakes up.
    r, f = torch.tensor([4.0], requires_grad=True), torch.tensor([-3.0], requires_grad=True)
    lecam.d_logit_penalty(r, f, step=3).backward()
    assert r.grad.item() > 0 and f.grad.item() < 0
    copy = LeCam(weight=0.5, decay=0.9)
    copy.load_state_dict(lecam.state_dict())
    assert copy.state_dict() == lecam.state_dict()
    assert supports(lecam, LogitPenalty) and supports(lecam, Stateful)


@pytest.mark.parametrize("network", [DCGANDiscriminator, ResidualDiscriminator])
def test_spectral_norm_bounds_the_layers_and_exported_weights_load_back(tmp_path, network):
    torch.manual_seed(0)
    D = network(num_styles=3, image_size=16, spectral_norm=True)
    images, style = torch.rand(8, 3, 16, 16) * 2 - 1, torch.arange(8) % 3
    for _ in range(30):  # power iteration runs once per training forward
        D(images, style)
    sigma = float(torch.linalg.matrix_norm(D.linear.weight.detach(), ord=2))
    assert sigma == pytest.approx(1.0, abs=0.05)
    assert not hasattr(network(num_styles=3, image_size=16), "parametrizations")  # off by default
    store = RunStore(str(tmp_path / "store"))
    name = "dcgan" if network is DCGANDiscriminator else "resnet"
    options = {"num_styles": 3, "image_size": 16, "spectral_norm": True}
    export_network(store, "m", "discriminator", name, options, D.eval(), {"version": "v"})
    loaded, _ = load_network(store, "m", "discriminator", load_registry(load_config(None, [])))
    with torch.no_grad():
        assert torch.equal(loaded.eval()(images, style), D(images, style))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return prepare_tiny_store(tmp_path_factory.mktemp("limited") / "store")


def test_resume_is_bit_identical_with_ada_lecam_spectral_norm_and_hinge_on(prepared):
    extra = [
        "train.steps=8",
        "train.checkpoint_every=4",
        "train.log_every=2",
        "train.loss=hinge",
        "model.discriminator=resnet",
        "model.discriminator_options={spectral_norm: true}",
        "train.augmentations={ada: {speed: 200, interval: 1}}",
        "train.regularizers={lecam: {weight: 0.3}, r1: {gamma: 1, interval: 4}}",
    ]
    straight = prepared.parent / "straight"
    shutil.copytree(prepared, straight)
    cfg_a = load_config(None, tiny_overrides(straight) + extra)
    store_a = RunStore.from_config(cfg_a)
    a = train(cfg_a, store_a)
    halfway = [e if e != "train.steps=8" else "train.steps=4" for e in extra]
    cfg_b = load_config(None, tiny_overrides(prepared) + halfway)
    store_b = RunStore.from_config(cfg_b)
    train(cfg_b, store_b)
    b = train(load_config(None, tiny_overrides(prepared) + extra), store_b)
    assert b.version == a.version and b.steps_done == 8
    folder = f"models/demo/{a.version}"
    _, state = newest_valid_checkpoint(store_a, f"{folder}/checkpoints")
    assert set(state["components"]) == {"augmentation:ada", "regularizer:lecam"}
    assert state["components"]["augmentation:ada"]["p"] > 0  # the controller moved
    for name in ("generator.safetensors", "discriminator.safetensors"):
        wa = load_safetensors(store_a.read_bytes(f"{folder}/{name}"))
        wb = load_safetensors(store_b.read_bytes(f"{folder}/{name}"))
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    metrics = store_a.read_parquet(f"{folder}/metrics.parquet")
    assert {"ada_p", "ada_r", "lecam_anchor_real"} <= set(metrics.columns)
    resumed = store_b.read_parquet(f"{folder}/metrics.parquet")
    assert metrics.drop(columns="seconds").equals(resumed.drop(columns="seconds"))
