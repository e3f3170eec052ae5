"""The report pages as templates: data is escaped, a team's folder overrides the built-in
templates (and can extend them), and a missing or broken folder is a config error that says
what to do. Pages are rendered from made-up data, so no model is trained here; the real stages
are rendered in test_generate_filter_report.py and test_report_browser.py."""

from __future__ import annotations

import html.parser

import numpy as np
import pytest

from ganpipe.config import load_config
from ganpipe.errors import ConfigError
from ganpipe.stages.report_pages import Strips, figure, render_page, template_environment

HOSTILE = '<script>alert("x")</script> it\'s'  # a style name as a dataset could label it


class Page(html.parser.HTMLParser):
    """Tags, and the text inside each <h2>/<td>/<title>, as a browser would read them."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.texts: list[str] = []
        self._open: str | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self._open = tag

    def handle_data(self, data):
        if self._open in ("h1", "h2", "td", "title", "p", "figcaption", "h3"):
            self.texts.append(data)


def batch_values(name: str = "circles") -> dict:
    px = np.full((4, 4, 3), 128, np.uint8)
    return {
        "batch_id": "b-1",
        "model": "demo",
        "version": "v-1",
        "dataset": "demo",
        "fingerprint": "f00",
        "kept": 1,
        "candidates": 2,
        "styles": [
            {
                "name": name,
                "real_count": 12,
                "asked": 2,
                "kept": 1,
                "exemplars": [figure(px)],
                "kept_samples": [figure(px, "seed 0")],
                "rejected_samples": [figure(px, name)],
            }
        ],
        "reasons": [{"reason": name, "count": 1, "share": 0.5}],
        "strip": None,
        "strips": Strips([(f"{name} → b", [figure(px)])]),
        "losses": None,
        "figures": {"kept": 1.0, name: 0.5},
        "stopped_early": False,
        "evaluation": {"missing": True, "model_uri": f"/store/models/{name}"},
    }


def model_values(name: str = "circles") -> dict:
    px = np.full((4, 4, 3), 128, np.uint8)
    return {
        "model": "demo",
        "version": "v-1",
        "dataset": "demo",
        "fingerprint": "f00",
        "style_count": 1,
        "steps": 60,
        "styles": [
            {"name": name, "real_count": 12, "exemplars": [], "generated": [figure(px, "seed 0")]}
        ],
        "strips": Strips([], "one_style"),
        "grids": [],
        "losses": None,
        "figures": {},
        "stopped_early": True,
        "evaluation": {
            "missing": False,
            "samples": 8,
            "real_images": 12,
            "spaces": ["texture"],
            "metrics": [{"name": "fd", "cells": [1.25]}],
            "features": "texture",
            "columns": ["fd"],
            "per_style": [{"name": name, "cells": [None]}],
        },
    }


def render(cfg, page: str, values: dict) -> str:
    return render_page(template_environment(cfg), page, **values)


def test_data_is_escaped_never_markup(tmp_path):
    cfg = load_config(None, [f"store.root={tmp_path}"])
    for page, values in [("batch_report.html.j2", batch_values(HOSTILE)),
                         ("model_report.html.j2", model_values(HOSTILE))]:  # fmt: skip
        text = render(cfg, page, values)
        assert "<script" not in text and "alert(&#34;x&#34;)" in text and "it&#39;s" in text
        parsed = Page(text)
        assert "script" not in parsed.tags
        assert HOSTILE in parsed.texts  # shown as the text it is, in the style's heading
        assert parsed.tags.count("section") == 1


def test_default_pages_have_every_part(tmp_path):
    cfg = load_config(None, [f"store.root={tmp_path}"])
    batch = render(cfg, "batch_report.html.j2", batch_values())
    for text in ["<title>ganpipe batch b-1</title>", "Why samples were rejected", "50%",
                 "Interpolation between styles", "no training metrics recorded",
                 "not evaluated yet", "circles → b", "Generated, rejected"]:  # fmt: skip
        assert text in batch
    model = render(cfg, "model_report.html.j2", model_values())
    for text in ["<title>ganpipe model demo/v-1</title>", "one style: nothing to interpolate",
                 "no sample grids were taken during training", "<td>1.25</td>", "<td>-</td>",
                 "Training stopped at its time budget"]:  # fmt: skip
        assert text in model
    assert batch.endswith("</html>\n") and model.startswith("<!doctype html>")


def test_a_team_folder_overrides_and_extends_the_built_in_templates(tmp_path):
    team = tmp_path / "templates"
    team.mkdir()
    (team / "batch_report.html.j2").write_text(
        '{% extends "ganpipe/batch_report.html.j2" %}'
        "{% block title %}ACME batch {{ batch_id }}{% endblock %}"
    )
    (team / "base.html.j2").write_text(
        '{% extends "ganpipe/base.html.j2" %}'
        '{% block header %}<header class="acme"><h1>{{ self.title() }}</h1></header>'
        "{% endblock %}"
    )
    cfg = load_config(None, [f"store.root={tmp_path}", f"report.templates={team}"])
    batch = render(cfg, "batch_report.html.j2", batch_values())
    assert "<title>ACME batch b-1</title>" in batch and '<header class="acme">' in batch
    assert "Why samples were rejected" in batch  # the rest is the built-in page
    model = render(cfg, "model_report.html.j2", model_values())
    assert '<header class="acme">' in model and "<title>ganpipe model demo/v-1</title>" in model

    default = load_config(None, [f"store.root={tmp_path}"])
    assert "<title>ganpipe batch b-1</title>" in render(
        default, "batch_report.html.j2", batch_values()
    )


def test_a_missing_template_folder_is_a_config_error(tmp_path):
    missing = tmp_path / "no-such-folder"
    with pytest.raises(ConfigError) as err:
        load_config(None, [f"report.templates={missing}"])
    assert err.value.where == "report.templates"
    assert str(missing) in err.value.message and "null" in err.value.fix

    with pytest.raises(ConfigError) as err:
        load_config(None, ["report.templates= "])
    assert "report.templates" in err.value.message

    missing.mkdir()  # there when the config was loaded, gone when the report is written
    cfg = load_config(None, [f"report.templates={missing}"])
    missing.rmdir()
    with pytest.raises(ConfigError) as err:
        template_environment(cfg)
    assert err.value.where == "report.templates"


def test_a_broken_team_template_names_the_file(tmp_path):
    team = tmp_path / "templates"
    team.mkdir()
    (team / "model_report.html.j2").write_text("{% block title %}unclosed")
    cfg = load_config(None, [f"report.templates={team}"])
    with pytest.raises(ConfigError) as err:
        render(cfg, "model_report.html.j2", model_values())
    assert "model_report.html.j2" in err.value.message and "syntax error" in err.value.message
