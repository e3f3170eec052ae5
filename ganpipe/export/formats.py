"""Writing an export graph as ONNX or TorchScript, and checking the file against the graph.

Both formats take a dynamic batch size. ONNX uses torch's ``torch.export``-based exporter at
opset ``OPSET`` (onnxruntime 1.17 and later run it); TorchScript is a trace, which records one
path through the code: the check on a batch of another size and other inputs catches a
generator whose Python branches on its inputs, so a wrong file is never handed out.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from ganpipe.errors import ConfigError
from ganpipe.export.graph import GeneratorGraph

OPSET = 18
CHECK_ROWS = 7  # the check batch: a size no trace or export saw (they see 4)
FLOAT_TOLERANCE = 1e-4  # max abs difference in [-1, 1]
UINT8_AGREEMENT = 0.999  # share of identical pixels


def _quietly():
    """The exporters print progress and warnings of their own; the command's output is JSON."""
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    for name in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript"):
        logger = logging.getLogger(name)
        stack.callback(logger.setLevel, logger.level)
        logger.setLevel(logging.ERROR)
    return stack


def _failed(name: str, fmt: str, exc: Exception) -> ConfigError:
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    return ConfigError(
        f"generator {name!r} cannot be exported to {fmt}: {type(exc).__name__}: {first}",
        where="--format",
        fix="an exported generator must be traceable: no Python branches or loops on tensor "
        "values, no randomness in eval mode (README, 'Writing a plugin'); or try the other "
        "format",
    )


def to_onnx(graph: GeneratorGraph, name: str) -> bytes:
    try:
        import onnxscript  # noqa: F401  (torch's exporter needs it)
    except ImportError:
        raise ConfigError(
            "ONNX export needs the onnx and onnxscript packages",
            where="--format onnx",
            fix="pip install 'ganpipe[export]', or use --format torchscript",
        ) from None
    inputs = graph.example_inputs(4)
    names = graph.input_names()
    batch = torch.export.Dim("batch", min=1, max=65536)
    shapes = {n: {0: batch} for n in ["z", "style", "truncation", "style_embedding"][: len(names)]}
    with tempfile.TemporaryDirectory() as tmp, _quietly():
        path = Path(tmp) / "generator.onnx"
        try:
            program = torch.onnx.export(
                graph, inputs, dynamo=True, input_names=names, output_names=["images"],
                dynamic_shapes=shapes, opset_version=OPSET, external_data=False, verbose=False,
            )  # fmt: skip
            program.save(str(path), external_data=False)
        except Exception as exc:
            raise _failed(name, "ONNX", exc) from None
        return path.read_bytes()


def to_torchscript(graph: GeneratorGraph, name: str) -> bytes:
    buffer = io.BytesIO()
    with _quietly():
        try:
            traced = torch.jit.trace(graph, graph.example_inputs(4), check_trace=False)
            torch.jit.save(traced, buffer)
        except Exception as exc:
            raise _failed(name, "TorchScript", exc) from None
    return buffer.getvalue()


def run_onnx(data: bytes, inputs: dict[str, np.ndarray]) -> np.ndarray | None:
    """The file's output in onnxruntime (CPU), or None when onnxruntime is not installed."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    return session.run(["images"], inputs)[0]


def run_torchscript(data: bytes, inputs: dict[str, np.ndarray]) -> np.ndarray:
    module = torch.jit.load(io.BytesIO(data), map_location="cpu")
    with torch.inference_mode():
        return module(*(torch.from_numpy(v) for v in inputs.values())).numpy()


def agreement(expected: np.ndarray, got: np.ndarray) -> dict[str, float]:
    """How close a file's images are to the graph's: max abs difference (float output) or the
    share of identical pixels (uint8 output)."""
    if expected.dtype == np.uint8:
        return {"identical_pixels": float((expected == got).mean())}
    return {"max_abs_diff": float(np.abs(expected.astype(np.float64) - got).max())}


def within_tolerance(figures: dict[str, float]) -> bool:
    if "identical_pixels" in figures:
        return figures["identical_pixels"] >= UINT8_AGREEMENT
    return figures["max_abs_diff"] <= FLOAT_TOLERANCE


def verify(graph: GeneratorGraph, fmt: str, data: bytes, name: str) -> dict[str, float] | None:
    """Run the written file on inputs it was not traced with and compare with the graph; a
    mismatch is an error naming the generator. None: ONNX without onnxruntime installed."""
    inputs = graph.example_inputs(CHECK_ROWS, seed=1)
    named = {n: t.numpy() for n, t in zip(graph.input_names(), inputs)}
    with torch.inference_mode():
        expected = graph(*inputs).numpy()
    got = run_onnx(data, named) if fmt == "onnx" else run_torchscript(data, named)
    if got is None:
        return None
    figures = agreement(expected, got)
    if got.shape != expected.shape or not within_tolerance(figures):
        raise ConfigError(
            f"the {fmt} file of generator {name!r} does not reproduce it on a new batch "
            f"(shape {list(got.shape)} vs {list(expected.shape)}, {figures}): its code takes a "
            "path that depends on the inputs or the batch size",
            where="--format",
            fix="make the generator's forward free of Python branches on tensor values and "
            "sizes (README, 'Writing a plugin'), or try the other format",
        )
    return figures
