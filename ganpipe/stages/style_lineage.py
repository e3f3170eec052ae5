"""Style identity across dataset versions: discovered styles keep their names through retrains.

k-means numbers its clusters in whatever order it finds them, so without this a retrain on new
data could hand the name ``style-3`` to a different look, and a production request for
``style-3`` would silently change. Here the new clusters are matched one-to-one to the previous
version's styles (minimum total centroid distance, the Hungarian method), and a match is kept
only when the centroid moved less than ``style.match_limit`` times the previous style's own
radius (mean distance of its images to its centroid), so the limit needs no tuning per encoder.

Both sets of centroids are measured with the *current* encoder: the previous version's images
are embedded again, since a learning encoder (``contrastive``) is retrained for every dataset
version and its feature space moves with it.

Outcomes, recorded in a lineage table: ``kept`` (matched: the name carries over), ``new`` (an
unmatched cluster: a fresh name, never one used before), ``merged`` (a previous style left
unmatched whose images now sit within the limit of a surviving style) and ``vanished``. Retired
names stay in the style table with the nearest surviving style, so a request for one gets a
clear error naming it.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import numpy as np
import torch

from ganpipe.progress import log
from ganpipe.stats.assignment import assign

_NUMBERED = re.compile(r"^style-(\d+)$")
SAMPLE_PER_STYLE = 64  # previous images per style embedded again to place its centroid


@dataclass
class LineageRow:
    style: str  # the stable id (style-N, or the label)
    status: str  # kept | new | merged | vanished
    size_before: int | None
    size_after: int | None
    shift: float | None  # centroid distance over the previous style's radius
    into: str | None = None  # merged: the surviving style that took its images

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Previous:
    """The predecessor's styles, placed in the current encoder's space."""

    fingerprint: str
    ids: list[str]
    names: list[str]  # as users saw them
    sizes: list[int]
    centroids: torch.Tensor  # (S, D), current encoder
    radii: torch.Tensor  # (S,)
    retired: dict[str, dict]  # id -> {"name": shown name, "nearest": surviving id}


@dataclass
class Matched:
    ids: list[str]  # one per new cluster, in cluster order
    retired: dict[str, dict]
    lineage: list[LineageRow]


def fresh_ids(taken: set[str], count: int) -> list[str]:
    """``count`` names ``style-N`` above every number ever used, so none is reused."""
    numbers = [int(m.group(1)) for m in map(_NUMBERED.match, taken) if m]
    start = max(numbers, default=-1) + 1
    return [f"style-{start + i}" for i in range(count)]


def match(previous: Previous | None, centroids: torch.Tensor, sizes: list[int],
          limit: float) -> Matched:  # fmt: skip
    """Ids for the new clusters (``centroids``, in cluster order) and the lineage table."""
    k = len(centroids)
    if previous is None:
        ids = [f"style-{i}" for i in range(k)]
        rows = [LineageRow(i, "new", None, n, None) for i, n in zip(ids, sizes)]
        return Matched(ids, {}, rows)
    distance = torch.cdist(previous.centroids.double(), centroids.double())  # (P, K)
    relative = distance / previous.radii.double().clamp(min=1e-12)[:, None]
    pairs = [(p, c) for p, c in assign(relative.tolist()) if relative[p, c] <= limit]
    ids: list[str | None] = [None] * k
    rows: list[LineageRow] = []
    for p, c in pairs:
        ids[c] = previous.ids[p]
        shift = round(float(relative[p, c]), 4)
        rows.append(LineageRow(previous.ids[p], "kept", previous.sizes[p], sizes[c], shift))
    taken = set(previous.ids) | set(previous.retired)
    unmatched = [c for c in range(k) if ids[c] is None]
    for c, new_id in zip(unmatched, fresh_ids(taken, len(unmatched))):
        ids[c] = new_id
        rows.append(LineageRow(new_id, "new", None, sizes[c], None))
    retired = dict(previous.retired)
    matched_prev = {p for p, _ in pairs}
    for p in range(len(previous.ids)):
        if p in matched_prev:
            continue
        nearest = int(relative[p].argmin())
        shift = round(float(relative[p, nearest]), 4)
        status = "merged" if relative[p, nearest] <= limit else "vanished"
        into = ids[nearest] if status == "merged" else None
        retired[previous.ids[p]] = {"nearest": ids[nearest], "name": previous.names[p]}
        rows.append(LineageRow(previous.ids[p], status, previous.sizes[p], None, shift, into))
    return Matched([str(i) for i in ids], retired, rows)


def place_previous(fingerprint: str, table, assignments, dataset, encoder, embed) -> Previous:
    """The previous version's styles measured with the current encoder: a seeded sample of
    each style's images (``SAMPLE_PER_STYLE``) embedded again."""
    ids = table.ids
    style_of = dict(zip(assignments["id"], assignments["style"]))
    labels = dataset.manifest["id"].map(style_of)
    rows = dataset.sample(SAMPLE_PER_STYLE, labels, seed=0)
    emb = embed(encoder, dataset.load_pixels(rows))
    which = np.array([table.names.index(style_of[i]) for i in rows["id"]])
    centroids, radii = [], []
    for s in range(len(ids)):
        members = emb[torch.from_numpy(np.flatnonzero(which == s))]
        if len(members) == 0:  # cannot happen for a complete table; keep the stored centroid
            centroids.append(table.centroids[s].float())
            radii.append(torch.tensor(1.0))
            continue
        centre = members.mean(0)
        centroids.append(centre)
        radii.append((members - centre).norm(dim=1).mean())
    return Previous(fingerprint, list(ids), list(table.names), list(table.sizes),
                    torch.stack(centroids),
                    torch.stack(radii), dict(table.retired))  # fmt: skip


def describe(rows: list[LineageRow]) -> str:
    """The lineage table as text for the log and the CLI."""
    lines = [f"{'style':<16} {'status':<9} {'before':>6} {'after':>6} {'shift':>6}  into"]
    for r in rows:
        lines.append(
            f"{r.style:<16} {r.status:<9} {_n(r.size_before):>6} {_n(r.size_after):>6} "
            f"{'-' if r.shift is None else f'{r.shift:.2f}':>6}  {r.into or ''}"
        )
    return "\n".join(lines)


def _n(value: int | None) -> str:
    return "-" if value is None else str(value)


def log_lineage(rows: list[LineageRow], previous: str) -> None:
    log.info("styles against dataset version %s:\n%s", previous, describe(rows))
