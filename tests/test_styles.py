import numpy as np
import pytest
import torch

from ganpipe.config import load_config
from ganpipe.domain.style_table import load_styles
from ganpipe.errors import ConfigError, StoreError
from ganpipe.stages.ingest import ingest
from ganpipe.stages.styles import styles
from ganpipe.stats.cluster import choose_k, kmeans, nmi, purity, silhouette
from ganpipe.store import RunStore
from tests.conftest import tiny_overrides


def test_discovered_styles_match_the_demo_labels(tmp_path):
    cfg = load_config(None, tiny_overrides(tmp_path, **{"style.num_styles": "auto"}))
    store = RunStore.from_config(cfg)
    ingest(cfg, store)
    result = styles(cfg, store)
    assert len(result.names) == 6
    assert result.quality["nmi"] >= 0.85 and result.quality["purity"] >= 0.9
    folder = f"styles/{result.fingerprint}/texture"
    for name in ["styles.parquet", "assignments.parquet", "embeddings.parquet", "exemplars.png"]:
        assert store.exists(f"{folder}/{name}")
    assert store.listdir(f"{folder}/exemplars") == [f"{n}.png" for n in result.names]
    table = store.read_parquet(f"{folder}/styles.parquet")
    assert list(table.columns[:3]) == ["style", "size", "centroid"]
    assert table["size"].sum() == 72
    again = styles(cfg, store)
    assert again.reused and again.names == result.names


def test_label_styles_and_their_errors(tmp_path, labelled_folder):
    base = [
        f"store.root={tmp_path / 's'}",
        f"dataset.sources=[{labelled_folder}]",
        "dataset.image_size=16",
        "style.source=labels",
    ]
    cfg = load_config(None, base)
    store = RunStore.from_config(cfg)
    ingest(cfg, store)
    result = styles(cfg, store)
    assert result.names == ["blue", "red"] and result.sizes == [6, 6]
    table, assignments = load_styles(store, result.fingerprint, "texture")
    assert table.index("red") == 1 and table.index("0") == 0
    with pytest.raises(ConfigError, match="blue, red"):
        table.index("green")

    unlabelled = load_config(None, base + ["dataset.labels=none"])
    ingest(unlabelled, store)
    with pytest.raises(ConfigError, match="carry no label"):
        styles(unlabelled, store)
    with pytest.raises(ConfigError, match="exceeds the 12 images"):
        styles(load_config(None, base + ["style.source=clusters", "style.num_styles=50"]), store)
    with pytest.raises(StoreError, match="has not been ingested"):
        styles(load_config(None, base + ["dataset.name=other"]), store)


def test_kmeans_and_agreement_scores():
    gen = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [5.0, 5.0], [0.0, 5.0]])
    x = torch.cat([c + 0.3 * torch.randn(30, 2, generator=gen) for c in centres])
    truth = np.repeat([0, 1, 2], 30)
    labels, cents = kmeans(x, 3, seed=1)
    assert nmi(truth, labels.numpy()) == pytest.approx(1.0)
    assert purity(truth, labels.numpy()) == 1.0
    assert choose_k(x, 6)[0] == 3
    assert silhouette(x, labels) > 0.7
    again, _ = kmeans(x, 3, seed=1)
    assert torch.equal(labels, again)
    assert nmi(truth, np.zeros(90)) == pytest.approx(0.0)
    assert purity(truth, np.zeros(90)) == pytest.approx(1 / 3)


def test_styles_named_by_digits_are_found_by_name():
    from ganpipe.domain.style_table import StyleTable

    table = StyleTable(["1", "2", "3"], [1, 1, 1], torch.zeros(3, 2), [[], [], []], "texture", {})
    assert [table.index(n) for n in ["1", "2", "3"]] == [0, 1, 2]
    assert table.index(2) == 2  # a position, when no style has that name
