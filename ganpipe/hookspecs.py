"""Every hook a ganpipe plugin can implement.

A plugin is a module (or object) with functions named like the hooks below, decorated with
``ganpipe.hookimpl``. It is found through the ``ganpipe`` entry-point group of an installed
package, or named by dotted module path under ``plugins:`` in the config. ganpipe's own built-in
components register through these same hooks (``ganpipe.builtin``): no component is special.

Registration hooks return a mapping ``name -> factory``. Every plugin's mapping is collected; a
name supplied twice is an error that names both plugins. Factories are called with the keyword
options the config gives for that component (e.g. ``train.loss_options``) plus the arguments
listed in each hook's docstring, and should raise ``TypeError`` or ``ValueError`` for bad
options: ganpipe turns those into a config error naming the key. What a factory must return is
the protocol of its kind in ``ganpipe/contracts/``; the registry checks it once, when the
component is created, and refuses one that lacks a member with an error naming the plugin.

Event hooks observe the pipeline; their return values are ignored, and an exception raised in
one becomes a ``PluginError`` naming the plugin and the hook.

Types are imported for type checkers only, so loading plugins never imports torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import pluggy

from ganpipe.contracts.kinds import KINDS, ComponentKind

if TYPE_CHECKING:
    from ganpipe import contracts
    from ganpipe.config import Config
    from ganpipe.contracts import ComponentFactory
    from ganpipe.contracts.contexts import TrainState

hookspec = pluggy.HookspecMarker("ganpipe")


# -------------------------------------------------------------------------------------------
# Registration hooks: components chosen by name in the config. One per component kind, built
# from its record in ganpipe.contracts.kinds (hook name, config key, contract, documentation),
# so the registry, the contract check and these specifications cannot disagree.
# -------------------------------------------------------------------------------------------


def _registration_hook(kind: ComponentKind):
    def hook() -> Mapping[str, ComponentFactory]: ...

    hook.__name__ = hook.__qualname__ = kind.hook
    hook.__doc__ = kind.docstring
    hook.__module__ = __name__
    return hookspec(hook)


for _kind in KINDS.values():
    globals()[_kind.hook] = _registration_hook(_kind)
del _kind


# -------------------------------------------------------------------------------------------
# Event hooks: observe the pipeline
# -------------------------------------------------------------------------------------------


@hookspec
def ganpipe_configure(config: Config) -> None:
    """Called once after the config is validated and all plugins are loaded, before any stage
    runs.

    Args:
        config: the validated config; read it, or raise ``ganpipe.errors.ConfigError`` to
            refuse it.
    """


@hookspec
def ganpipe_train_step_end(state: TrainState, metrics: dict[str, float]) -> None:
    """Called every ``train.log_every`` steps and at the last one, on every rank of a
    distributed run (``torchrun``).

    Args:
        state: the training state (``step``, ``generator``, ``discriminator``, ``ema``,
            ``config``, and ``components``: the run's augmentations and regularisers by
            ``"kind:name"``); read it, do not replace its members.
        metrics: the figures just logged (losses, penalties, timings), by name.
    """


@hookspec
def ganpipe_checkpoint_saved(uri: str, state: TrainState) -> None:
    """Called after a checkpoint has been written completely (by rank 0 of a distributed run).

    Args:
        uri: where the checkpoint is.
        state: the training state at that step, as in ``ganpipe_train_step_end``.
    """


@hookspec
def ganpipe_batch_generated(batch: contracts.BatchInfo) -> None:
    """Called after a generation batch's images and manifest are written.

    Args:
        batch: the batch's id, folder URI, model, image count and the like
            (``contracts.BatchInfo``).
    """
