"""The sections of the configuration file, as pydantic models.

Every section rejects unknown keys (``Section``, in ``section_base``), so a typo fails when the
config is loaded instead of being silently ignored; the sections of generation, filtering and
projection are in ``output_sections``. Defaults here are what runs with no file at all. The
comment beside each field is its documentation: the README's config reference follows it.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

import yaml
from pydantic import Field, ValidationInfo, field_validator, model_validator

from ganpipe.config.masking import redact
from ganpipe.config.output_sections import (
    FilterConfig,
    GenerateConfig,
    ProjectConfig,
)
from ganpipe.config.section_base import (
    MAX_SEED,
    SECTION_NAMES,
    Section,
    options_for_selected,
)
from ganpipe.hashing import stable_hash

_LABELS = re.compile(r"^(dirs|none|column:[A-Za-z0-9_.\- ]+)$")


class StoreConfig(Section):
    root: str = "./ganpipe-runs"  # run store URI: a local path or s3://bucket/prefix
    storage_options: dict[str, Any] = Field(default_factory=dict)  # passed to fsspec


class DatasetConfig(Section):
    name: str = "demo"  # dataset name in the store
    sources: list[str] = Field(default_factory=lambda: ["demo"])  # folders, globs; demo=built-in
    labels: str = "dirs"  # dirs | column:<name> | none
    path_column: str = "path"  # column of a CSV/Parquet manifest that holds image paths
    storage_options: dict[str, Any] = Field(default_factory=dict)  # fsspec options for sources
    image_size: int = 32  # side of the square training images
    resize: Literal["center_crop", "pad", "stretch"] = "center_crop"
    background: tuple[int, int, int] = (255, 255, 255)  # transparency and padding colour
    min_size: int = 8  # smaller inputs are quarantined as too_small
    max_pixels: int = Field(50_000_000, ge=1)  # larger inputs are refused before decoding
    max_bytes: int = Field(200_000_000, ge=1)  # larger files are refused unread (too_large)
    workers: int = Field(0, ge=0)  # decoding threads; 0 = one per core
    shard_mb: float = Field(16, gt=0)  # pixels per shard file, in MB (bounds ingest memory)
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)  # share of images held out, by content hash
    demo_per_style: int = Field(64, ge=4)  # images per style of the built-in demo dataset

    @field_validator("name")
    @classmethod
    def _name_is_a_folder_name(cls, v: str) -> str:
        return _folder_name(v)

    @field_validator("sources")
    @classmethod
    def _some_sources(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("give at least one source (a folder, glob or 'demo')")
        return v

    @field_validator("labels")
    @classmethod
    def _labels_form(cls, v: str) -> str:
        if not _LABELS.match(v):
            raise ValueError("must be 'dirs', 'none' or 'column:<name>'")
        return v

    @field_validator("background")
    @classmethod
    def _rgb(cls, v: tuple[int, int, int]) -> tuple[int, int, int]:
        if any(not 0 <= c <= 255 for c in v):
            raise ValueError("must be three values from 0 to 255, e.g. [255, 255, 255]")
        return v

    @field_validator("image_size")
    @classmethod
    def _power_of_two(cls, v: int) -> int:
        if v < 8 or v > 1024 or v & (v - 1):
            raise ValueError("must be a power of two between 8 and 1024 (e.g. 32, 64, 128)")
        return v


class StyleConfig(Section):
    source: Literal["labels", "clusters"] = "clusters"  # data labels, or discover styles
    num_styles: int | Literal["auto"] = "auto"  # clusters; auto = best silhouette
    max_styles: int = Field(12, ge=2)  # upper bound when num_styles is auto
    encoder: str = "texture"  # registered style encoder
    encoder_options: dict[str, Any] = Field(default_factory=dict)
    exemplars: int = Field(8, ge=1)  # exemplar images kept per style
    seed: int = Field(0, ge=0, le=MAX_SEED)
    # style id -> the name users see, e.g. {style-3: watercolour}; kept through retrains
    names: dict[str, str] = Field(default_factory=dict)
    # clusters keep the previous dataset version's names when their centroid moved less than
    # this many times the style's own radius; 0 names them afresh (style-0, style-1, ...)
    match_limit: float = Field(1.0, ge=0)

    @field_validator("num_styles")
    @classmethod
    def _at_least_one(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v < 1:
            raise ValueError("must be at least 1, or 'auto'")
        return v


# Options the built-in networks train with unless a config says otherwise. They live here, not
# as the classes' defaults, because an exported model records only the options it was given:
# a model trained before a recommendation changed must still load as it was trained. Chosen
# by the quality benchmark (README, "Quality curves"): nearest-neighbour doubling cannot print
# the transposed convolution's checkerboard, and on photographs it reached a lower Frechet
# distance and a higher recall at equal compute.
RECOMMENDED_OPTIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("generator", "dcgan"): {"upsample": "nearest"},
}


class ModelConfig(Section):
    name: str | None = None  # model name in the store; default: the dataset name
    generator: str = "dcgan"  # registered generator
    discriminator: str = "dcgan"  # registered discriminator
    # the built-in dcgan generator gets upsample: nearest unless given (RECOMMENDED_OPTIONS)
    generator_options: dict[str, Any] = Field(default_factory=dict)
    discriminator_options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _recommended_options(self) -> ModelConfig:
        """Fill in the recommended options of the built-in networks the config names, each only
        where the config leaves it out (so the resolved config shows what trains)."""
        for kind in ("generator", "discriminator"):
            options = getattr(self, f"{kind}_options")
            recommended = RECOMMENDED_OPTIONS.get((kind, getattr(self, kind)), {})
            missing = {k: v for k, v in recommended.items() if k not in options}
            if missing:  # assigning re-runs this validator: only when something changes
                object.__setattr__(self, f"{kind}_options", {**options, **missing})
        return self

    @field_validator("name")
    @classmethod
    def _name_is_a_folder_name(cls, v: str | None) -> str | None:
        return None if v is None else _folder_name(v)


class TrainConfig(Section):
    loss: str = "nonsaturating"  # registered loss
    loss_options: dict[str, Any] = Field(default_factory=dict)
    # name -> options; the defaults keep each style from collapsing to one image on small data
    # (diversity, stopping at the data's own variety instead of paying for noise) and match
    # each style's samples to its images as a distribution, neither shrunk to the centroid nor
    # noisier than the data (style_moments): chosen by the quality benchmark (README,
    # "Quality curves")
    regularizers: dict[str, dict[str, Any]] = Field(
        default_factory=lambda: {
            "diversity": {"weight": 0.1, "target": "data"},
            "style_moments": {"weight": 3.0, "interval": 2},
        }
    )
    augmentations: dict[str, dict[str, Any]] = Field(default_factory=lambda: {"diffaugment": {}})
    steps: int = Field(1500, ge=1)  # optimisation steps (one D and one G update each)
    # wall-clock budget; whichever ends first. Off by default: a budget in steps gives the same
    # model on every machine, however busy (a clock would stop a loaded machine's run early)
    max_minutes: float | None = Field(None, gt=0)
    batch_size: int = Field(64, ge=1)
    seed: int = Field(0, ge=0, le=MAX_SEED)
    data_memory_mb: float = Field(2048, gt=0)  # training pixels held in memory; beyond, stream
    lr_g: float = Field(2e-4, gt=0)
    lr_d: float = Field(2e-4, gt=0)
    betas: tuple[float, float] = (0.5, 0.99)  # the optimiser's; each in [0, 1)
    # adam | adamw (decoupled weight decay); options besides lr and betas, e.g. weight_decay
    optimizer: Literal["adam", "adamw"] = "adam"
    optimizer_options: dict[str, float] = Field(default_factory=dict)
    ema_decay: float = Field(0.995, ge=0.0, lt=1.0)  # 0 disables the EMA generator
    # EMA warm-up, min(ema_decay, (1 + step) / (10 + step)); auto: on for warm starts only
    ema_rampup: bool | Literal["auto"] = "auto"
    grad_clip: float | None = Field(None, gt=0)  # max gradient norm per network; null: off
    checkpoint_every: int = Field(500, ge=1)  # steps between checkpoints
    log_every: int = Field(25, ge=1)  # steps between metric rows
    sample_every: int | None = Field(500, ge=1)  # steps between sample grids; null: end only
    resume: str = "auto"  # auto | never | a checkpoint URI
    # where the weights start: auto (scratch; champion in the retrain flow) | scratch |
    # champion | a model version URI (warm start: matched styles keep their rows)
    init: str = "auto"
    freeze_d_layers: int = Field(0, ge=0)  # FreezeD: the discriminator's first N layers stay
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 on CUDA, fp32 on CPU
    channels_last: bool | Literal["auto"] = "auto"  # auto: on (measured faster on CPU and CUDA)
    on_nonfinite: Literal["stop", "rollback"] = "stop"  # rollback: last checkpoint, lower LR
    rollback_lr_factor: float = Field(0.5, gt=0, lt=1)  # learning rates times this per rollback
    max_rollbacks: int = Field(3, ge=1)  # then stop as on_nonfinite: stop would
    tensorboard: bool = False  # also write metrics as TensorBoard events (pip install tensorboard)

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= b < 1.0 for b in v):
            raise ValueError("Adam's betas must each be at least 0 and below 1, e.g. [0.5, 0.99]")
        return v


class EvaluateConfig(Section):
    per_style: int = Field(64, ge=2)  # samples generated, and real images drawn, per style
    seed: int = Field(0, ge=0, le=MAX_SEED)  # first seed; sample i of every style uses seed + i
    # the pinned feature space of the headline figures and the retrain gate: a style encoder no
    # training touches (texture: seeded random weights), recorded by content hash
    space: str = "texture"
    space_options: dict[str, Any] = Field(default_factory=dict)  # e.g. {weights: path/URI}
    features: list[str] = Field(default_factory=list)  # extra feature spaces: style encoder names
    feature_options: dict[str, dict[str, Any]] = Field(default_factory=dict)  # name -> options

    @field_validator("feature_options")
    @classmethod
    def _options_name_features(cls, v: dict, info: ValidationInfo) -> dict:
        features = info.data.get("features", [])
        return options_for_selected(v, features, "feature spaces", "evaluate.features")


class RetrainConfig(Section):
    # metrics of `ganpipe evaluate` a challenger must not be worse on than the current model
    gate: list[str] = Field(default_factory=lambda: ["fd", "style_accuracy", "coverage"])
    tolerance: float = Field(0.05, ge=0)  # relative slack before a metric counts as worse
    RENAMED: ClassVar[dict[str, str]] = {"per_style": "enforce_per_style"}
    # per style too: a challenger worse beyond per_style_tolerance in any one style is kept
    # (per-style changes are always recorded in retrain.json; this makes them decide)
    enforce_per_style: bool = False
    per_style_tolerance: float = Field(0.2, ge=0)  # per-style figures rest on fewer images


class OrchestrationConfig(Section):
    # where chunk tasks run: Prefect's thread pool, or a Dask cluster (pip install prefect-dask)
    task_runner: Literal["threads", "dask"] = "threads"
    dask_address: str | None = None  # scheduler, e.g. tcp://10.0.0.5:8786; null: a local cluster
    dask_workers: int = Field(2, ge=1)  # processes of the local cluster when no address is given


class ReportConfig(Section):
    # a folder of .j2 templates that take precedence over the built-in ones (same names); they
    # are the team's own code and run as such. null: the built-in templates
    templates: str | None = None

    @field_validator("templates")
    @classmethod
    def _not_blank(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("give a folder of templates, or null for the built-in ones")
        return v


class ServeConfig(Section):
    host: str = "127.0.0.1"  # any other address needs token
    port: int = Field(8000, ge=0, le=65535)
    # bearer token for every API route: an ${ENV_VAR} reference, never the secret itself
    token: str | None = None
    max_count: int = Field(64, ge=1)  # images one generate request may ask for
    max_upload_mb: float = Field(10, gt=0)  # largest reference image upload

    @field_validator("token")
    @classmethod
    def _token_is_a_reference(cls, v: str | None) -> str | None:
        if v is not None and not (v.startswith("${") and v.endswith("}")):
            raise ValueError("give the token as an ${ENV_VAR} reference, never the secret")
        return v


class Config(Section):
    store: StoreConfig = Field(default_factory=StoreConfig)
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    style: StyleConfig = Field(default_factory=StyleConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    generate: GenerateConfig = Field(default_factory=GenerateConfig)
    filter: FilterConfig = Field(default_factory=FilterConfig)
    project: ProjectConfig = Field(default_factory=ProjectConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    retrain: RetrainConfig = Field(default_factory=RetrainConfig)
    orchestration: OrchestrationConfig = Field(default_factory=OrchestrationConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    plugins: list[str] = Field(default_factory=list)  # extra plugin modules, dotted names

    @property
    def model_name(self) -> str:
        return self.model.name or self.dataset.name

    def section_hash(self, *sections: str) -> str:
        """Hash of the named sections only, so unrelated edits don't invalidate results."""
        data = self.model_dump(mode="json")
        return stable_hash({s: data[s] for s in sections})

    def to_yaml(self) -> str:
        """The config as YAML with secrets masked: what is saved beside results and printed."""
        return yaml.safe_dump(redact(self.model_dump(mode="json")), sort_keys=False)


SECTION_NAMES.update(
    {
        field.annotation.__name__: name
        for name, field in Config.model_fields.items()
        if isinstance(field.annotation, type)
    }
)


def _folder_name(v: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]*", v) or ".." in v:
        raise ValueError("use letters, digits, '_', '-' and '.' only (it names a store folder)")
    return v
