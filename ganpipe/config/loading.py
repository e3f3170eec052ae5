"""Reading a config: a YAML file and ``--set`` overrides, validated into a ``Config``.

Every failure becomes a ``ConfigError`` that names the key path (``train.steps``), the file or
the override, with a fix where one is known, so a bad config fails in the first second with
one readable paragraph instead of a pydantic or YAML traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ganpipe.config.sections import Config
from ganpipe.errors import ConfigError


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b=value``; the value is YAML, so ``[x,y]`` is a list and ``3`` an int."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(
            f"cannot read the override {text!r}",
            where="--set",
            fix="write it as section.key=value, e.g. --set train.steps=2000",
        )
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except (yaml.YAMLError, ValueError, RecursionError) as exc:
        raise ConfigError(
            f"the value of {key} is not valid YAML ({_first_line(exc)})",
            where=f"--set {key}",
            fix="quote strings that contain ':' '[' or '{'",
        ) from None
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for i, part in enumerate(path[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                where = ".".join(path[: i + 1])
                raise ConfigError(
                    f"cannot set {'.'.join(path)}: {where} is a value, not a section",
                    where=f"--set {'.'.join(path)}",
                )
            node = child
        node[path[-1]] = value
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (or the built-in defaults), apply ``--set`` overrides, validate.

    Local folders the config names are checked here, where the person running the command can
    fix them, and not in ``validate_config``: that also reads flow parameters on workers and
    training ranks, which need not have (or use) the folder."""
    data: dict[str, Any] = {}
    source = "the built-in defaults"
    lines: dict[tuple[str, ...], int] = {}
    if path is not None:
        source = str(path)
        data, lines = _read_yaml_file(Path(path))
    data = apply_overrides(data, overrides or [])
    set_keys = [tuple(parse_override(text)[0]) for text in overrides or []]
    try:
        config = validate_config(data, source)
    except ConfigError as exc:
        where = _origin(exc, set_keys, source, lines)
        raise ConfigError(exc.what, where=where, fix=exc.fix) from None
    templates_folder(config)
    return config


def _origin(
    exc: ConfigError, set_keys: list[tuple[str, ...]], source: str, lines: dict
) -> str | None:
    """Where the values a validation error names came from: the ``--set`` that gave them, the
    file and line, or the built-in defaults (one entry per named key)."""
    keys = getattr(exc, "keys", None)
    if not keys:
        return exc.where
    origins = []
    for key in keys:
        given = next((k for k in set_keys if key[: len(k)] == k or k[: len(key)] == key), None)
        if given is not None:
            origins.append(f"--set {'.'.join(given)}")
        elif source != "the built-in defaults":
            line = next((lines[key[:n]] for n in range(len(key), 0, -1) if key[:n] in lines), 0)
            origins.append(f"{source} line {line}" if line else source)
        else:
            origins.append(source)
    return ", ".join(dict.fromkeys(origins))


def templates_folder(config: Config) -> Path | None:
    """The folder ``report.templates`` names, which must exist on this machine; None when the
    built-in templates are used."""
    value = config.report.templates
    if value is None:
        return None
    folder = Path(value).expanduser()
    try:
        exists = folder.is_dir()
    except (OSError, ValueError):  # a name too long for the filesystem, a NUL byte
        exists = False
    if not exists:
        raise ConfigError(
            f"report.templates names the folder {value}, which does not exist here",
            where="report.templates",
            fix="create the folder or correct the path (a relative path starts at the working "
            "directory), or set report.templates to null for the built-in templates",
        )
    return folder


def validate_config(data: Any, source: str = "config") -> Config:
    if not isinstance(data, dict):
        raise ConfigError(
            f"the config must be a mapping of sections, not {type(data).__name__}",
            where=source,
            fix="start from the example in README (store:, dataset:, train: ...)",
        )
    _check_size(data, source)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        error = ConfigError(_describe(exc), where=source, fix=_fix_hint(exc))
        error.keys = [tuple(str(p) for p in err["loc"]) for err in exc.errors()]
        raise error from None


MAX_DEPTH = 32  # nesting a config may have (options dicts included)
MAX_VALUES = 100_000  # values a config may hold, YAML aliases counted each time they are used


def _check_size(data: Any, source: str) -> None:
    """Refuse configs nested absurdly deep or, through YAML aliases, absurdly large (a
    "billion laughs" document is a few lines): hashing or saving them would exhaust memory
    or the stack. The walk stops at the first limit, so it is cheap whatever the input."""
    stack, seen = [(data, "", 0)], 0
    while stack:
        node, path, depth = stack.pop()
        seen += 1
        if depth > MAX_DEPTH or seen > MAX_VALUES:
            raise ConfigError(
                f"the config is nested deeper than {MAX_DEPTH} levels or holds more than "
                f"{MAX_VALUES} values (YAML aliases count each use), at {path or 'the top'}",
                where=f"{source}: {path}" if path else source,
                fix="write the values out plainly; no ganpipe setting needs this",
            )
        if isinstance(node, dict):
            stack += [(v, f"{path}.{k}" if path else str(k), depth + 1) for k, v in node.items()]
        elif isinstance(node, (list, tuple)):
            stack += [(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(node)]


def _key_lines(root, name: str) -> dict[tuple[str, ...], int]:
    """Line of every key path in a composed YAML document (for errors naming file and line).
    A key given twice in one mapping is an error: plain YAML keeps the last value silently, so
    the first one a user wrote would do nothing. Each node is visited once, so aliases cannot
    make the walk explode."""
    found: dict[tuple[str, ...], int] = {}
    seen: set[int] = set()
    stack = [(root, ())]
    while stack:
        node, path = stack.pop()
        if id(node) in seen or len(path) > MAX_DEPTH:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            lines: dict[str, int] = {}
            for key_node, value in node.value:
                text, line = str(key_node.value), key_node.start_mark.line + 1
                if text in lines and text != "<<":
                    raise ConfigError(
                        f"the key {text!r} appears twice in one section (lines {lines[text]} "
                        f"and {line}); YAML would silently keep only the last",
                        where=f"{name} line {line}",
                        fix="remove one of them",
                    )
                lines[text] = line
                found[path + (text,)] = line
                stack.append((value, path + (text,)))
        elif isinstance(node, yaml.SequenceNode):
            stack += [(value, path + (str(i),)) for i, value in enumerate(node.value)]
    return found


def _read_yaml_file(path: Path) -> tuple[dict[str, Any], dict[tuple[str, ...], int]]:
    if not path.is_file():
        raise ConfigError(
            f"config file {path} does not exist",
            where=str(path),
            fix="pass the path of a YAML file, or no file at all to run the built-in demo",
        )
    try:
        text = path.read_text(encoding="utf-8")
        lines = _key_lines(yaml.compose(text, Loader=yaml.SafeLoader), str(path))
        data = yaml.safe_load(text)
    except (yaml.YAMLError, UnicodeDecodeError, ValueError) as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path} line {mark.line + 1}, column {mark.column + 1}" if mark else str(path)
        hint = "indent with spaces, not tabs" if "\t" in str(exc) else None
        raise ConfigError(
            f"config file is not valid YAML ({_first_line(exc)})", where=where, fix=hint
        ) from None
    except RecursionError:
        raise ConfigError(
            "config file is nested too deeply to read",
            where=str(path),
            fix="write the values out plainly; no ganpipe setting needs this",
        ) from None
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"the config must be a mapping of sections, not {type(data).__name__}",
            where=str(path),
        )
    return data, lines


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(_key_part(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            lines.append(f"{key}: unknown key")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"{key}: {msg} (got {_short(err.get('input'))})")
    return "invalid config: " + "; ".join(lines)


def _key_part(part: Any) -> str:
    """A key as written in the path; quoted when it could not be told apart otherwise (empty,
    blank, or holding a dot, colon, semicolon or quote)."""
    text = str(part)
    if isinstance(part, int) or (text.strip() == text and text and not set(".:;'\"") & set(text)):
        return text
    return repr(text)


def _fix_hint(exc: ValidationError) -> str:
    for err in exc.errors():
        if err["type"] == "extra_forbidden":
            section = err["loc"][0] if len(err["loc"]) > 1 else None
            model = (
                Config.model_fields[section].annotation
                if section in Config.model_fields
                else Config
            )
            known = ", ".join(getattr(model, "model_fields", {}).keys())
            return f"check the spelling; known keys here are: {known}"
    return "see the config reference in README"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
