"""User-facing errors.

Every failure a user can cause (bad config, missing data, unknown plugin name) is raised as a
``GanpipeError`` carrying what went wrong, where, and how to fix it, so the CLI can print one
paragraph instead of a traceback from deep inside a library.
"""

from __future__ import annotations


class GanpipeError(Exception):
    """An error the user can act on."""

    def __init__(self, what: str, *, where: str | None = None, fix: str | None = None):
        self.what = what
        self.where = where
        self.fix = fix
        super().__init__(self.message)

    @property
    def message(self) -> str:
        parts = [_clip(self.what).rstrip(".") + "."]
        if self.where:
            parts.append(f"Where: {_clip(self.where)}.")
        if self.fix:
            parts.append(f"Fix: {_clip(self.fix).rstrip('.')}.")
        return " ".join(parts)


MAX_PART = 600  # characters of each part of a message: a value pasted in can be any length


def _clip(text: str) -> str:
    """``text``, with the middle of anything longer than ``MAX_PART`` cut out and counted, so
    a 100,000-character value gives a readable paragraph, not a screenful."""
    text = str(text)
    if len(text) <= MAX_PART:
        return text
    half = MAX_PART // 2
    return f"{text[:half]} [... {len(text) - 2 * half} characters ...] {text[-half:]}"


class ConfigError(GanpipeError):
    """The configuration is invalid; ``where`` names the key path."""


class PluginError(GanpipeError):
    """A plugin could not be loaded, or a component name is unknown or duplicated."""


class StoreError(GanpipeError):
    """The run store lacks something a stage needs, or cannot be written."""
