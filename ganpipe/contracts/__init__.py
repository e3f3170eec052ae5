"""What every kind of plugin component must provide, stated once as ``typing.Protocol``\\ s.

Why: ganpipe calls components from plugins it has never seen, and its own built-ins are
registered the same way (``ganpipe.builtin``). Each protocol below is the contract for one kind
of component: the members it must have, and in its docstring the shapes, ranges and return
values ganpipe relies on. ``Registry.create`` checks every component it builds against its
kind's protocol (``CONTRACTS``), so a plugin that forgot a method is refused at once with an
error naming the component, the plugin, the hook and the missing member, instead of failing deep
inside a training loop.

A check looks at members only: it never calls them (generators are torch modules, and calling
one costs a forward pass). Shapes and values are checked, where cheap, by the stage that calls
the component.

Optional capabilities (a loss's own penalty, a regulariser's ``bind``, a generator's
conditioning or mapping network, a style encoder's ``fit``) are protocols of their own; stages
ask ``supports(obj, Protocol)`` rather than probing with ``getattr``.

Nothing here imports torch at run time: annotations are strings, imports are for type checkers.

The package: ``protocols`` (the contracts), ``kinds`` (one record per component kind: its
hook, config key and contract; ``KINDS`` and ``CONTRACTS``), ``checks`` (``supports``,
``missing``), and ``contexts``: what a component is handed at run time (``FilterContext`` for
quality filters, ``TrainingContext`` for ``bind``, ``TrainState`` for event hooks). The
contexts live here, beside the contracts that name them, and not in the stages that build
them, so that neither a plugin nor a lower layer imports a stage (docs/architecture.md,
"Layers"). They are imported from ``ganpipe.contracts.contexts`` (that module needs torch;
this one does not).
"""

from __future__ import annotations

from ganpipe.contracts.checks import members, missing, style_embedding_dim, supports
from ganpipe.contracts.kinds import CONTRACTS, KINDS, ComponentKind
from ganpipe.contracts.protocols import (
    Adaptive,
    Augmentation,
    BatchInfo,
    Bindable,
    ComponentFactory,
    ConditionalGenerator,
    Discriminator,
    DiscriminatorPenalty,
    FeatureDiscriminator,
    Generator,
    LogitPenalty,
    Loss,
    MappedGenerator,
    MixingGenerator,
    NoiseInputs,
    QualityFilter,
    Regulariser,
    ReportsMetrics,
    Source,
    Stateful,
    StyleEncoder,
    TrainableStyleEncoder,
)

__all__ = [
    "CONTRACTS",
    "KINDS",
    "ComponentKind",
    "Adaptive",
    "Augmentation",
    "BatchInfo",
    "Bindable",
    "ComponentFactory",
    "ConditionalGenerator",
    "Discriminator",
    "FeatureDiscriminator",
    "DiscriminatorPenalty",
    "Generator",
    "LogitPenalty",
    "Loss",
    "MappedGenerator",
    "MixingGenerator",
    "NoiseInputs",
    "QualityFilter",
    "Regulariser",
    "ReportsMetrics",
    "Source",
    "Stateful",
    "StyleEncoder",
    "TrainableStyleEncoder",
    "members",
    "missing",
    "supports",
    "style_embedding_dim",
]
