"""Kills its own process (SIGKILL: no cleanup, no ``finally``) at a chosen point, like a power cut
or the OOM killer. Chosen by the environment of the process that loads it:

``GANPIPE_CRASH=step:<n>``            at the end of training step n;
``GANPIPE_CRASH=write:<text>:<n>``    before the n-th store write whose path contains <text>;
``GANPIPE_CRASH=partial:<text>:<n>``  in the middle of that write: half its bytes are in the
                                      writer's temporary file, never renamed into place;
``GANPIPE_BEACON=<file>``             each training step is appended to this file.
"""

import os
import signal

from ganpipe import hookimpl

_INSTALLED = []


def _die():
    os.kill(os.getpid(), signal.SIGKILL)


def _spec():
    kind, _, rest = os.environ.get("GANPIPE_CRASH", "").partition(":")
    return kind, rest


@hookimpl
def ganpipe_configure(config):
    kind, rest = _spec()
    if kind not in ("write", "partial") or _INSTALLED:
        return
    from ganpipe.store import RunStore, claim_working_name

    text, _, nth = rest.rpartition(":")
    original = RunStore.write_bytes
    seen = [0]

    def write_bytes(self, rel, data):
        if text in rel:
            seen[0] += 1
            if seen[0] == int(nth):
                if kind == "partial" and self.local:
                    target = self.path(rel)
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    name = claim_working_name(f"{os.path.basename(target)}.tmp-")
                    with open(os.path.join(os.path.dirname(target), name), "wb") as fh:
                        fh.write(bytes(data)[: max(1, len(data) // 2)])
                        fh.flush()
                        os.fsync(fh.fileno())
                _die()
        return original(self, rel, data)

    RunStore.write_bytes = write_bytes
    _INSTALLED.append(True)


@hookimpl
def ganpipe_train_step_end(state, metrics):
    beacon = os.environ.get("GANPIPE_BEACON")
    if beacon:
        with open(beacon, "a") as fh:
            fh.write(f"{state.step}\n")
    kind, rest = _spec()
    if kind == "step" and state.step == int(rest):
        _die()
