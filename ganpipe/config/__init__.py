"""The one configuration file, validated up front.

Every section rejects unknown keys, and every error names the key path (``train.steps``), so a
typo fails in the first second instead of an hour into training. With no file at all the
defaults run the built-in demo dataset end to end.

The package is split by what changes together: ``sections`` (the pydantic models, one per
section; those of generation, filtering and projection in ``output_sections``, what all share
in ``section_base``), ``loading`` (YAML, ``--set`` overrides, error messages) and ``masking``
(secrets and ``${ENV_VAR}`` references). Everything is re-exported here, so callers import from
``ganpipe.config`` only. It imports neither torch nor prefect: the CLI loads it for ``--help``.
"""

from __future__ import annotations

from ganpipe.config.loading import (
    MAX_DEPTH,
    MAX_VALUES,
    apply_overrides,
    load_config,
    parse_override,
    templates_folder,
    validate_config,
)
from ganpipe.config.masking import masked_secrets, redact, resolve_env_refs
from ganpipe.config.output_sections import (
    DEFAULT_FILTERS,
    FilterConfig,
    GenerateConfig,
    InterpolateConfig,
    MixingConfig,
    ProjectConfig,
    StyleRef,
)
from ganpipe.config.section_base import Section
from ganpipe.config.sections import (
    Config,
    DatasetConfig,
    EvaluateConfig,
    ModelConfig,
    OrchestrationConfig,
    ReportConfig,
    RetrainConfig,
    StoreConfig,
    StyleConfig,
    TrainConfig,
)

__all__ = [
    "DEFAULT_FILTERS",
    "MAX_DEPTH",
    "MAX_VALUES",
    "Config",
    "DatasetConfig",
    "EvaluateConfig",
    "FilterConfig",
    "GenerateConfig",
    "ProjectConfig",
    "InterpolateConfig",
    "MixingConfig",
    "ModelConfig",
    "OrchestrationConfig",
    "ReportConfig",
    "RetrainConfig",
    "Section",
    "StoreConfig",
    "StyleConfig",
    "StyleRef",
    "TrainConfig",
    "apply_overrides",
    "load_config",
    "masked_secrets",
    "parse_override",
    "redact",
    "resolve_env_refs",
    "templates_folder",
    "validate_config",
]
