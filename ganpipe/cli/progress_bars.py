"""Stage progress as rich progress bars (the reporter ``ganpipe.progress`` calls)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class RateColumn(ProgressColumn):
    """Items per second, where a stage names its unit (``("img", 1)``: images, one per step)."""

    def render(self, task) -> Text:
        unit = task.fields.get("unit")
        if not unit or not task.speed:
            return Text("")
        return Text(f"{task.speed * unit[1]:,.0f} {unit[0]}/s", style="progress.data.speed")


class RichReporter:
    """Shows stage progress as rich progress bars, with a rate where a stage names its unit."""

    def __init__(self, console: Console):
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            RateColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.tasks: dict[str, Any] = {}

    def start(self, description: str, total: int | None, unit=None):
        if not self.progress.live.is_started:
            self.progress.start()
        task_id = self.progress.add_task(description, total=total, unit=unit)
        self.tasks[description] = task_id
        return lambda n=1: self.progress.advance(task_id, n)

    def finish(self, description: str) -> None:
        self.tasks.pop(description, None)

    def stop(self) -> None:
        if self.progress.live.is_started:
            self.progress.stop()
