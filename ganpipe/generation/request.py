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
class Samples:
    """Each style's samples: ``per_style`` each, or the style's count (a count of 0 leaves a
    style out)."""

    counts: tuple[tuple[str, int], ...] | None = None  # (style, samples), overriding per_style

    def identity(self) -> dict[str, Any]:
        return {} if self.counts is None else {"counts": dict(self.counts)}


@dataclass(frozen=True)
class FromReference:
    """Samples in the style of reference images: the blend of the model's styles their style
    code is nearest, at ``temperature``."""

    images: tuple[str, ...]  # SHA-256 of each reference image
    temperature: float | None

    def identity(self) -> dict[str, Any]:
        return {"reference": list(self.images), "reference_temperature": self.temperature}


@dataclass(frozen=True)
class Interpolation:
    """Frames from (style, seed) ``styles[0], seeds[0]`` to ``styles[1], seeds[1]``."""

    styles: tuple[str, str]
    seeds: tuple[int, int]
    frames: int
    frame_ms: int

    def identity(self) -> dict[str, Any]:
        return {"interpolate": {"styles": list(self.styles), "seeds": list(self.seeds),
                                "frames": self.frames, "frame_ms": self.frame_ms}}  # fmt: skip


@dataclass(frozen=True)
class Around:
    """Variations of a projected code (seed ``s``: ``spread`` of the way toward ``s``'s sample
    in the code's styles), or, with ``frames``, frames from the code to a style and seed."""

    code: str  # SHA-256 of the code.npz
    spread: float | None
    frames: Interpolation | None = None

    def identity(self) -> dict[str, Any]:
        data: dict[str, Any] = {"around": self.code, "spread": self.spread}
        return data | (self.frames.identity() if self.frames else {})


Mode = Samples | FromReference | Interpolation | Around


@dataclass(frozen=True)
class RequestInputs:
    """The files a request names, read once by the caller (the generate stage), so that
    building a request reads nothing: the reference images and the projected code."""

    reference: tuple[bytes, ...] = ()
    around: bytes | None = None

    @classmethod
    def read(cls, g: GenerateConfig) -> RequestInputs:
        return cls(tuple(reference_bytes(g.reference)) if g.reference else (),
                   around_bytes(g.around) if g.around else None)  # fmt: skip


@dataclass(frozen=True)
class BatchRequest:
    """A batch: which styles and seeds, encoded how, with which controls, and its ``mode``
    (``Samples``, ``FromReference``, ``Interpolation`` or ``Around``), which decides the
    images (``ganpipe.generation.plan`` turns each mode into its jobs)."""

    styles: tuple[str, ...]
    per_style: int
    seed: int
    format: str
    quality: int
    png_level: int = DEFAULT_PNG_LEVEL  # the default whenever the format is not PNG
    seeds: tuple[int, ...] | None = None  # explicit seeds for every style, instead of seed + i
    truncation: float = 1.0
    mixing: Mixing | None = None
    mode: Mode = Samples()

    # 1. From the config -------------------------------------------------------------------

    @classmethod
    def from_config(cls, g: GenerateConfig, table: StyleTable, styles: list[str] | None = None,
                    inputs: RequestInputs | None = None) -> BatchRequest:  # fmt: skip
        """The request ``generate`` config ``g`` makes of a model with style table ``table``;
        ``styles`` (from ``--style``) replaces ``generate.styles``; ``inputs``: the files the
        config names (``RequestInputs.read(g)``), read when not given. Errors name the key."""
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
        _check_combinations(g)
        if (g.around or g.reference) and inputs is None:
            inputs = RequestInputs.read(g)
        if g.around:
            return _around(request, g, table, inputs.around)
        if g.reference:
            hashes = tuple(sha256_bytes(b) for b in inputs.reference)
            mode = FromReference(hashes, g.reference_temperature)
            return replace(request, styles=(), mode=mode)
        if g.interpolate is not None:
            spec = _interpolation(g, table, wanted[0])
            return replace(request, styles=tuple(dict.fromkeys(spec.styles)), mode=spec)
        return replace(request, mode=Samples(_counts(g, table, wanted)))

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
        return data | self.mode.identity()

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
        mixing = known.pop("mixing", None)
        common = {k: known[k] for k in ("per_style", "seed", "format", "quality", "png_level",
                                        "truncation") if k in known}  # fmt: skip
        return cls(
            **common,
            styles=tuple(known["styles"]),
            seeds=None if known.get("seeds") is None else tuple(known["seeds"]),
            mixing=None if mixing is None else Mixing(**mixing),
            mode=_mode_from_json(known),
        )

    # 4. What the jobs read ----------------------------------------------------------------

    @property
    def interpolation(self) -> Interpolation | None:
        """The frames this batch is made of (an interpolation, or one from a projected code):
        what gets a strip and an animation."""
        if isinstance(self.mode, Interpolation):
            return self.mode
        return self.mode.frames if isinstance(self.mode, Around) else None

    def count(self, style: str) -> int:
        """Samples of ``style``: its count if one was given, else ``per_style``."""
        counts = self.mode.counts if isinstance(self.mode, Samples) else None
        return dict(counts or ()).get(style, self.per_style)

    def seeds_for(self, n: int) -> list[int]:
        """The seeds of ``n`` samples: the explicit seeds, or ``seed, seed + 1, ...``."""
        return list(self.seeds) if self.seeds else list(range(self.seed, self.seed + n))


def _check_combinations(g: GenerateConfig) -> None:
    if g.around and g.reference:
        raise ConfigError(
            "generate.around and generate.reference cannot be combined",
            where="generate.around",
            fix="vary the projected code, or generate in the reference's style",
        )
    if g.reference and g.interpolate is not None:
        raise ConfigError(
            "generate.reference and generate.interpolate cannot be combined",
            where="generate.reference",
            fix="make one batch from the reference images and another interpolation",
        )


def _around(request: BatchRequest, g: GenerateConfig, table: StyleTable,
            data: bytes) -> BatchRequest:  # fmt: skip
    """Variations of the projected code in ``data`` (or frames from it to a style and seed)."""
    from ganpipe.domain.latent_codes import ProjectedCode

    code = ProjectedCode.from_bytes(data, "generate.around")
    nearest = table.names[min(code.nearest, len(table.names) - 1)]
    mode = Around(sha256_bytes(data), g.spread)
    if g.interpolate is None:
        return replace(request, styles=(nearest,), mode=mode)
    spec = g.interpolate
    end = _style_name(table, spec.styles[-1] if spec.styles else nearest,
                      "generate.interpolate.styles")  # fmt: skip
    seed = spec.seeds[-1] if spec.seeds else g.seed
    frames = Interpolation((nearest, end), (seed, seed), spec.frames, spec.frame_ms)
    return replace(request, styles=tuple(dict.fromkeys((nearest, end))),
                   mode=replace(mode, frames=frames))  # fmt: skip


def _mode_from_json(known: dict[str, Any]) -> Mode:
    spec = known.get("interpolate")
    frames = None if spec is None else _interpolation_from_json(spec)
    if "around" in known:
        return Around(known["around"], known.get("spread"), frames)
    if "reference" in known:
        return FromReference(tuple(known["reference"]), known.get("reference_temperature"))
    if frames is not None:
        return frames
    return Samples(None if "counts" not in known else tuple(known["counts"].items()))


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
