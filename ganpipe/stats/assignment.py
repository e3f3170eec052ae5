"""Minimum-cost one-to-one assignment (the Hungarian method), for matching styles across
dataset versions.

A few dozen styles at most, so the O(n³) shortest-augmenting-path form with row and column
potentials is plenty, and it keeps scipy out of ganpipe's dependencies.
"""

from __future__ import annotations

import math


def assign(cost: list[list[float]]) -> list[tuple[int, int]]:
    """Pairs ``(row, column)`` with the least total cost, one per row or column, whichever are
    fewer (a rectangular matrix leaves the surplus unpaired). Costs must be finite."""
    rows = len(cost)
    cols = len(cost[0]) if rows else 0
    if rows == 0 or cols == 0:
        return []
    if any(len(r) != cols for r in cost):
        raise ValueError("every row of the cost matrix must have the same length")
    if rows > cols:  # the method below pairs every row; transpose so rows are the fewer
        return sorted((r, c) for c, r in assign([list(col) for col in zip(*cost)]))
    # u, v: potentials; owner[j]: the row paired with column j (1-based, 0 = none), with a
    # virtual column 0 that each new row starts from.
    u, v = [0.0] * (rows + 1), [0.0] * (cols + 1)
    owner, way = [0] * (cols + 1), [0] * (cols + 1)
    for row in range(1, rows + 1):
        _add_row(row, cost, u, v, owner, way)
    return sorted((owner[j] - 1, j - 1) for j in range(1, cols + 1) if owner[j])


def _add_row(row: int, cost, u: list, v: list, owner: list, way: list) -> None:
    """Pair one more row: grow a shortest augmenting path (Dijkstra on reduced costs) to a free
    column, moving the potentials so every reduced cost stays non-negative, then flip it."""
    cols = len(v) - 1
    owner[0], j0 = row, 0
    slack, used = [math.inf] * (cols + 1), [False] * (cols + 1)
    while owner[j0]:
        used[j0] = True
        i0, delta, j1 = owner[j0], math.inf, 0
        for j in range(1, cols + 1):
            if used[j]:
                continue
            reduced = cost[i0 - 1][j - 1] - u[i0] - v[j]
            if reduced < slack[j]:
                slack[j], way[j] = reduced, j0
            if slack[j] < delta:
                delta, j1 = slack[j], j
        for j in range(cols + 1):
            if used[j]:
                u[owner[j]] += delta
                v[j] -= delta
            else:
                slack[j] -= delta
        j0 = j1
    while j0:  # flip the augmenting path back to the start
        j1 = way[j0]
        owner[j0] = owner[j1]
        j0 = j1
