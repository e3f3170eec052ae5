"""Records, per torchrun rank, a hash of the final generator weights, a hash of the state of
every stateful training component (ADA's strength, LeCam's anchors, style_moments' statistics)
and each checkpoint saved, in the folder named by GANPIPE_TEST_RANK_DIR."""

import hashlib
import os

import torch

from ganpipe import hookimpl


def _path(kind):
    return os.path.join(os.environ["GANPIPE_TEST_RANK_DIR"], f"{kind}-{os.environ['RANK']}.txt")


def _update(digest, value):
    if isinstance(value, torch.Tensor):
        digest.update(value.detach().cpu().numpy().tobytes())
    else:
        digest.update(repr(float(value)).encode())


@hookimpl
def ganpipe_train_step_end(state, metrics):
    if state.step == state.config.train.steps:
        digest = hashlib.sha256()
        for tensor in state.generator.state_dict().values():
            _update(digest, tensor)
        with open(_path("weights"), "w") as fh:
            fh.write(digest.hexdigest())
        lines = []
        for key, component in sorted(state.components.items()):
            if hasattr(component, "state_dict"):
                digest = hashlib.sha256()
                for name, value in sorted(component.state_dict().items()):
                    digest.update(name.encode())
                    _update(digest, value)
                lines.append(f"{key} {digest.hexdigest()}")
        with open(_path("components"), "w") as fh:
            fh.write("\n".join(lines))


@hookimpl
def ganpipe_checkpoint_saved(uri, state):
    with open(_path("saved"), "a") as fh:
        fh.write(uri + "\n")
