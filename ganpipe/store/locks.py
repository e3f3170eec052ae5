"""The store lock: a lock file whose exclusive creation decides who holds it.

Two writers must never interleave a read-decide-write sequence on the same files (two ingests
placing the same dataset version, two promotions of a model). Taking the lock is an exclusive
create: ``O_CREAT|O_EXCL`` on a local (or NFSv3+) store, a conditional PUT (``If-None-Match: *``)
on S3 and stores that honour it (AWS S3, MinIO, moto); on other fsspec filesystems the create is
check-then-write and only best effort. The file records its holder, so a lock left by a dead
process of this machine, or whose lease expired, is broken by the next taker
(docs/architecture.md, "The store").
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ganpipe.errors import StoreError
from ganpipe.store.ownership import newest_change, owner_token, token_alive

if TYPE_CHECKING:
    from ganpipe.store.file_access import FileAccess

_HELD = threading.local()  # per thread: (store URI, lock path) -> nesting depth


@contextlib.contextmanager
def hold(store: FileAccess, rel: str, *, timeout: float, lease: float) -> Iterator[None]:
    """Hold the lock file ``rel`` while the block runs (see ``RunStore.lock``). Re-entrant
    within a thread: an inner hold of a lock the thread already has only counts."""
    key = (store.uri(), rel)
    held = _HELD.__dict__.setdefault("depth", {})
    if held.get(key):
        held[key] += 1
        try:
            yield
        finally:
            held[key] -= 1
        return
    body = {
        "owner": owner_token(),
        "id": uuid.uuid4().hex,
        "acquired": time.time(),
        "expires": time.time() + lease,
    }
    lock = LockFile(store, rel)
    lock.acquire(body, timeout)
    held[key] = 1
    try:
        yield
    finally:
        held.pop(key, None)
        lock.release(body)


class LockFile:
    """One lock file in one store: taking, reading, breaking and releasing it."""

    def __init__(self, store: FileAccess, rel: str):
        self.store, self.rel = store, rel

    def acquire(self, body: dict, timeout: float) -> None:
        """Create the file holding ``body``, waiting (with backoff) for a live holder and
        breaking a stale one; ``StoreError`` after ``timeout`` seconds."""
        deadline, delay = time.monotonic() + timeout, 0.02
        data = json.dumps(body).encode()
        while True:
            if self._create(data):
                return
            holder = self.holder()
            if holder is not None and holder.get("id") == body["id"]:
                return  # our create went through but its answer was lost, and a retry failed
            if holder is not None and self._stale(holder):
                self._break(holder)
                continue
            if time.monotonic() > deadline:
                raise self._timed_out(holder, timeout)
            time.sleep(delay)
            delay = min(delay * 2, 0.5)

    def release(self, body: dict) -> None:
        """Remove the file if it is still ours (a holder that outlived its lease may have
        lost it to another)."""
        holder = self.holder()
        if holder is not None and holder.get("id") == body["id"]:
            self._remove("release the lock")

    def holder(self) -> dict | None:
        """The holder's record; one being written right now (empty or cut) reads as a holder
        of unknown age, which is never judged stale."""
        try:
            with self.store.guarded("read the lock", self.rel):
                raw = self.store.fs.cat_file(self.store.path(self.rel))
        except FileNotFoundError:
            return None
        try:
            holder = json.loads(raw)
        except ValueError:
            return {}
        return holder if isinstance(holder, dict) else {}

    def _create(self, data: bytes) -> bool:
        store, target = self.store, self.store.path(self.rel)
        with store.guarded("take the lock", self.rel):
            try:
                if store.local:
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                    with os.fdopen(fd, "wb") as fh:
                        fh.write(data)
                        fh.flush()
                        os.fsync(fh.fileno())
                else:
                    store.fs.pipe_file(target, data, mode="create")
                return True
            except FileExistsError:
                return False

    def _stale(self, holder: dict) -> bool:
        if not holder.get("owner"):  # unreadable: stale only if nobody is still writing it
            changed = newest_change(self.store, self.rel)
            return changed is not None and time.time() - changed > 60
        alive = token_alive(holder["owner"])
        if alive is not None:
            return not alive
        return time.time() > float(holder.get("expires", float("inf")))

    def _break(self, holder: dict) -> None:
        # Re-read right before deleting: if someone else broke it and took it meanwhile, the
        # record differs and theirs stands. (The window between read and delete remains.)
        if self.holder() == holder:
            self._remove("break the lock")

    def _remove(self, action: str) -> None:
        with contextlib.suppress(FileNotFoundError), self.store.guarded(action, self.rel):
            self.store.fs.rm(self.store.path(self.rel))

    def _timed_out(self, holder: dict | None, timeout: float) -> StoreError:
        who = (holder or {}).get("owner", "an unknown writer")
        since = (holder or {}).get("acquired")
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if since else "?"
        return StoreError(
            f"{self.store.uri(self.rel)} is held by {who} since {when}; waited {timeout:.0f} s",
            where="run store lock",
            fix="wait for the other run to finish; if it is gone, delete the lock file",
        )
