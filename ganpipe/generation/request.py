"""What a batch is made of: the typed request the generate stage turns into images.

A ``BatchRequest`` is built once from the validated ``generate`` config (style names resolved
against the model's style table, controls checked against each other), and every later step
reads its fields instead of config keys. Its ``identity()`` is what the batch id hashes: keys of
controls left at their defaults are absent from it, so plain requests keep the ids they always
had, and the batch folders already in stores stay valid.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ganpipe.errors import ConfigError
from ganpipe.hashing import sha256_bytes, stable_hash
from ganpipe.store import read_uri

if TYPE_CHECKING:
    from ganpipe.config import GenerateConfig
    from ganpipe.domain.style_table import StyleTable

DEFAULT_PNG_LEVEL = 6  # left out of the identity, so requests made before it keep their ids
_DESCRIPTIVE = ("model", "reference_weights")  # in request.json for readers, not asked for


@dataclass(frozen=True)
class Mixing:
    """Style mixing: levels from ``crossover`` on take the code of ``style`` (None: each
    sample's own) and/or of ``seed``'s latent (None: each sample's own)."""

    style: str | None
    seed: int | None
    crossover: int


@dataclass(frozen=True)
class Interpolation:
    """Frames from (style, seed) ``styles[0], seeds[0]`` to ``styles[1], seeds[1]``."""

    styles: tuple[str, str]
    seeds: tuple[int, int]
    frames: int
    frame_ms: int


@dataclass(frozen=True)
class BatchRequest:
    """A batch: which styles and seeds, encoded how, with which controls. Exactly one of
    ``reference`` (SHA-256 of the reference images), ``interpolate`` and plain styles (with
    ``counts``) decides the images."""

    styles: tuple[str, ...]
    per_style: int
    seed: int
    format: str
    quality: int
    png_level: int = DEFAULT_PNG_LEVEL  # the default whenever the format is not PNG
    seeds: tuple[int, ...] | None = None  # explicit seeds for every style, instead of seed + i
    truncation: float = 1.0
    mixing: Mixing | None = None
    reference: tuple[str, ...] = ()
    reference_temperature: float | None = None  # set with ``reference`` only
    interpolate: Interpolation | None = None
    counts: tuple[tuple[str, int], ...] | None = None  # (style, samples), overriding per_style
    around: str | None = None  # SHA-256 of a projected code: variations of (or frames from) it
    spread: float | None = None  # set with ``around`` only

    # 1. From the config -------------------------------------------------------------------

    @classmethod
    def from_config(
        cls, g: GenerateConfig, table: StyleTable, styles: list[str] | None = None
    ) -> BatchRequest:
        """The request ``generate`` config ``g`` makes of a model with style table ``table``;
        ``styles`` (from ``--style``) replaces ``generate.styles``. Errors name the key."""
        where = "--style" if styles else "generate.styles"
        refs = styles or g.styles
        wanted = tuple(dict.fromkeys(_style_name(table, s, where) for s in refs))
        wanted = wanted or tuple(table.names)
        request = cls(
            styles=wanted,
            per_style=g.per_style,
            seed=g.seed,
            format=g.format,
            quality=g.quality,
            png_level=g.png_level if g.format == "png" else DEFAULT_PNG_LEVEL,
            seeds=None if g.seeds is None else tuple(g.seeds),
            truncation=g.truncation,
            mixing=_mixing(g, table),
        )
        if g.around:
            if g.reference:
                raise ConfigError(
                    "generate.around and generate.reference cannot be combined",
                    where="generate.around",
                    fix="vary the projected code, or generate in the reference's style",
                )
            from ganpipe.domain.latent_codes import ProjectedCode

            data = around_bytes(g.around)
            code = ProjectedCode.from_bytes(data, "generate.around")
            nearest = table.names[min(code.nearest, len(table.names) - 1)]
            request = replace(request, styles=(nearest,), around=sha256_bytes(data),
                              spread=g.spread, counts=None)  # fmt: skip
            if g.interpolate is not None:  # frames from the code to a style and seed
                spec = g.interpolate
                end = spec.styles[-1] if spec.styles else nearest
                end = _style_name(table, end, "generate.interpolate.styles")
                seed = spec.seeds[-1] if spec.seeds else g.seed
                frames = Interpolation((nearest, end), (seed, seed), spec.frames, spec.frame_ms)
                styles = tuple(dict.fromkeys((nearest, end)))
                return replace(request, styles=styles, interpolate=frames)
            return request
        if g.reference:
            if g.interpolate is not None:
                raise ConfigError(
                    "generate.reference and generate.interpolate cannot be combined",
                    where="generate.reference",
                    fix="make one batch from the reference images and another interpolation",
                )
            hashes = tuple(sha256_bytes(b) for b in reference_bytes(g.reference))
            temperature = g.reference_temperature
            return replace(request, styles=(), reference=hashes, reference_temperature=temperature)
        if g.interpolate is not None:
            spec = _interpolation(g, table, wanted[0])
            return replace(request, styles=tuple(dict.fromkeys(spec.styles)), interpolate=spec)
        return replace(request, counts=_counts(g, table, wanted))

    # 2. Identity and the batch id ---------------------------------------------------------

    def identity(self) -> dict[str, Any]:
        """What the batch id hashes: the request as JSON, without the controls left at their
        defaults (the dict the generate stage has always hashed)."""
        data: dict[str, Any] = {
            "styles": list(self.styles),
            "per_style": self.per_style,
            "seed": self.seed,
            "format": self.format,
            "quality": self.quality,
        }
        if self.format == "png" and self.png_level != DEFAULT_PNG_LEVEL:
            data["png_level"] = self.png_level
        if self.seeds is not None:
            data["seeds"] = list(self.seeds)
        if self.truncation != 1.0:
            data["truncation"] = self.truncation
        if self.mixing is not None:
            m = self.mixing
            data["mixing"] = {"style": m.style, "seed": m.seed, "crossover": m.crossover}
        if self.around:
            data["around"] = self.around
            data["spread"] = self.spread
        if self.reference:
            data["reference"] = list(self.reference)
            data["reference_temperature"] = self.reference_temperature
        elif self.interpolate is not None:
            spec = self.interpolate
            data["interpolate"] = {
                "styles": list(spec.styles),
                "seeds": list(spec.seeds),
                "frames": spec.frames,
                "frame_ms": spec.frame_ms,
            }
        elif self.counts is not None:
            data["counts"] = dict(self.counts)
        return data

    def batch_id(self, model_meta: dict) -> str:
        """``<model>-<version>-<hash of identity()>``: a folder name, the same in every run."""
        return f"{model_meta['model']}-{model_meta['version']}-{stable_hash(self.identity(), 8)}"

    # 3. request.json ----------------------------------------------------------------------

    def to_json(
        self, model: str | None = None, reference_weights: dict[str, float] | None = None
    ) -> dict[str, Any]:
        """``request.json`` of the batch: the identity, plus, for readers, the model's URI and
        a reference's weights over the styles."""
        data = self.identity()
        if reference_weights is not None:
            data["reference_weights"] = reference_weights
        if model is not None:
            data["model"] = model
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BatchRequest:
        """The request a ``request.json`` (or an ``identity()``) describes."""
        known = {k: v for k, v in data.items() if k not in _DESCRIPTIVE}
        mixing, spec, counts = known.pop("mixing", None), known.pop("interpolate", None), None
        if "counts" in known:
            counts = tuple(known.pop("counts").items())
        return cls(
            **{k: v for k, v in known.items() if k not in ("styles", "seeds", "reference")},
            styles=tuple(known["styles"]),
            seeds=None if known.get("seeds") is None else tuple(known["seeds"]),
            reference=tuple(known.get("reference", ())),
            mixing=None if mixing is None else Mixing(**mixing),
            interpolate=None if spec is None else _interpolation_from_json(spec),
            counts=counts,
        )

    # 4. What the jobs read ----------------------------------------------------------------

    def count(self, style: str) -> int:
        """Samples of ``style``: its count if one was given, else ``per_style``."""
        return dict(self.counts or ()).get(style, self.per_style)

    def seeds_for(self, n: int) -> list[int]:
        """The seeds of ``n`` samples: the explicit seeds, or ``seed, seed + 1, ...``."""
        return list(self.seeds) if self.seeds else list(range(self.seed, self.seed + n))


def reference_bytes(uris: list[str]) -> list[bytes]:
    """The reference images' bytes (their hashes name the batch; render decodes them)."""
    fix = "give the path or URI of an image file"
    what, where = "the reference image", "generate.reference"
    return [read_uri(uri, what=what, where=where, fix=fix) for uri in uris]


def around_bytes(uri: str) -> bytes:
    """The projected code's bytes (their hash names the batch; planning reads the code)."""
    fix = "give the path or URI of a code.npz written by 'ganpipe project'"
    return read_uri(uri, what="the projected code", where="generate.around", fix=fix)


def _style_name(table: StyleTable, ref: str | int, where: str) -> str:
    try:
        return table.names[table.index(ref)]
    except ConfigError as exc:
        raise ConfigError(exc.what, where=where, fix=exc.fix) from None


def _mixing(g: GenerateConfig, table: StyleTable) -> Mixing | None:
    m = g.mixing
    if m is None:
        return None
    if m.style is None and m.seed is None:
        raise ConfigError(
            "generate.mixing needs a style or a seed to take the fine levels from",
            where="generate.mixing",
            fix="set generate.mixing.style or generate.mixing.seed (or remove mixing)",
        )
    style = None if m.style is None else _style_name(table, m.style, "generate.mixing.style")
    return Mixing(style, m.seed, m.crossover)


def _interpolation(g: GenerateConfig, table: StyleTable, held_style: str) -> Interpolation:
    spec = g.interpolate
    names = [_style_name(table, s, "generate.interpolate.styles") for s in spec.styles]
    styles = (names or [held_style]) * (2 if len(names) < 2 else 1)
    seeds = list(spec.seeds) or [g.seeds[0] if g.seeds else g.seed]
    seeds = seeds * (2 if len(seeds) < 2 else 1)
    if styles[0] == styles[1] and seeds[0] == seeds[1]:
        raise ConfigError(
            "generate.interpolate has nothing to move between: one style and one seed",
            where="generate.interpolate",
            fix="give two styles (interpolate.styles: [a, b]) and/or two seeds ([s, t])",
        )
    return Interpolation(tuple(styles), tuple(seeds), spec.frames, spec.frame_ms)


def _interpolation_from_json(spec: dict[str, Any]) -> Interpolation:
    styles, seeds = tuple(spec["styles"]), tuple(spec["seeds"])
    return Interpolation(styles, seeds, spec["frames"], spec["frame_ms"])


def _counts(
    g: GenerateConfig, table: StyleTable, wanted: tuple[str, ...]
) -> tuple[tuple[str, int], ...] | None:
    counts = {_style_name(table, k, "generate.counts"): n for k, n in g.counts.items()}
    if counts and g.seeds is not None:
        raise ConfigError(
            "generate.counts and generate.seeds are both set",
            where="generate.counts",
            fix="give explicit seeds (used for every style) or counts per style, not both",
        )
    if not counts:
        return None
    return tuple((name, counts[name]) for name in wanted if name in counts)
