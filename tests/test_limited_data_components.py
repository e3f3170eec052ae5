"""The limited-data training components: adaptive augmentation (ADA), LeCam regularisation,
per-style moment matching and spectral normalisation, each on hand-computed cases, and a resume
with all of them on."""

import shutil
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load as load_safetensors

from ganpipe.builtin.ada import AdaptiveAugment
from ganpipe.builtin.nets import DCGANDiscriminator
from ganpipe.builtin.regularizers import LeCam, StyleMoments
from ganpipe.builtin.stylenets import ResidualDiscriminator
from ganpipe.config import load_config
from ganpipe.contracts import Adaptive, LogitPenalty, ReportsMetrics, Stateful, supports
from ganpipe.registry import load_registry
from ganpipe.stages.train import train
from ganpipe.store import RunStore
from ganpipe.store.checkpoints import export_network, load_network, newest_valid_checkpoint
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


def _moments_bound_to_two_styles(**options) -> StyleMoments:
    """Embeddings are the images' two pixel values themselves (a flatten as the encoder)."""
    reg = StyleMoments(**options)
    reg.bind(SimpleNamespace(style_encoder=torch.nn.Flatten(), centroids=torch.zeros(2, 2)))
    return reg


def _points(*rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)[:, :, None, None]


def test_style_moments_learn_each_styles_real_mean_and_spread_from_the_real_batches():
    reg = _moments_bound_to_two_styles(weight=1.0, interval=1)
    assert reg.d_penalty(None, _points([0, 0], [2, 4]), None, torch.tensor([0, 0]), 0) is None
    reg.d_penalty(None, _points([4, 2], [9, 9]), None, torch.tensor([0, 1]), 1)
    # style 0 has seen (0,0), (2,4), (4,2): mean (2, 2), unbiased variance (4, 4)
    matched = _points([0, 0], [2, 4], [4, 2], [9, 9], [9, 9])
    styles = torch.tensor([0, 0, 0, 1, 1])
    assert float(reg.g_penalty(matched, None, styles, 1)) == pytest.approx(0.0, abs=1e-3)
    collapsed = _points([2, 2], [2, 2], [2, 2])  # the right mean, no spread: 2^2 + 2^2 short
    penalty = reg.g_penalty(collapsed, None, torch.tensor([0, 0, 0]), 1)
    assert float(penalty) == pytest.approx(8.0, rel=1e-3)
    noisy = _points([-4, 2], [8, 2], [2, 2])  # spread (6, 0): too much in one, none in other
    gap = (6 - 2) ** 2 + (0 - 2) ** 2
    assert float(reg.g_penalty(noisy, None, torch.tensor([0, 0, 0]), 1)) == pytest.approx(
        gap, rel=1e-3
    )
    assert reg.metrics() == {"style_moments_gap": pytest.approx(gap, rel=1e-3)}


def test_style_moments_skip_styles_with_one_image_and_steps_between_intervals():
    reg = _moments_bound_to_two_styles(weight=2.0, interval=2)
    reg.d_penalty(None, _points([0, 0], [2, 4]), None, torch.tensor([0, 0]), 1)  # not its step
    assert float(reg.count.sum()) == 0
    reg.d_penalty(None, _points([0, 0], [2, 4], [1, 1]), None, torch.tensor([0, 0, 1]), 2)
    assert reg.g_penalty(_points([1, 1], [1, 1]), None, torch.tensor([0, 1]), 2) is None
    assert reg.g_penalty(_points([1, 1], [1, 1]), None, torch.tensor([1, 1]), 2) is None
    # style 0: mean (1, 2), spread (sqrt 2, sqrt 8); fakes at (1, 2) twice: 2 + 8, x weight x 2
    penalty = reg.g_penalty(_points([1, 2], [1, 2]), None, torch.tensor([0, 0]), 2)
    assert float(penalty) == pytest.approx(2 * 2 * 10.0, rel=1e-3)
    restored = _moments_bound_to_two_styles(weight=2.0, interval=2)
    restored.load_state_dict(reg.state_dict())
    again = restored.g_penalty(_points([1, 2], [1, 2]), None, torch.tensor([0, 0]), 2)
    assert torch.equal(again, penalty)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return prepare_tiny_store(tmp_path_factory.mktemp("limited") / "store")


def _straight_and_resumed(prepared, extra: list[str], name: str):
    """The same 8 steps trained straight through, and as 4 steps then a resumed 4; returns
    both stores and the folder of the (same) model version in each."""
    straight = prepared.parent / f"straight-{name}"
    resumed = prepared.parent / f"resumed-{name}"
    shutil.copytree(prepared, straight)
    shutil.copytree(prepared, resumed)
    cfg_a = load_config(None, tiny_overrides(straight) + extra)
    store_a = RunStore.from_config(cfg_a)
    a = train(cfg_a, store_a)
    halfway = [e if e != "train.steps=8" else "train.steps=4" for e in extra]
    cfg_b = load_config(None, tiny_overrides(resumed) + halfway)
    store_b = RunStore.from_config(cfg_b)
    train(cfg_b, store_b)
    b = train(load_config(None, tiny_overrides(resumed) + extra), store_b)
    assert b.version == a.version and b.steps_done == 8
    return store_a, store_b, f"models/demo/{a.version}"


def _same_weights_and_metrics(store_a, store_b, folder: str):
    for name in ("generator.safetensors", "discriminator.safetensors"):
        wa = load_safetensors(store_a.read_bytes(f"{folder}/{name}"))
        wb = load_safetensors(store_b.read_bytes(f"{folder}/{name}"))
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    metrics = store_a.read_parquet(f"{folder}/metrics.parquet")
    resumed = store_b.read_parquet(f"{folder}/metrics.parquet")
    assert metrics.drop(columns="seconds").equals(resumed.drop(columns="seconds"))
    return metrics


def test_resume_is_bit_identical_with_every_limited_data_component_on(prepared):
    extra = [
        "train.steps=8",
        "train.checkpoint_every=4",
        "train.log_every=2",
        "train.loss=hinge",
        "model.discriminator=resnet",
        "model.discriminator_options={spectral_norm: true, minibatch: style}",
        # from p 0.3, so that the controller can move either way within 8 steps
        "train.augmentations={ada: {speed: 200, interval: 1, p: 0.3}}",
        "train.regularizers={lecam: {weight: 0.3}, r1: {gamma: 1, interval: 4}, "
        "style_moments: {weight: 1, interval: 1}}",
    ]
    store_a, store_b, folder = _straight_and_resumed(prepared, extra, "limited")
    _, state = newest_valid_checkpoint(store_a, f"{folder}/checkpoints")
    assert set(state["components"]) == {
        "augmentation:ada",
        "regularizer:lecam",
        "regularizer:style_moments",
    }
    assert state["components"]["augmentation:ada"]["p"] != pytest.approx(0.3)  # it moved
    metrics = _same_weights_and_metrics(store_a, store_b, folder)
    assert {"ada_p", "ada_r", "lecam_anchor_real", "style_moments_gap"} <= set(metrics.columns)


def test_resume_is_bit_identical_with_the_sngan_recipe(prepared):
    """The quality benchmark judges snapshots of one run as resumed model versions: with the
    resnet generator, the spectrally normalised sngan discriminator (its power-iteration
    vectors are state too), hinge loss and DiffAugment with cutout, 4 + 4 steps are 8."""
    extra = [
        "train.steps=8",
        "train.checkpoint_every=4",
        "train.log_every=2",
        "train.loss=hinge",
        "model.generator=resnet",
        "model.discriminator=sngan",
        "train.regularizers={}",
        "train.augmentations={diffaugment: {cutout: 0.5}}",
        "train.betas=[0.0, 0.999]",
        "train.ema_decay=0.999",
    ]
    store_a, store_b, folder = _straight_and_resumed(prepared, extra, "sngan")
    _same_weights_and_metrics(store_a, store_b, folder)


def test_resume_is_bit_identical_with_the_full_ada_pipeline(prepared):
    extra = [
        "train.steps=8",
        "train.checkpoint_every=4",
        "train.log_every=2",
        "train.augmentations={ada: {pipeline: bgc, speed: 200, interval: 1, p: 0.3}}",
    ]
    store_a, store_b, folder = _straight_and_resumed(prepared, extra, "bgc")
    metrics = _same_weights_and_metrics(store_a, store_b, folder)
    assert metrics["ada_p"].nunique() > 1  # the controller moved the strength


def test_resume_is_bit_identical_with_diversity_capped_at_the_data(prepared):
    extra = [
        "train.steps=8",
        "train.checkpoint_every=4",
        "train.log_every=2",
        "train.regularizers={diversity: {weight: 0.1, target: data}, "
        "style_moments: {weight: 3.0, interval: 2}}",
    ]
    store_a, store_b, folder = _straight_and_resumed(prepared, extra, "capped")
    _, state = newest_valid_checkpoint(store_a, f"{folder}/checkpoints")
    assert float(state["components"]["regularizer:diversity"]["pairs"].sum()) > 0
    metrics = _same_weights_and_metrics(store_a, store_b, folder)
    assert metrics["diversity_vs_data"].notna().all()


def test_a_packing_discriminator_trains_exports_and_judges_any_number_of_images(prepared):
    store_root = prepared.parent / "packed"
    shutil.copytree(prepared, store_root)
    extra = ["train.steps=3", "model.discriminator_options={pack: 2, minibatch: style}"]
    cfg = load_config(None, tiny_overrides(store_root) + extra)
    store = RunStore.from_config(cfg)
    result = train(cfg, store)
    D, _ = load_network(store, f"models/demo/{result.version}", "discriminator", load_registry(cfg))
    logits = D(torch.rand(5, 3, 16, 16) * 2 - 1, torch.tensor([0, 1, 0, 1, 0]))
    assert D.pack == 2 and logits.shape == (5,) and logits[0] == logits[1]
