"""The pages of the reports: figures as data URIs, loss curves as SVG coordinates, and the
jinja2 environment that renders them (a team's ``report.templates`` first, the built-in ones
behind). ``report`` gathers what goes on a page; this module only draws it."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import jinja2
import numpy as np

from ganpipe.config import Config, templates_folder
from ganpipe.data.images import encode
from ganpipe.errors import ConfigError


@dataclass(frozen=True)
class Figure:
    """One picture of a page: a data URI and its caption (empty: none)."""

    src: str
    caption: str = ""


@dataclass(frozen=True)
class Strips:
    rows: list[tuple[str, list[Figure]]]  # (label, frames)
    blocked: str | None = None  # "one_style" | "cannot_blend": why there are no rows


def figure(px: np.ndarray, caption: str = "") -> Figure:
    return png_figure(encode(px), caption)


def png_figure(png: bytes, caption: str = "") -> Figure:
    return Figure(f"data:image/png;base64,{base64.b64encode(png).decode()}", caption)


def loss_chart(curves) -> dict[str, Any] | None:
    """Loss curves as SVG coordinates (the template draws them); None without metrics."""
    if curves is None or curves.empty:
        return None
    w, h, pad = 640, 220, 36
    x = curves["step"].to_numpy(float)
    series = [("loss_d", "#d9480f"), ("loss_g", "#1c7ed6")]
    ys = np.concatenate([curves[k].to_numpy(float) for k, _ in series])
    lo, hi = float(np.nanmin(ys)), float(np.nanmax(ys))
    hi = hi if hi > lo else lo + 1
    x0, x1 = float(x.min()), float(x.max()) if x.max() > x.min() else float(x.min()) + 1

    def pt(xv, yv):
        return (
            pad + (xv - x0) / (x1 - x0) * (w - 2 * pad),
            h - pad - (yv - lo) / (hi - lo) * (h - 2 * pad),
        )

    lines = [
        {
            "key": key,
            "colour": colour,
            "points": " ".join(f"{a:.1f},{b:.1f}" for a, b in map(pt, x, curves[key])),
        }
        for key, colour in series
    ]
    return {"width": w, "height": h, "pad": pad, "series": lines, "low": lo, "high": hi,
            "first_step": int(x0), "last_step": int(x1)}  # fmt: skip


def template_environment(config: Config) -> jinja2.Environment:
    """The report templates: a team's ``report.templates`` folder first, then the built-in
    ones, which stay reachable as ``ganpipe/<name>`` so a team template can extend the one it
    replaces. Autoescape is on: data (style names, reasons) is escaped, never markup."""
    builtin = jinja2.PackageLoader("ganpipe", "templates")
    loaders: list[jinja2.BaseLoader] = [builtin]
    folder = templates_folder(config)  # ConfigError naming report.templates when missing
    if folder is not None:
        loaders.insert(0, jinja2.FileSystemLoader(str(folder)))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader([*loaders, jinja2.PrefixLoader({"ganpipe": builtin})]),
        autoescape=True,
        undefined=jinja2.StrictUndefined,  # a misspelt name in a template fails, not blanks
        keep_trailing_newline=True,
    )
    env.filters["fmt"] = format  # {{ x|fmt(".4g") }}: Python's format spec
    return env


def render_page(env: jinja2.Environment, name: str, **values: Any) -> str:
    """Render one page; a template that fails to load or render (a team's, usually) is
    reported with the template's own message instead of a traceback."""
    try:
        return env.get_template(name).render(**values)
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(
            f"report template {exc.name or name} has a syntax error: {exc.message}",
            where=f"{exc.filename or exc.name}, line {exc.lineno}",
            fix="correct the template in report.templates",
        ) from None
    except jinja2.TemplateError as exc:
        raise ConfigError(
            f"report template {name} could not be rendered ({type(exc).__name__}: {exc})",
            where="report.templates",
            fix="compare the template with the built-in one of that name (ganpipe/templates)",
        ) from None
