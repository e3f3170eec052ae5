"""Bad config: fuzzed YAML documents, values of every type under real and invented keys, and
``--set`` overrides (hypothesis). The outcome is always a config or a ``ConfigError`` that names
the key (or the file / override), never another exception.

Each test counts what it fed and what came back in its own tally and checks that they balance,
so every test means the same run alone, in any order, or in parallel."""

from __future__ import annotations

import re
from collections import Counter

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ganpipe.config import Config, load_config
from ganpipe.errors import ConfigError

FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow,
                HealthCheck.function_scoped_fixture])  # fmt: skip


def _paths(model, prefix=()) -> list[tuple[str, ...]]:
    out = []
    for name, field in model.model_fields.items():
        sub = field.annotation
        if isinstance(sub, type) and hasattr(sub, "model_fields"):
            out += _paths(sub, (*prefix, name))
        else:
            out.append((*prefix, name))
    return out


KEY_PATHS = _paths(Config)  # every real key path: ("train", "steps"), ...
SPECIAL = ["yes", "no", "on", "off", "~", "null", "1e309", ".nan", "-.inf", "0x1F", "0o17",
           "2024-01-01", "!!binary aGk=", "${HOME}", "${NOT_SET_ANYWHERE}", "../..", "",
           "s3://", "top_k:0", "column:", "\x00", "é" * 300]  # fmt: skip
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=40),
    st.sampled_from(SPECIAL),
)  # fmt: skip
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)  # fmt: skip
key = st.one_of(st.sampled_from(KEY_PATHS), st.lists(st.text(max_size=10), min_size=1,
                                                     max_size=3).map(tuple))  # fmt: skip


def outcome(call, tally: Counter[str]):
    """Run a config load; anything but a Config or a ConfigError fails the test."""
    try:
        config = call()
    except ConfigError as err:
        assert err.where, err.message  # says where: a key path, the file, or the override
        tally["rejected"] += 1
        return err
    assert isinstance(config, Config)
    tally["accepted"] += 1
    return config


def assert_balanced(tally: Counter[str], fed: str, capsys) -> None:
    """Every input this test fed came back as exactly one config or ConfigError; the figures
    are printed for the README."""
    assert tally[fed] > 0, "the fuzzer fed nothing"
    assert tally["accepted"] + tally["rejected"] == tally[fed], dict(tally)
    with capsys.disabled():
        print(f"\nconfig fuzzing figures ({fed}): {dict(sorted(tally.items()))}")


def named_keys(message: str) -> list[str]:
    """The key paths a validation message reports ("invalid config: a.b: ...; c: ...")."""
    body = message.removeprefix("invalid config: ")
    quoted = r"'(?:[^'\\]|\\.)*'" + "|" + r'"(?:[^"\\]|\\.)*"'
    return [m.group(1) for m in re.finditer(rf"(?:^|; )((?:{quoted}|[^:;'\"])+?): ", body)]


def reachable(data, path: str) -> bool:
    """Whether the reported path starts with a key of the input (its section at least), as
    written or quoted."""
    forms = {f for k in data for f in (str(k), repr(str(k)))}
    return any(path == f or path.startswith(f + ".") for f in forms)


def test_fuzzed_values_under_real_and_invented_keys(tmp_path_factory, capsys):
    tally: Counter[str] = Counter()

    @settings(FUZZ, max_examples=600)
    @given(st.dictionaries(key, values, max_size=6))
    def feed(entries):
        data: dict = {}
        for path, value in entries.items():
            node = data
            for part in path[:-1]:
                if not isinstance(node.get(part), dict):
                    node[part] = {}
                node = node[part]
            node[path[-1]] = value
        tally["values"] += 1
        file = tmp_path_factory.mktemp("cfg") / "c.yaml"
        file.write_text(yaml.safe_dump(data, allow_unicode=True))
        result = outcome(lambda: load_config(file), tally)
        if isinstance(result, ConfigError) and result.what.startswith("invalid config: "):
            keys = named_keys(result.what)
            seen = yaml.safe_load(file.read_text())  # what the loader saw (YAML folds text)
            assert keys and all(reachable(seen, k) for k in keys), result.message

    feed()
    assert_balanced(tally, "values", capsys)


def test_any_yaml_text_is_loaded_or_refused_with_where_and_why(tmp_path_factory, capsys):
    tally: Counter[str] = Counter()

    @settings(FUZZ, max_examples=600)
    @given(st.text(alphabet=st.sampled_from(list("abc: -[]{},&*!|>'\"#%@`\t\n0123.~?\\")),
                   max_size=120))  # fmt: skip
    def feed(text):
        tally["yaml"] += 1
        file = tmp_path_factory.mktemp("cfg") / "c.yaml"
        file.write_text(text)
        outcome(lambda: load_config(file), tally)

    feed()
    assert_balanced(tally, "yaml", capsys)


def test_any_set_override_is_applied_or_refused_naming_its_key(capsys):
    tally: Counter[str] = Counter()

    @settings(FUZZ, max_examples=600)
    @given(st.one_of(
        st.text(max_size=60),
        st.tuples(st.sampled_from(KEY_PATHS), st.one_of(st.text(max_size=30),
                  st.sampled_from(SPECIAL))).map(lambda kv: f"{'.'.join(kv[0])}={kv[1]}"),
    ))  # fmt: skip
    def feed(override):
        tally["overrides"] += 1
        result = outcome(lambda: load_config(None, [override]), tally)
        if isinstance(result, ConfigError) and result.what.startswith("invalid config: "):
            section = override.partition("=")[0].strip().split(".")[0]
            forms = (section, repr(section))  # odd keys are named quoted
            assert any(k.startswith(forms) for k in named_keys(result.what)), result.message

    feed()
    assert_balanced(tally, "overrides", capsys)


@pytest.mark.parametrize(
    "text, needle",
    [
        ("store:\n  storage_options:\n    x: " + "[" * 3000 + "]" * 3000 + "\n", "nested"),
        ("store:\n  storage_options:\n    x: " + "[" * 60 + "]" * 60 + "\n", "deeper than"),
        (
            "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
            "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
            "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
            "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\nh: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n"
            "i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]\nstore: {storage_options: {bomb: *i}}\n",
            "aliases",
        ),
        ("train: !!python/object/apply:os.system [echo owned]\n", "not valid YAML"),
        ("\xff\xfe binary", "not valid YAML"),
        ("train:\n  steps: 1\n  steps: 2\n", "appears twice"),  # YAML would keep the last
    ],
    ids=["deep-recursion", "deep", "billion-laughs", "python-tag", "binary", "duplicate-key"],
)
def test_hostile_documents_are_refused_quickly(tmp_path, text, needle):
    import time

    file = tmp_path / "c.yaml"
    file.write_bytes(text.encode("latin-1") if text.startswith("\xff") else text.encode())
    start = time.perf_counter()
    tally: Counter[str] = Counter(hostile=1)
    result = outcome(lambda: load_config(file), tally)
    assert time.perf_counter() - start < 2
    assert tally["accepted"] + tally["rejected"] == tally["hostile"]
    assert isinstance(result, ConfigError) and needle in result.message
