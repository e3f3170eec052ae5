import numpy as np

from ganpipe.data.demo import STYLES, render, write_demo_dataset


def test_demo_is_deterministic_and_varies_inside_a_style():
    a, b = np.asarray(render("rings", 3)), np.asarray(render("rings", 3))
    assert (a == b).all()
    assert not (a == np.asarray(render("rings", 4))).all()


def test_demo_styles_differ_in_palette():
    means = {
        s: np.mean([np.asarray(render(s, i), float).mean((0, 1)) for i in range(8)], 0)
        for s in STYLES
    }
    names = list(STYLES)
    assert len(names) >= 6
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert np.abs(means[a] - means[b]).max() > 12, (a, b)


def test_demo_writes_png_folders(tmp_path):
    write_demo_dataset(tmp_path, per_style=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(STYLES)
    assert len(list(tmp_path.rglob("*.png"))) == 3 * len(STYLES)
