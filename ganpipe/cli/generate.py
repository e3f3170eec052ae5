"""``ganpipe generate``: the command's options applied to the validated ``generate`` config as a
typed update, so a value goes from the command line to the stage's ``BatchRequest`` without
being written back into ``--set`` text and parsed again.

Each option sets one key of ``GenerateConfig`` (``OPTION_KEYS``); the merged section is
validated as a whole, and a bad value is reported under the option's name with how to fix it.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from ganpipe.cli.common import (
    ConfigArg,
    ModelOpt,
    SetOpt,
    int_list,
    load,
    model_at,
    print_record,
    with_progress,
)

if TYPE_CHECKING:
    from pydantic import ValidationError

    from ganpipe.config import Config
    from ganpipe.errors import ConfigError

# Option -> (the key of the generate config it sets, how to fix a bad value).
OPTION_KEYS: dict[str, tuple[str, str]] = {
    "--per-style": ("per_style", "give a whole number of at least 1"),
    "--seed": ("seed", "give a whole number of at least 0"),
    "--seeds": ("seeds", "give distinct whole numbers >= 0, comma-separated, e.g. 3,17,42"),
    "--truncation": ("truncation", "give a number from 0 (the style's mean) to 1 (off)"),
    "--temperature": ("reference_temperature", "give a number above 0, e.g. 0.1"),
    "--between-styles": ("interpolate.styles", "give two style names or indices"),
    "--between-seeds": ("interpolate.seeds", "give two whole numbers >= 0"),
    "--frames": ("interpolate.frames", "give a whole number from 2 to 1000"),
    "--reference": ("reference", "give the path or URI of an image file"),
    "--mix-style": ("mixing.style", "give a style name or index"),
    "--mix-seed": ("mixing.seed", "give a whole number of at least 0"),
    "--crossover": ("mixing.crossover", "give a level: 0 (4x4), 1 (8x8), ..."),
    "--around": ("around", "give the path or URI of a code.npz from 'ganpipe project'"),
    "--spread": ("spread", "give a number from 0 (the projected image) to 1 (any sample)"),
}


def with_generate_options(config: Config, values: dict[str, Any]) -> Config:
    """``config`` with the options' values (by option name; None: not given) set in its
    ``generate`` section, validated as the config file's values are."""
    from pydantic import ValidationError

    from ganpipe.config import GenerateConfig

    given = {option: value for option, value in values.items() if value is not None}
    if not given:
        return config
    data = config.generate.model_dump()
    for option, value in given.items():
        *parents, last = OPTION_KEYS[option][0].split(".")
        node = data
        for part in parents:  # a section left out (mixing: null) starts from its defaults
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
        node[last] = list(value) if isinstance(value, tuple) else value
    try:
        section = GenerateConfig.model_validate(data)
    except ValidationError as exc:
        raise _option_error(exc, given) from None
    return config.model_copy(update={"generate": section})


def _option_of(key: str, given: dict[str, Any]) -> str | None:
    """The given option that set config key ``key`` (or a key inside it)."""
    for option in given:
        own = OPTION_KEYS[option][0]
        if key == own or key.startswith(own + "."):
            return option
    return None


def _shown(value: Any) -> str:
    """A value as it was typed: ``a b`` for a pair of arguments, ``3,17`` for a list."""
    if isinstance(value, tuple):
        return " ".join(map(str, value))
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)


def _option_error(exc: ValidationError, given: dict[str, Any]) -> ConfigError:
    from ganpipe.errors import ConfigError

    problems, options = [], []
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        option = _option_of(key, given)
        if option is None:  # not one of ours: name the config key
            problems.append(f"generate.{key}: {message}")
            continue
        options.append(option)
        problems.append(f"{option} {_shown(given[option])}: {message}")
    named = list(dict.fromkeys(options))
    fixes = [OPTION_KEYS[o][1] if len(named) == 1 else f"{o}: {OPTION_KEYS[o][1]}" for o in named]
    where = ", ".join(named) or "generate"
    return ConfigError("; ".join(problems), where=where, fix="; ".join(fixes) or None)


def _named_by_option(exc: ConfigError, given: dict[str, Any]) -> ConfigError:
    """A stage's error about a key an option set (an unknown --mix-style, say), under the
    option's name too."""
    from ganpipe.errors import ConfigError

    key = (exc.where or "").removeprefix("generate.")
    option = _option_of(key, given) if exc.where and exc.where.startswith("generate.") else None
    if option is None or OPTION_KEYS[option][0] != key:
        return exc
    return ConfigError(exc.what, where=f"{option} ({exc.where})", fix=exc.fix)


PerStyleOpt = typer.Option(
    None, "--per-style", min=1, help="Samples per style (generate.per_style)."
)
# the old name of --per-style, read until the next release
CountOpt = typer.Option(None, "--count", min=1, hidden=True)
SeedOpt = typer.Option(None, "--seed", min=0, help="First seed.")
SeedsOpt = typer.Option(
    None, "--seeds", help="Explicit seeds for every style, comma-separated (e.g. 3,17,42)."
)
StyleOpt = typer.Option(None, "--style", help="Style name or index; repeatable.")
TruncationOpt = typer.Option(
    None, "--truncation", min=0.0, max=1.0, help="psi: 1 = off, lower = nearer style means."
)
BetweenStylesOpt = typer.Option(
    None, "--between-styles", help="Interpolate from style A to style B (give A B)."
)
BetweenSeedsOpt = typer.Option(
    None, "--between-seeds", help="Interpolate from one seed's latent to another's."
)
FramesOpt = typer.Option(None, "--frames", min=2, help="Interpolation frames.")
ReferenceOpt = typer.Option(
    None, "--reference", help="Generate in the style of this image (path or URI); repeatable."
)
TemperatureOpt = typer.Option(
    None, "--temperature", help="Reference blend: low = nearest style, high = a mix."
)
MixStyleOpt = typer.Option(None, "--mix-style", help="Style mixing: fine levels from this style.")
MixSeedOpt = typer.Option(
    None, "--mix-seed", min=0, help="Style mixing: fine levels from this seed's latent."
)
CrossoverOpt = typer.Option(
    None, "--crossover", min=0, help="Style mixing: first level (4x4 = 0) mixed in."
)
AroundOpt = typer.Option(
    None, "--around", help="Variations of a projected code (code.npz from 'ganpipe project')."
)
SpreadOpt = typer.Option(
    None, "--spread", help="How far variations go: 0 = the projected image, 1 = any sample."
)
OutOpt = typer.Option(
    None, "--out", help="Store URI to write the batch to; default: the run store."
)


def _per_style(per_style: int | None, count: int | None) -> int | None:
    """``--per-style``, or ``--count``, its old name (with a warning naming the new one)."""
    if count is None:
        return per_style
    if per_style is not None:
        raise typer.BadParameter("--count is the old name of --per-style: give only --per-style")
    warnings.warn("--count is deprecated: it is now --per-style (the old name is read until "
                  "the next release)", FutureWarning, stacklevel=2)  # fmt: skip
    return count


def generate(
    config: Optional[Path] = ConfigArg,
    set_: list[str] = SetOpt,
    model: Optional[str] = ModelOpt,
    style: Optional[list[str]] = StyleOpt,
    per_style: Optional[int] = PerStyleOpt,
    count: Optional[int] = CountOpt,
    seed: Optional[int] = SeedOpt,
    seeds: Optional[str] = SeedsOpt,
    truncation: Optional[float] = TruncationOpt,
    between_styles: Optional[tuple[str, str]] = BetweenStylesOpt,
    between_seeds: Optional[tuple[int, int]] = BetweenSeedsOpt,
    frames: Optional[int] = FramesOpt,
    reference: Optional[list[str]] = ReferenceOpt,
    temperature: Optional[float] = TemperatureOpt,
    mix_style: Optional[str] = MixStyleOpt,
    mix_seed: Optional[int] = MixSeedOpt,
    crossover: Optional[int] = CrossoverOpt,
    around: Optional[str] = AroundOpt,
    spread: Optional[float] = SpreadOpt,
    out_uri: Optional[str] = OutOpt,
) -> None:
    """Generate samples per style from the current (or given) model into a batch; or an
    interpolation (frames, strip.png, animation.gif); or samples in a reference image's style;
    or variations of a projected real image (--around)."""

    def body():
        from ganpipe.errors import ConfigError
        from ganpipe.stages.generate import generate as stage
        from ganpipe.store import RunStore

        # 1. The options, by name, as typed values (None: not given)
        values: dict[str, Any] = {
            "--per-style": _per_style(per_style, count), "--seed": seed, "--truncation": truncation,
            "--seeds": None if seeds is None else int_list(seeds, "--seeds"),
            "--between-styles": between_styles, "--between-seeds": between_seeds,
            "--frames": frames, "--reference": list(reference) if reference else None,
            "--temperature": temperature, "--mix-style": mix_style, "--mix-seed": mix_seed,
            "--crossover": crossover, "--around": around, "--spread": spread,
        }  # fmt: skip
        # 2. The config, with the options on top of its generate section
        cfg = with_generate_options(load(config, set_), values)
        # 3. The stores, and the stage
        store = RunStore.from_config(cfg)
        target = RunStore(out_uri, cfg.store.storage_options, origin="--out") if out_uri else None
        try:
            return stage(cfg, store, model=model_at(model, cfg), styles=style, out=target)
        except ConfigError as exc:
            given = {k: v for k, v in values.items() if v is not None}
            raise _named_by_option(exc, given) from None

    print_record("generated", with_progress(body).to_dict())
