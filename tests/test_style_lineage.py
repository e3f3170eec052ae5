"""Style identity across dataset versions: names survive a retrain on new data, new styles get
names never used before, vanished styles give a clear error naming the nearest survivor."""

import itertools
import random
from collections import Counter

import pytest
import torch

from ganpipe.config import load_config
from ganpipe.data import demo
from ganpipe.data.dataset import load_dataset
from ganpipe.domain.style_table import load_styles
from ganpipe.errors import ConfigError
from ganpipe.stages.ingest import ingest
from ganpipe.stages.style_lineage import Previous, fresh_ids, match
from ganpipe.stages.styles import styles
from ganpipe.stats.assignment import assign
from ganpipe.store import RunStore

DEMO = list(demo.STYLES)  # stripes, checker, dots, rings, clouds, mosaic


def test_assignment_is_the_cheapest_one_to_one_pairing():
    rng = random.Random(3)
    for _ in range(200):
        rows, cols = rng.randint(1, 5), rng.randint(1, 5)
        cost = [[rng.choice([rng.random(), rng.randint(0, 3)]) for _ in range(cols)]
                for _ in range(rows)]  # fmt: skip
        pairs = assign(cost)
        k = min(rows, cols)
        assert len({r for r, _ in pairs}) == len({c for _, c in pairs}) == len(pairs) == k
        best = min(sum(cost[r][c] for r, c in zip(rs, cs))
                   for rs in itertools.combinations(range(rows), k)
                   for cs in itertools.permutations(range(cols), k))  # fmt: skip
        assert sum(cost[r][c] for r, c in pairs) == pytest.approx(best)
    # greedy would pair row 0 with column 0 (cost 1) and pay 10 for row 1
    assert assign([[1, 2], [1, 10]]) == [(0, 1), (1, 0)]


def test_matching_keeps_names_and_never_reuses_one():
    previous = Previous(
        "old", ["style-0", "style-1", "style-2", "style-4"],
        ["style-0", "style-1", "bricks", "style-4"], [10, 20, 30, 40],
        torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [30.0, 30.0]]),
        torch.tensor([1.0, 1.0, 2.0, 1.0]), {"style-3": {"nearest": "style-0"}},
    )  # fmt: skip
    # cluster 0 is style-1 moved by 0.5 radius, cluster 1 is style-0, cluster 2 is new;
    # style-2 lost its cluster but sits 1.5 (of its radius 2) from cluster 1... not within 1.0
    # of it; style-4's images went to cluster 3, which also sits near nothing else
    new = torch.tensor([[10.5, 0.0], [0.0, 0.1], [-40.0, 0.0], [30.0, 30.5]])
    out = match(previous, new, [21, 12, 5, 44], limit=1.0)
    assert out.ids == ["style-1", "style-0", "style-5", "style-4"]  # 3 was retired: 5 is next
    rows = {r.style: r for r in out.lineage}
    assert rows["style-1"].status == "kept" and rows["style-1"].shift == pytest.approx(0.5)
    assert (rows["style-1"].size_before, rows["style-1"].size_after) == (20, 21)
    assert rows["style-5"].status == "new" and rows["style-5"].size_before is None
    assert rows["style-2"].status == "vanished" and rows["style-2"].size_after is None
    assert out.retired["style-2"] == {"nearest": "style-0", "name": "bricks"}
    assert "style-3" in out.retired  # earlier retirements are carried forward

    # one cluster took the images of two old styles: the unmatched one merged into it
    merged = match(previous, torch.tensor([[0.5, 0.0], [10.0, 0.0], [0.0, 10.0], [30.2, 30]]),
                   [25, 20, 30, 40], limit=10.0)  # fmt: skip
    assert merged.ids == ["style-0", "style-1", "style-2", "style-4"]
    shrunk = match(previous, torch.tensor([[0.4, 0.0], [0.0, 10.0], [30.0, 30.0]]),
                   [30, 30, 40], limit=11.0)  # fmt: skip
    status = {r.style: (r.status, r.into) for r in shrunk.lineage}
    assert status["style-1"] == ("merged", "style-0")

    assert fresh_ids({"style-2", "watercolour", "style-10"}, 2) == ["style-11", "style-12"]
    first = match(None, new, [1, 2, 3, 4], limit=1.0)
    assert first.ids == ["style-0", "style-1", "style-2", "style-3"]
    assert {r.status for r in first.lineage} == {"new"}


def _write_styles(folder, names, per_style, start=0):
    for name in names:
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(start, start + per_style):
            demo.render(name, i, size=32).save(folder / name / f"{i:03d}.png")


def _run(tmp_path, folder, **extra):
    values = {"store.root": str(tmp_path / "store"), "dataset.sources": f"[{folder}]",
              "dataset.image_size": 16, **extra}  # fmt: skip
    cfg = load_config(None, [f"{k}={v}" for k, v in values.items()])
    store = RunStore.from_config(cfg)
    ingest(cfg, store)
    result = styles(cfg, store)
    table, assignments = load_styles(store, result.fingerprint, "texture")
    label = load_dataset(store, "demo", result.fingerprint).manifest.set_index("id")["label"]
    return result, table, assignments.assign(label=assignments["id"].map(label).to_numpy())


def _id_of_each_label(assignments) -> dict[str, str]:
    """The style id most of each folder's images fell in (folder labels are kept by ingest),
    given as the table's id (a renamed style is looked up by its id)."""
    return {label: Counter(part["style"]).most_common(1)[0][0]
            for label, part in assignments.groupby("label")}  # fmt: skip


@pytest.fixture
def grown(tmp_path):
    """Five demo styles, then a sixth and more images of the five."""
    folder = tmp_path / "images"
    _write_styles(folder, DEMO[:5], 12)
    before = _run(tmp_path, folder, **{"style.num_styles": 5})
    _write_styles(folder, DEMO[:5], 4, start=12)
    _write_styles(folder, DEMO[5:], 14)
    after = _run(tmp_path, folder, **{"style.num_styles": 6})
    return folder, before, after


def test_styles_keep_their_names_when_the_data_grows(tmp_path, grown):
    folder, (r1, t1, a1), (r2, t2, a2) = grown
    assert r1.fingerprint != r2.fingerprint and r1.previous is None
    assert len(t1.names) == 5 and len(t2.names) == 6
    old = _id_of_each_label(a1)
    new = _id_of_each_label(a2)
    assert len(set(old.values())) == 5  # the five styles were found apart
    for label in DEMO[:5]:
        assert new[label] == old[label], (label, old, new)
    assert new[DEMO[5]] not in set(t1.ids)  # the new style got a name never used
    assert r2.previous == r1.fingerprint
    status = Counter(row["status"] for row in r2.lineage)
    assert status == {"kept": 5, "new": 1}
    assert t2.ids == sorted(t2.ids, key=lambda i: int(i.split("-")[1]))
    store = RunStore(str(tmp_path / "store"))
    lineage = store.read_json(f"styles/{r2.fingerprint}/texture/lineage.json")
    assert lineage["previous"] == r1.fingerprint and len(lineage["rows"]) == 6


def test_named_styles_survive_retrains_and_vanished_styles_name_a_survivor(tmp_path, grown):
    folder, (r1, t1, a1), (r2, t2, a2) = grown
    ids = _id_of_each_label(a2)
    rings, clouds = ids["rings"], ids["clouds"]
    named = {"style.names": f"{{{rings}: target, {clouds}: sky}}", "style.num_styles": 6}
    r3, t3, a3 = _run(tmp_path, folder, **named)  # the same data, styles found again, renamed
    assert t3.names[t3.index(rings)] == "target" and t3.index("sky") == t3.ids.index(clouds)
    assert "target" in r3.names and rings not in r3.names

    for f in (folder / "rings").iterdir():  # the ring style leaves the collection
        f.unlink()
    (folder / "rings").rmdir()
    _write_styles(folder, ["stripes"], 2, start=16)
    r4, t4, a4 = _run(tmp_path, folder, **{**named, "style.num_styles": 5})
    rows = {row["style"]: row for row in r4.lineage}
    assert rows[rings]["status"] in ("vanished", "merged")
    assert rings not in t4.ids and "sky" in t4.names  # the other name survived
    with pytest.raises(ConfigError, match="no longer exists") as caught:
        t4.index("target")  # asked for by the name the team gave it
    nearest = t4.retired[rings]["nearest"]
    assert repr(t4.names[t4.ids.index(nearest)]) in str(caught.value)
    with pytest.raises(ConfigError, match="no longer exists"):
        t4.index(rings)

    with pytest.raises(ConfigError, match="'style-99'"):
        _run(tmp_path, folder, **{"style.names": "{style-99: x}", "style.num_styles": 5})
    with pytest.raises(ConfigError, match="same name"):
        _run(
            tmp_path,
            folder,
            **{"style.names": f"{{{clouds}: {ids['dots']}}}", "style.num_styles": 5},
        )


def test_match_limit_zero_names_styles_afresh(tmp_path, grown):
    folder, _, (r2, t2, _) = grown
    r3, t3, _ = _run(
        tmp_path, folder, **{"style.match_limit": 0, "style.seed": 1, "style.num_styles": 6}
    )
    assert t3.ids == [f"style-{i}" for i in range(6)] and r3.previous is None
