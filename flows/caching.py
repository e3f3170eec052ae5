"""Task caching keyed on content, not on run ids.

A stage task's cache key is a hash of its parameters: the config and the records of the stages
before it, which carry content fingerprints (dataset fingerprint, model version, batch id). The
same data and config therefore give the same key on any later run, and a finished task is not run
again. Prefect's cache knows nothing of the run store, so the flow checks the stage's output is
still there before trusting the cache; if someone deleted it, the task runs and refreshes it.

Stage records travel between tasks as their dataclasses (``IngestResult``, ``TrainResult``...):
Prefect persists task results with its default pickle serializer, so a cached result comes back
as the same dataclass. The key reads the records' identity fields by name, here and only here
(docs/architecture.md, "Orchestration").
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from typing import Any

from ganpipe.hashing import stable_hash
from ganpipe.store import RunStore

CACHED = dict(persist_result=True)
# What names an upstream stage's output; timings and counts in its record are not identity.
_IDENTITY = ("fingerprint", "encoder", "uri", "version", "batch_id")
# Part of every key. Results cached when tasks passed records as plain dicts must not come back
# where a dataclass is expected, so keys from that time no longer match.
_RECORDS = "dataclasses"


def identity(record: Any) -> dict[str, Any]:
    """The fields of a stage record (a dataclass) that name its output in the store."""
    return {f.name: getattr(record, f.name) for f in fields(record) if f.name in _IDENTITY}


def content_key(context, parameters: dict[str, Any]) -> str:
    """Prefect ``cache_key_fn``: task name + hash of the config, the other plain parameters and
    the identity of every upstream record the task reads."""
    keyed = {
        name: identity(v) if is_dataclass(v) and not isinstance(v, type) else v
        for name, v in parameters.items()
    }
    return f"ganpipe-{context.task.name}-{stable_hash([_RECORDS, keyed], length=24)}"


def run_cached(task, store: RunStore, marker: str | None, **parameters):
    """Run ``task``, reusing its cached result only while ``marker`` (a store path the stage
    writes last) exists."""
    fresh = marker is None or not store.exists(marker)
    return task.with_options(refresh_cache=fresh)(**parameters)
