"""What the lock and the leftover sweep need of a store, as a protocol.

``locks`` and ``ownership`` sit below ``run_store`` (it calls them); they take any object with
these members, ``RunStore`` among them, so neither imports the class that imports them
(docs/architecture.md, "Layers").
"""

from __future__ import annotations

import contextlib
from typing import Any, Protocol


class FileAccess(Protocol):
    fs: Any  # an fsspec filesystem
    local: bool

    def path(self, *parts: str) -> str:
        """The filesystem path of ``parts`` under the root."""

    def uri(self, *parts: str) -> str:
        """The URI of ``parts`` for people and messages."""

    def guarded(
        self, action: str, rel: str, missing_is_error: bool = False
    ) -> contextlib.AbstractContextManager[None]:
        """Storage failures inside the block become ``StoreError``s naming ``action``."""

    def all_names(self, *parts: str) -> list[str]:
        """Every name directly under a folder, working files included."""
