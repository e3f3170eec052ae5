"""Records, per torchrun rank, a hash of the final generator weights and each checkpoint
saved, in the folder named by GANPIPE_TEST_RANK_DIR."""

import hashlib
import os

from ganpipe import hookimpl


def _path(kind):
    return os.path.join(os.environ["GANPIPE_TEST_RANK_DIR"], f"{kind}-{os.environ['RANK']}.txt")


@hookimpl
def ganpipe_train_step_end(state, metrics):
    if state.step == state.config.train.steps:
        digest = hashlib.sha256()
        for tensor in state.generator.state_dict().values():
            digest.update(tensor.detach().cpu().numpy().tobytes())
        with open(_path("weights"), "w") as fh:
            fh.write(digest.hexdigest())


@hookimpl
def ganpipe_checkpoint_saved(uri, state):
    with open(_path("saved"), "a") as fh:
        fh.write(uri + "\n")
