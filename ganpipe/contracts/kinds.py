"""One record per kind of component: its registration hook, the config key that names one, its
contract, and what its factories receive and return.

Everything that knows about a kind reads this record: the registry (which hook to collect, which
key to name in an error), the contract check, the registration hook specifications
(``ganpipe.hookspecs`` builds them from these records, docstrings included) and the docs. Adding
a kind is one entry here and a hookimpl in ``ganpipe.builtin``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ganpipe.contracts.protocols import (
    Augmentation,
    Discriminator,
    Generator,
    Loss,
    QualityFilter,
    Regulariser,
    Source,
    StyleEncoder,
)


@dataclass(frozen=True)
class ComponentKind:
    name: str  # as the registry and errors name it, e.g. "quality_filter"
    hook: str  # the registration hook, e.g. "ganpipe_quality_filters"
    config_key: str  # the config key that chooses one
    contract: type  # the protocol what a factory builds must satisfy
    registers: str  # what the hook registers, for its docstring
    called_as: str  # how each factory is called
    returns: str  # what each factory returns, beyond the contract

    @property
    def docstring(self) -> str:
        """The registration hook's documentation, from this record."""
        return (
            f"Register {self.registers} (config ``{self.config_key}``).\n\n"
            "Returns:\n    Name to factory, or an empty mapping. Each factory is called as "
            f"``{self.called_as}`` and returns a ``contracts.{self.contract.__name__}``"
            f"{self.returns}\n"
        )


_ALL = (
    ComponentKind("generator", "ganpipe_generators", "model.generator", Generator,
                  "generator architectures", "factory(num_styles=int, image_size=int, **options)",
                  " (a ``torch.nn.Module``), optionally also a ``ConditionalGenerator`` / "
                  "``MappedGenerator`` / ``MixingGenerator`` for blends, truncation and style "
                  "mixing. Its options must be JSON-serialisable: they are saved beside the "
                  "exported weights."),
    ComponentKind("discriminator", "ganpipe_discriminators", "model.discriminator",
                  Discriminator, "discriminator architectures",
                  "factory(num_styles=int, image_size=int, **options)",
                  " (a ``torch.nn.Module``)."),
    ComponentKind("loss", "ganpipe_losses", "train.loss", Loss, "adversarial losses",
                  "factory(**options)", "; one that also satisfies "
                  "``contracts.DiscriminatorPenalty`` has its penalty added to the "
                  "discriminator's objective."),
    ComponentKind("regularizer", "ganpipe_regularizers", "train.regularizers", Regulariser,
                  "training regularisers (``{name: options}``)", "factory(**options)",
                  "; one that also satisfies ``contracts.Bindable`` is bound to the run's "
                  "styles before training."),
    ComponentKind("augmentation", "ganpipe_augmentations", "train.augmentations",
                  Augmentation, "differentiable augmentations applied to real and fake images "
                  "alike (``{name: options}``)", "factory(**options)", "."),
    ComponentKind("style_encoder", "ganpipe_style_encoders", "style.encoder", StyleEncoder,
                  "style encoders (also ``evaluate.features``)",
                  "factory(image_size=int, **options)", " (a ``torch.nn.Module``); one that "
                  "learns from the data also satisfies ``contracts.TrainableStyleEncoder``."),
    ComponentKind("quality_filter", "ganpipe_quality_filters", "filter.filters",
                  QualityFilter, "quality filters", "factory(**options)",
                  ", scored on a ``ganpipe.contracts.contexts.FilterContext``."),
    ComponentKind("source", "ganpipe_sources", "dataset.sources", Source,
                  "dataset sources, keyed by URI scheme (``s3``, ``file``) or file suffix "
                  "(``.csv``): the first match of suffix, then scheme, handles an entry",
                  "factory(uri=str, config=DatasetConfig, storage_options=dict)",
                  ": an iterable of ``ganpipe.data.source_listing.SourceItem``."),
)  # fmt: skip

#: Every component kind by name, in the order ``ganpipe plugins`` lists them.
KINDS: dict[str, ComponentKind] = {kind.name: kind for kind in _ALL}

#: The contract of each component kind (derived from ``KINDS``).
CONTRACTS: dict[str, type] = {name: kind.contract for name, kind in KINDS.items()}
