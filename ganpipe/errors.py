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
        parts = [self.what.rstrip(".") + "."]
        if self.where:
            parts.append(f"Where: {self.where}.")
        if self.fix:
            parts.append(f"Fix: {self.fix.rstrip('.')}.")
        return " ".join(parts)


class ConfigError(GanpipeError):
    """The configuration is invalid; ``where`` names the key path."""


class PluginError(GanpipeError):
    """A plugin could not be loaded, or a component name is unknown or duplicated."""


class StoreError(GanpipeError):
    """The run store lacks something a stage needs, or cannot be written."""
