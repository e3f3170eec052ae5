"""Long stages show their progress in the Prefect UI as progress artifacts.

Stages report through ``ganpipe.progress.step``; inside a task this reporter turns each step
into a progress artifact, updated at most every few seconds (each update is an API call).
"""

from __future__ import annotations

import time
from contextlib import contextmanager

from ganpipe import progress

UPDATE_SECONDS = 5.0


class ArtifactReporter:
    def start(self, description: str, total: int | None, unit=None):
        from prefect.artifacts import create_progress_artifact, update_progress_artifact

        if not total:
            return lambda n=1: None
        artifact = create_progress_artifact(0.0, description=description)
        done, last = [0], [time.monotonic()]

        def advance(n: int = 1) -> None:
            done[0] += n
            now = time.monotonic()
            if now - last[0] >= UPDATE_SECONDS or done[0] >= total:
                last[0] = now
                update_progress_artifact(artifact, min(100.0, 100.0 * done[0] / total))

        return advance

    def finish(self, description: str) -> None:
        pass


@contextmanager
def progress_artifacts():
    """Report stage progress as artifacts unless a reporter (the CLI's bars) is installed."""
    if progress.current_reporter() is not None:
        yield
        return
    progress.set_reporter(ArtifactReporter())
    try:
        yield
    finally:
        progress.set_reporter(None)
