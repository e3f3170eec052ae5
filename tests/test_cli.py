"""The command line as a user drives it: real subprocesses, real exit codes."""

import os
import subprocess
import sys

import pytest

from tests.conftest import tiny_overrides


def ganpipe(*args, env=None, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "ganpipe", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def sets(root, **extra):
    return [a for kv in tiny_overrides(root, **extra) for a in ("--set", kv)]


def test_help_is_fast_and_imports_neither_torch_nor_prefect():
    code = (
        "import sys\n"
        "from ganpipe.cli import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('LOADED', [m for m in ('torch', 'prefect') if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "LOADED []" in done.stdout
    for command in ["run", "ingest", "styles", "train", "generate", "filter", "report", "plugins"]:
        assert command in done.stdout


def test_bad_config_is_one_paragraph_and_exit_code_1(tmp_path):
    done = ganpipe("config", "--set", "train.stepz=3")
    assert done.returncode == 1
    assert "train.stepz: unknown key" in done.stderr
    assert "Traceback" not in done.stderr
    missing = ganpipe("run", str(tmp_path / "missing.yaml"))
    assert missing.returncode == 1 and "does not exist" in missing.stderr
    unknown = ganpipe("plugins", "--set", "plugins=[not.a.module]")
    assert unknown.returncode == 1 and "cannot import plugin module" in unknown.stderr


def test_config_prints_the_resolved_config():
    done = ganpipe("config", "--set", "train.steps=123")
    assert done.returncode == 0
    assert "steps: 123" in done.stdout and "sources:\n  - demo" in done.stdout


def test_plugins_lists_components_with_their_plugin():
    done = ganpipe("plugins", env={"COLUMNS": "200"})
    assert done.returncode == 0
    for needle in ["dcgan", "texture", "realism", "relativistic", "ganpipe-relativistic"]:
        assert needle in done.stdout


@pytest.mark.slow
def test_stage_commands_run_alone_in_order_on_one_store(tmp_path):
    root = tmp_path / "store"
    args = sets(root, **{"train.steps": 20})
    outputs = {}
    for stage in ["ingest", "styles", "train", "generate", "filter", "report"]:
        done = outputs[stage] = ganpipe(stage, *args, env={"COLUMNS": "120"})
        assert done.returncode == 0, (stage, done.stderr[-2000:])
    tally = outputs["ingest"].stdout
    from ganpipe.data.demo import render

    render("rings", 999).save(tmp_path / "ref.png")
    matched = ganpipe("styles", *args, "--reference", str(tmp_path / "ref.png"),
                      env={"COLUMNS": "400"})  # fmt: skip
    assert matched.returncode == 0 and "nearest style" in matched.stdout
    assert "inputs" in tally and "accepted" in tally and "72" in tally and "manifest:" in tally
    assert "report: " in done.stdout
    report_path = done.stdout.split("report: ", 1)[1].split()[0]
    assert report_path.endswith("report.html") and os.path.isfile(report_path)

    # Stages out of order say what to run first.
    fresh = sets(tmp_path / "fresh")
    done = ganpipe("train", *fresh)
    assert done.returncode == 1 and "run 'ganpipe ingest'" in done.stderr


@pytest.mark.slow
def test_generate_with_model_uri_style_and_count(tmp_path):
    root = tmp_path / "store"
    args = sets(root, **{"train.steps": 10})
    for stage in ["ingest", "styles", "train"]:
        assert ganpipe(stage, *args).returncode == 0
    model_dir = next((root / "models" / "demo").glob("v-*"))
    out = tmp_path / "out"
    done = ganpipe(
        "generate",
        "--model",
        str(model_dir),
        "--style",
        "style-2",
        "--per-style",
        "3",
        "--seed",
        "100",
        "--out",
        str(out),
        *args,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    images = sorted(p.name for p in out.rglob("*.png"))
    assert images == ["00000100.png", "00000101.png", "00000102.png"]
    bad = ganpipe("generate", "--model", str(model_dir), "--style", "nope", *args)
    assert bad.returncode == 1 and "unknown style 'nope'" in bad.stderr


def test_demo_data_writes_pngs(tmp_path):
    done = ganpipe("demo-data", str(tmp_path / "d"), "--per-style", "2")
    assert done.returncode == 0
    assert len(list((tmp_path / "d").rglob("*.png"))) == 12


def _run_demo(root, summary_path, *sets_, timeout):
    """`ganpipe run` with the built-in default config, as `make demo` runs it; returns the
    finished process, its wall time and its summary."""
    import json
    import time

    args = ["--set", f"store.root={root}"]
    t0 = time.monotonic()
    done = ganpipe("run", *args, *sets_, "--summary-json", str(summary_path), timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done, time.monotonic() - t0, json.loads(summary_path.read_text())


@pytest.mark.slow
@pytest.mark.timeout(0)  # the limit is set below from this machine's measured speed
def test_the_readme_main_command_makes_styles_a_person_can_tell_apart(tmp_path):
    """`ganpipe run` with the built-in default config, as `make demo` runs it, trained to its
    full step count. How long that takes depends on the machine, so the test first times a short
    run of the same command and allows five times what that predicts: a slow machine gets
    longer, a hung run still fails."""
    from ganpipe.config.sections import TrainConfig

    demo_steps = TrainConfig().steps  # the built-in default's
    root = tmp_path / "runs"
    probe_steps = 40
    probe_set = ["--set", f"train.steps={probe_steps}"]
    _, probe_wall, probe = _run_demo(root, tmp_path / "probe.json", *probe_set, timeout=1800)
    per_step = probe["train"]["seconds"] / probe_steps
    overhead = probe_wall - probe["train"]["seconds"]  # ingest, styles, generate, filter, report
    limit = 5 * (overhead + demo_steps * per_step) + 120
    done, _, summary = _run_demo(root, tmp_path / "summary.json", timeout=limit)
    assert done.stdout.strip().endswith(summary["report_uri"])
    assert summary["counts"]["styles"] == 6 and summary["counts"]["train_steps"] == demo_steps
    # The style encoder puts most samples nearest the style they were asked for.
    assert summary["metrics"]["style_accuracy"] >= 0.7
    assert summary["metrics"]["styles_nmi"] >= 0.9
    assert summary["counts"]["kept"] > 0


@pytest.mark.slow
def test_run_with_bad_data_fails_fast_with_one_clear_message(tmp_path):
    done = ganpipe("run", *sets(tmp_path / "s", **{"dataset.sources": f"[{tmp_path / 'none'}]"}))
    assert done.returncode == 1
    assert "error: source" in done.stderr and "does not exist" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert "Retries are exhausted" not in done.stderr + done.stdout  # user errors never retry
