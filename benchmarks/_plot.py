"""A line chart drawn with PIL alone (the benchmarks do not depend on matplotlib): one panel
per figure, one line per run, x = reference-minutes."""

from __future__ import annotations

import math

from PIL import Image, ImageDraw

COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127)]  # fmt: skip


def line_panels(
    series: dict[str, dict[str, list[tuple[float, float]]]],
    panels: list[tuple[str, bool]],
    title: str,
    width: int = 420,
    height: int = 300,
) -> Image.Image:
    """``series``: run -> figure -> [(minutes, value)]; ``panels``: (figure, log scale).
    Returns one image with the panels side by side and a legend below them."""
    runs = list(series)
    legend_h = 18 * len(runs) + 10
    image = Image.new("RGB", (width * len(panels), height + legend_h + 24), "white")
    draw = ImageDraw.Draw(image)
    draw.text((8, 4), title, fill="black")
    for p, (figure, log) in enumerate(panels):
        _panel(draw, series, figure, log, (p * width, 24, width, height))
    for i, run in enumerate(runs):
        y = height + 30 + 18 * i
        draw.line([(12, y + 6), (40, y + 6)], fill=COLOURS[i % len(COLOURS)], width=3)
        draw.text((48, y), run, fill="black")
    return image


def _panel(draw, series, figure: str, log: bool, box) -> None:
    x0, y0, w, h = box
    left, right, top, bottom = x0 + 56, x0 + w - 12, y0 + 18, y0 + h - 28
    points = [pt for run in series.values() for pt in run.get(figure, [])
              if math.isfinite(pt[1]) and (pt[1] > 0 or not log)]  # fmt: skip
    draw.text((left, y0), figure + (" (log)" if log else ""), fill="black")
    draw.rectangle([left, top, right, bottom], outline=(160, 160, 160))
    if not points:
        return
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    fy = math.log10 if log else (lambda v: v)
    x_lo, x_hi = 0.0, max(xs) * 1.05
    y_lo, y_hi = fy(min(ys)), fy(max(ys))
    if y_hi - y_lo < 1e-9:
        y_lo, y_hi = y_lo - 0.5, y_hi + 0.5
    pad = (y_hi - y_lo) * 0.08
    y_lo, y_hi = y_lo - pad, y_hi + pad

    def at(x: float, y: float) -> tuple[float, float]:
        return (left + (x - x_lo) / (x_hi - x_lo) * (right - left),
                bottom - (fy(y) - y_lo) / (y_hi - y_lo) * (bottom - top))  # fmt: skip

    for k in range(5):  # y ticks
        v = y_lo + (y_hi - y_lo) * k / 4
        label = 10**v if log else v
        y = bottom - (bottom - top) * k / 4
        draw.line([(left - 4, y), (left, y)], fill="black")
        draw.text((x0 + 2, y - 6), f"{label:.3g}", fill="black")
    for x in sorted(set(xs)):
        px = at(x, 10**y_lo if log else y_lo)[0]
        draw.line([(px, bottom), (px, bottom + 4)], fill="black")
        draw.text((px - 8, bottom + 6), f"{x:g}", fill="black")
    draw.text((right - 110, bottom + 14), "reference-minutes", fill=(90, 90, 90))
    for i, run in enumerate(series.values()):
        pts = [at(x, y) for x, y in run.get(figure, []) if math.isfinite(y) and (y > 0 or not log)]
        colour = COLOURS[i % len(COLOURS)]
        if len(pts) > 1:
            draw.line(pts, fill=colour, width=2)
        for px, py in pts:
            draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=colour)
