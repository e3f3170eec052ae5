"""Progress for long stages, decoupled from how it is shown.

Stages report through ``step(description, total)``; the CLI installs a rich progress display,
tests and notebooks get nothing (or their own reporter). Stages never import rich themselves.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

log = logging.getLogger("ganpipe")


class Reporter(Protocol):
    def start(
        self, description: str, total: int | None, unit: tuple[str, float] | None = None
    ) -> Callable[[int], None]: ...

    def finish(self, description: str) -> None: ...


_reporter: Reporter | None = None


def set_reporter(reporter: Reporter | None) -> None:
    global _reporter
    _reporter = reporter


def current_reporter() -> Reporter | None:
    return _reporter


@contextmanager
def step(
    description: str, total: int | None = None, unit: tuple[str, float] | None = None
) -> Iterator[Callable[[int], None]]:
    """``with step("training", total=steps, unit=("img", batch)) as advance: ... advance(1)``

    ``unit`` names what a reporter should show a rate of, and how many of them one step is
    (training counts steps but people compare images per second)."""
    reporter = _reporter
    if reporter is None:
        yield lambda n=1: None
        return
    advance = reporter.start(description, total, unit)
    try:
        yield advance
    finally:
        reporter.finish(description)
