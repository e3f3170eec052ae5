"""The sections of what comes out of a trained model: ``generate``, ``filter`` and
``project`` (and the ``mixing`` and ``interpolate`` parts of ``generate``)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from ganpipe.config.section_base import MAX_SEED, Section, options_for_selected

_KEEP = re.compile(r"^(pass|top_k:[1-9][0-9]*)$")

StyleRef = int | str  # a style by name, or by index in the model's style table


class MixingConfig(Section):
    style: StyleRef | None = None  # style whose code drives the fine levels; null: the sample's
    seed: int | None = Field(
        None, ge=0, le=MAX_SEED
    )  # latent for the fine levels; null: the sample's own
    crossover: int = Field(2, ge=0)  # first level (4x4 = 0, 8x8 = 1, ...) taking the mixing code


class InterpolateConfig(Section):
    styles: list[StyleRef] = Field(default_factory=list, max_length=2)  # [from, to]; one: held
    seeds: list[int] = Field(default_factory=list, max_length=2)  # [from, to]; one: held
    frames: int = Field(8, ge=2, le=1000)
    frame_ms: int = Field(100, ge=10)  # duration of each frame of the animated GIF

    @field_validator("seeds")
    @classmethod
    def _non_negative(cls, v: list[int]) -> list[int]:
        if any(not 0 <= s <= MAX_SEED for s in v):
            raise ValueError(f"seeds must be from 0 to {MAX_SEED}")
        return v


class GenerateConfig(Section):
    per_style: int = Field(16, ge=1)  # samples generated per style
    counts: dict[StyleRef, int] = Field(default_factory=dict)  # style -> samples (overrides)
    styles: list[StyleRef] = Field(default_factory=list)  # styles to generate; empty: all
    seed: int = Field(0, ge=0, le=MAX_SEED)  # first seed; sample i of every style uses seed + i
    seeds: list[int] | None = None  # explicit seeds for every style, instead of seed + i
    truncation: float = Field(1.0, ge=0.0, le=1.0)  # psi: 1 = off, 0 = the style's mean image
    mixing: MixingConfig | None = None  # style mixing (generators with per-level codes)
    interpolate: InterpolateConfig | None = None  # frames between two styles and/or seeds
    reference: list[str] = Field(default_factory=list)  # reference images (paths or URIs)
    reference_temperature: float = Field(0.1, gt=0)  # blend of styles near the reference
    around: str | None = None  # a projected code (.npz from `ganpipe project`): its variations
    spread: float = Field(0.3, ge=0.0, le=1.0)  # how far variations go: 0 = the code itself
    format: Literal["png", "webp", "jpeg"] = "png"
    quality: int = Field(95, ge=1, le=100)  # for webp and jpeg
    png_level: int = Field(6, ge=0, le=9)  # PNG compression: 1 fastest, 9 smallest
    batch_size: int = Field(256, ge=1)  # images rendered per step (in passes of fixed size)
    chunk_size: int = Field(1024, ge=1)  # images per chunk (a unit of work and of resumption)
    workers: int = Field(0, ge=0)  # threads encoding and writing images; 0 = automatic
    threads: int = Field(0, ge=0)  # torch threads rendering; 0 = all cores but one (it encodes)

    @field_validator("counts")
    @classmethod
    def _counts_non_negative(cls, v: dict) -> dict:
        if any(n < 0 for n in v.values()):
            raise ValueError("counts must be >= 0")
        return v

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (not v or any(not 0 <= s <= MAX_SEED for s in v)
                              or len(set(v)) != len(v)):  # fmt: skip
            raise ValueError(f"give distinct seeds from 0 to {MAX_SEED} (or null for seed + i)")
        return v


DEFAULT_FILTERS = ("realism", "style_match", "sharpness", "near_duplicate", "memorisation")


class FilterConfig(Section):
    # applied in this order; a rejected sample's reason is the first filter it failed
    filters: list[str] = Field(default_factory=lambda: list(DEFAULT_FILTERS))
    keep: str = "pass"  # pass | top_k:<n> per style
    options: dict[str, dict[str, Any]] = Field(default_factory=dict)  # filter name -> options

    @field_validator("options")
    @classmethod
    def _options_name_filters(cls, v: dict, info: ValidationInfo) -> dict:
        return options_for_selected(v, info.data.get("filters", []), "filters", "filter.filters")

    @field_validator("keep")
    @classmethod
    def _keep_form(cls, v: str) -> str:
        if not _KEEP.match(v):
            raise ValueError("must be 'pass' or 'top_k:<n>' with n >= 1")
        return v


class ProjectConfig(Section):
    # finding the code that reproduces a real image (`ganpipe project`)
    steps: int = Field(300, ge=1, le=100_000)  # optimisation steps per image
    seed: int = Field(0, ge=0, le=MAX_SEED)  # starting candidates and injected noise
    candidates: int = Field(16, ge=1, le=1024)  # random starts tried before optimising the best
    lr: float = Field(0.1, gt=0, le=10)  # peak learning rate (ramped up, then down)
    w_plus_from: float = Field(0.5, ge=0.0, le=1.0)  # stylegan: share of steps in W before W+
    pixel_weight: float = Field(1.0, ge=0)  # loss terms: mean squared pixel difference...
    feature_weight: float = Field(0.1, ge=0)  # ...discriminator features (normalised)...
    style_weight: float = Field(0.05, ge=0)  # ...and distance in the style encoder's space
    noise_weight: float = Field(1e3, ge=0)  # stylegan: keeps optimised noise maps noise-like
