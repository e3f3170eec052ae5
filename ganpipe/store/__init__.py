"""The run store: every stage reads its inputs from here and writes its results here.

The names stages need are re-exported, so ``from ganpipe.store import RunStore`` is the one
import a stage needs; where each result lives is ``ganpipe.store.layout``. The package's modules
are mapped in docs/architecture.md, "The store".
"""

from ganpipe.store.errors import StoreDataError, StoreIOError, StoreUnavailable, is_transient
from ganpipe.store.ownership import (
    claim_working_name,
    is_working_name,
    owner_alive,
    owner_token,
    release_working_name,
    working_name,
)
from ganpipe.store.run_store import RunStore, read_uri

__all__ = [
    "RunStore",
    "StoreDataError",
    "StoreIOError",
    "StoreUnavailable",
    "claim_working_name",
    "is_transient",
    "is_working_name",
    "owner_alive",
    "owner_token",
    "read_uri",
    "release_working_name",
    "working_name",
]
