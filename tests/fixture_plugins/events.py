"""Observes training through the event hooks; can simulate a crash at a given step."""

from ganpipe import hookimpl

SEEN = {"steps": [], "checkpoints": [], "batches": []}
CRASH_AT = {"step": None}


class SimulatedCrash(Exception):
    pass


@hookimpl
def ganpipe_train_step_end(state, metrics):
    SEEN["steps"].append(state.step)
    if CRASH_AT["step"] is not None and state.step == CRASH_AT["step"]:
        raise SimulatedCrash(f"crash at step {state.step}")


@hookimpl
def ganpipe_checkpoint_saved(uri, state):
    SEEN["checkpoints"].append(uri)


@hookimpl
def ganpipe_batch_generated(batch):
    SEEN["batches"].append(batch)
