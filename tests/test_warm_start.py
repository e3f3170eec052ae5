"""Warm starts (``train.init``) and FreezeD (``train.freeze_d_layers``): a new version starts
from an earlier model, matched styles keep their rows, new styles get fresh ones."""

import shutil

import pytest
import torch

from ganpipe.config import load_config
from ganpipe.data import demo
from ganpipe.domain.model_pointers import champion
from ganpipe.domain.style_table import StyleTable
from ganpipe.errors import ConfigError
from ganpipe.registry import load_registry
from ganpipe.stages.ingest import ingest
from ganpipe.stages.styles import styles
from ganpipe.stages.train import train
from ganpipe.store import RunStore
from ganpipe.store.checkpoints import load_network
from ganpipe.training.components import build_networks
from ganpipe.training.mixed_precision import resolve_precision
from ganpipe.training.training_data import load_training_data
from ganpipe.training.warm_start import (
    freeze_early_layers,
    resolve_init,
    start_for_retrain,
    warm_start,
)
from tests.conftest import tiny_overrides, train_tiny_model

pytestmark = pytest.mark.slow


def _write(folder, names, per_style, start=0):
    for name in names:
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(start, start + per_style):
            demo.render(name, i, size=32).save(folder / name / f"{i:03d}.png")


@pytest.fixture(scope="module")
def champion_then_more_data(tmp_path_factory):
    """A promoted model trained on five demo styles; then the style named ``style-0`` leaves
    the collection, a sixth demo style arrives and the others grow, so every surviving style
    moves to another index of the style table while keeping its name. The grown collection is
    ingested with its styles found (not yet trained)."""
    root = tmp_path_factory.mktemp("warm")
    folder = root / "images"
    _write(folder, list(demo.STYLES)[:5], 12)
    first = {"dataset.sources": f"[{folder}]", "style.num_styles": 5, "train.steps": 20}
    train_tiny_model(root / "store", tiny_overrides(root / "store", **first))
    cfg = load_config(None, tiny_overrides(root / "store", **first))
    store = RunStore.from_config(cfg)
    data = load_training_data(cfg, store)
    label = data.dataset.manifest.set_index("id")["label"]
    gone = data.assignments[data.assignments["style"] == "style-0"]["id"].map(label).mode()[0]
    shutil.rmtree(folder / gone)
    _write(folder, [s for s in list(demo.STYLES)[:5] if s != gone], 3, start=12)
    _write(folder, list(demo.STYLES)[5:], 14)
    base = tiny_overrides(root / "store", **first)
    ingest(cfg, store)
    styles(cfg, store)
    return root, base


def _cfg(base, **extra):
    return load_config(None, [*base, *(f"{k}={v}" for k, v in extra.items())])


def test_matched_styles_keep_their_rows_and_new_styles_start_fresh(champion_then_more_data):
    root, base = champion_then_more_data
    cfg = _cfg(base, **{"train.init": "champion"})
    store = RunStore.from_config(cfg)
    registry = load_registry(cfg)
    data = load_training_data(cfg, store)
    start = resolve_init(cfg, store)
    assert not start.is_scratch and start.identity.startswith(champion(cfg, store).uri)
    old_g, meta = load_network(start.model.store, start.model.folder, "generator", registry)
    old_d, _ = load_network(start.model.store, start.model.folder, "discriminator", registry)
    old_ids = meta["styles"]["ids"]
    assert len(old_ids) == 5 and len(data.table.ids) == 5 and "style-0" not in data.table.ids
    moved = [i for i in data.table.ids if i in old_ids and data.table.ids.index(i) !=
             old_ids.index(i)]  # fmt: skip
    assert len(moved) == 4  # rows must follow the names, not the indices

    precision = resolve_precision("fp32", False, torch.device("cpu"))
    torch.manual_seed(0)
    fresh = build_networks(cfg, registry, 5, precision, "cpu")
    torch.manual_seed(0)
    nets = build_networks(cfg, registry, 5, precision, "cpu")
    carried = warm_start(nets, start, data.table, cfg, registry)
    new_id = next(i for i in data.table.ids if i not in old_ids)
    assert carried["styles_fresh"] == [new_id]
    assert sorted(carried["styles_copied"]) == sorted(set(old_ids) - {"style-0"})
    for j, style_id in enumerate(data.table.ids):
        g_row, d_row = nets.G.embed.weight[j], nets.D.embed.weight[j]
        if style_id == new_id:  # the new style: exactly the row a scratch run would have
            assert torch.equal(g_row, fresh.G.embed.weight[j])
            assert torch.equal(d_row, fresh.D.embed.weight[j])
        else:  # matched by id, wherever the style sits in either table
            old = old_ids.index(style_id)
            assert torch.equal(g_row, old_g.embed.weight[old])
            assert torch.equal(d_row, old_d.embed.weight[old])
    assert torch.equal(nets.G.project.weight, old_g.project.weight)  # the rest: whole
    assert torch.equal(nets.ema.project.weight, old_g.project.weight)
    assert torch.equal(nets.D.linear.weight, old_d.linear.weight)


def test_a_warm_started_version_trains_exports_and_names_its_start(champion_then_more_data):
    root, base = champion_then_more_data
    # The EMA is held (no warm-up), so after 6 steps the exported generator is the start's but
    # for its rows moved with their styles: what lets the looks be compared by name below (the
    # tiny champion trained 20 steps, so 6 steps of a warmed-up EMA would change its looks)
    cfg = _cfg(base, **{"train.init": "champion", "train.steps": 6, "train.freeze_d_layers": 2,
                        "train.ema_rampup": "false"})  # fmt: skip
    store = RunStore.from_config(cfg)
    start = champion(cfg, store)
    result = train(cfg, store)
    scratch = train(_cfg(base, **{"train.steps": 6, "train.freeze_d_layers": 2}), store)
    assert result.version != scratch.version  # the start is part of the version
    assert result.init.startswith(start.uri) and scratch.init == "scratch"
    model = store.read_json(f"models/demo/{result.version}/training.json")
    assert model["init"] == result.init
    registry = load_registry(cfg)
    G, meta = load_network(store, f"models/demo/{result.version}", "generator", registry)
    assert G(torch.randn(5, G.z_dim), torch.arange(5)).shape == (5, 3, 16, 16)
    with pytest.raises(ConfigError, match="no longer exists"):
        StyleTable.from_json(meta["styles"]).index("style-0")  # the style that left
    # FreezeD: the first two discriminator layers are exactly the start model's
    D, _ = load_network(store, f"models/demo/{result.version}", "discriminator", registry)
    old_d, _ = load_network(store, start.folder, "discriminator", registry)
    assert torch.equal(D.features[0].weight, old_d.features[0].weight)
    assert torch.equal(D.features[2].weight, old_d.features[2].weight)
    assert not torch.equal(D.linear.weight, old_d.linear.weight)
    again = train(cfg, store)  # the same start and data: the finished version is reused
    assert again.reused and again.version == result.version

    # Asked for by the same name, each old style still has its look: the style encoder puts
    # the new version's samples in the same style as the champion's
    from ganpipe.style_encoders import embed, encoder_for

    old_g, old_meta = load_network(store, start.folder, "generator", registry)
    old_table, new_table = (
        StyleTable.from_json(old_meta["styles"]),
        StyleTable.from_json(meta["styles"]),
    )
    data = load_training_data(cfg, store)
    encoder = encoder_for(registry, data.dataset, "texture", {}, 16)
    z = torch.randn(16, G.z_dim, generator=torch.Generator().manual_seed(1))

    def style_of(generator, index):
        with torch.no_grad():
            pixels = ((generator(z, torch.full((16,), index)) + 1) * 127.5).clamp(0, 255)
        found = embed(encoder, pixels.round().byte().permute(0, 2, 3, 1).numpy())
        return torch.cdist(found, new_table.centroids).argmin(dim=1)

    for name in [n for n, i in zip(old_table.names, old_table.ids) if i in new_table.ids]:
        now, before = style_of(G, new_table.index(name)), style_of(old_g, old_table.index(name))
        assert (now == before).float().mean() >= 0.75, name


def test_an_incompatible_start_is_a_clear_error(champion_then_more_data, tmp_path):
    root, base = champion_then_more_data
    wider = _cfg(base, **{"train.init": "champion", "model.generator_options": "{channels: 8}"})
    with pytest.raises(ConfigError, match="channels") as caught:
        train(wider, RunStore.from_config(wider))
    assert caught.value.where == "train.init"
    with pytest.raises(ConfigError, match="no exported generator"):
        resolve_init(_cfg(base, **{"train.init": str(tmp_path)}), RunStore.from_config(wider))
    # the retrain flow's "auto": the champion when it fits, scratch when it does not
    assert start_for_retrain(_cfg(base), RunStore.from_config(wider)) == "champion"
    assert start_for_retrain(wider.model_copy(update={"train": wider.train.model_copy(
        update={"init": "auto"})}), RunStore.from_config(wider)) == "scratch"  # fmt: skip
    assert start_for_retrain(_cfg(base, **{"train.init": "scratch"}),
                             RunStore.from_config(wider)) == "scratch"  # fmt: skip
    empty = _cfg(base, **{"store.root": str(tmp_path / "none")})
    assert start_for_retrain(empty, RunStore.from_config(empty)) == "scratch"


def test_freeze_d_layers_counts_layers_with_weights(tiny_config):
    registry = load_registry(tiny_config)
    precision = resolve_precision("fp32", False, torch.device("cpu"))
    nets = build_networks(tiny_config, registry, 6, precision, "cpu")
    frozen = freeze_early_layers(nets.D, 2)
    assert frozen == ["features.0", "features.2"]
    assert not nets.D.features[0].weight.requires_grad and nets.D.features[4].weight.requires_grad
    with pytest.raises(ConfigError, match="freeze_d_layers=99"):
        freeze_early_layers(nets.D, 99)


def test_a_copied_model_folder_is_a_start_too(champion_then_more_data, tmp_path):
    """``train.init`` as a URI: a model version folder copied anywhere."""
    root, base = champion_then_more_data
    cfg = _cfg(base)
    store = RunStore.from_config(cfg)
    copy = tmp_path / "exported"
    shutil.copytree(root / "store" / champion(cfg, store).folder, copy)
    start = resolve_init(_cfg(base, **{"train.init": str(copy)}), store)
    assert (
        not start.is_scratch
        and start.identity.split("#")[1]
        == resolve_init(_cfg(base, **{"train.init": "champion"}), store).identity.split("#")[1]
    )  # same weights, same digest


def test_the_ema_ramps_up_after_a_warm_start_only(champion_then_more_data):
    from ganpipe.store import layout
    from ganpipe.training.setup import build_trainer
    from ganpipe.training.steps import ema_decay_at

    assert ema_decay_at(0.995, 100, True) == pytest.approx(101 / 110)
    assert ema_decay_at(0.995, 400, True) == pytest.approx(401 / 410)
    assert ema_decay_at(0.995, 5000, True) == 0.995 and ema_decay_at(0.995, 1, False) == 0.995
    root, base = champion_then_more_data
    for init, expected in (("champion", True), ("scratch", False)):
        cfg = _cfg(base, **{"train.init": init})
        store = RunStore.from_config(cfg)
        data = load_training_data(cfg, store)
        files = layout.ModelFiles("models/demo/v-test")
        trainer = build_trainer(cfg, store, load_registry(cfg), data, "v-test", files,
                                resolve_init(cfg, store))  # fmt: skip
        assert trainer.ema_rampup is expected, init
    forced = _cfg(base, **{"train.init": "scratch", "train.ema_rampup": "true"})
    trainer = build_trainer(forced, RunStore.from_config(forced), load_registry(forced),
                            load_training_data(forced, RunStore.from_config(forced)), "v-test",
                            layout.ModelFiles("models/demo/v-test"), None)  # fmt: skip
    assert trainer.ema_rampup is True
