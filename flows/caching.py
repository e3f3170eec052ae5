"""Task caching keyed on content, not on run ids.

A stage task's cache key is a hash of its parameters: the config and the records of the stages
before it, which carry content fingerprints (dataset fingerprint, model version, batch id). The
same data and config therefore give the same key on any later run, and a finished task is not run
again. Prefect's cache knows nothing of the run store, so the flow checks the stage's output is
still there before trusting the cache; if someone deleted it, the task runs and refreshes it.
"""

from __future__ import annotations

from typing import Any

from ganpipe.hashing import stable_hash
from ganpipe.store import RunStore

CACHED = dict(persist_result=True)
# What names an upstream stage's output; timings and counts in its record are not identity.
_IDENTITY = ("fingerprint", "encoder", "uri", "version", "batch_id")


def content_key(context, parameters: dict[str, Any]) -> str:
    """Prefect ``cache_key_fn``: task name + hash of the config and the identity of every
    upstream record the task reads."""
    keyed = {
        name: {k: v[k] for k in _IDENTITY if k in v} if isinstance(v, dict) and name != "config"
        else v
        for name, v in parameters.items()
    }  # fmt: skip
    return f"ganpipe-{context.task.name}-{stable_hash(keyed, length=24)}"


def run_cached(task, store: RunStore, marker: str | None, **parameters):
    """Run ``task``, reusing its cached result only while ``marker`` (a store path the stage
    writes last) exists."""
    fresh = marker is None or not store.exists(marker)
    return task.with_options(refresh_cache=fresh)(**parameters)
