"""``model-card.json``: what an exported file is, what it was trained on, how to call it.

Everything a consumer needs without ganpipe: the inputs and output with shapes and meaning,
the styles by index, the training data's fingerprint, the model's evaluation, the licence the
exporter declared, and a working snippet per runtime.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from ganpipe.domain.style_table import StyleTable
from ganpipe.export.graph import GeneratorGraph

_ONNX_USAGE = """import numpy as np, onnxruntime as ort
session = ort.InferenceSession("{file}", providers=["CPUExecutionProvider"])
n = 8
z = np.random.default_rng(0).standard_normal((n, {z_dim}), dtype=np.float32)
style = np.zeros((n, {styles}), np.float32); style[:, 0] = 1.0  # style 0; rows may blend
truncation = np.full((n,), 0.8, np.float32)  # 1.0 = off{embedding}
images = session.run(["images"], {{{feeds}}})[0]"""

_TORCHSCRIPT_USAGE = """import torch
generator = torch.jit.load("{file}")
n = 8
z = torch.randn(n, {z_dim})
style = torch.nn.functional.one_hot(torch.zeros(n, dtype=torch.long), {styles}).float()
truncation = torch.full((n,), 0.8){embedding}
images = generator({args})"""


def _inputs(graph: GeneratorGraph, z_dim: int, num_styles: int) -> list[dict[str, Any]]:
    rows = [
        {"name": "z", "shape": ["N", z_dim], "dtype": "float32",
         "meaning": "latents, standard normal; one image per row"},
        {"name": "style", "shape": ["N", num_styles], "dtype": "float32",
         "meaning": "weights over the styles (index order of 'styles'): one-hot for one "
                    "style, other rows blend styles; rows should sum to 1"},
        {"name": "truncation", "shape": ["N"], "dtype": "float32",
         "meaning": "psi per row: 1 = off, lower = nearer the mean image of the row's styles"},
    ]  # fmt: skip
    if graph.embedding_dim:
        rows.append({"name": "style_embedding", "shape": ["N", graph.embedding_dim],
                     "dtype": "float32",
                     "meaning": "continuous style code from the model's style encoder (a "
                                "reference image's embedding); zeros mean none"})  # fmt: skip
    return rows


def _output(graph: GeneratorGraph, size: int) -> dict[str, Any]:
    if graph.output == "uint8":
        return {"name": "images", "shape": ["N", size, size, 3], "dtype": "uint8",
                "meaning": "RGB pixels, NHWC, 0-255"}  # fmt: skip
    return {"name": "images", "shape": ["N", 3, size, size], "dtype": "float32",
            "meaning": "RGB, NCHW, in [-1, 1]; pixels = round((x + 1) * 127.5)"}  # fmt: skip


def _usage(fmt: str, file: str, graph: GeneratorGraph, z_dim: int, num_styles: int) -> str:
    names = graph.input_names()
    embedding = ""
    if graph.embedding_dim:
        embedding = (f"\nstyle_embedding = np.zeros((n, {graph.embedding_dim}), np.float32)"
                     if fmt == "onnx" else
                     f"\nstyle_embedding = torch.zeros(n, {graph.embedding_dim})")  # fmt: skip
    if fmt == "onnx":
        feeds = ", ".join(f'"{n}": {n}' for n in names)
        return _ONNX_USAGE.format(file=file, z_dim=z_dim, styles=num_styles,
                                  embedding=embedding, feeds=feeds)  # fmt: skip
    return _TORCHSCRIPT_USAGE.format(file=file, z_dim=z_dim, styles=num_styles,
                                     embedding=embedding, args=", ".join(names))  # fmt: skip


def model_card(
    *,
    fmt: str,
    file: str,
    opset: int | None,
    graph: GeneratorGraph,
    meta: dict,
    model_uri: str,
    evaluation: dict | None,
    licence: str | None,
    verified: dict[str, float] | None,
) -> dict[str, Any]:
    table = StyleTable.from_json(meta["styles"])
    options = meta.get("options", {})
    z_dim, size = int(graph.g.z_dim), int(options.get("image_size", 0))
    return {
        "format": fmt,
        "file": file,
        "opset": opset,
        "dynamic_batch": True,
        "model": {"name": meta.get("model"), "version": meta.get("version"), "uri": model_uri},
        "generator": {"name": meta.get("name"), "options": options},
        "image_size": size,
        "z_dim": z_dim,
        "style_embedding_dim": graph.embedding_dim,
        "styles": [
            {"index": i, "id": sid, "name": name, "training_images": n}
            for i, (sid, name, n) in enumerate(zip(table.ids, table.names, table.sizes))
        ],
        "inputs": _inputs(graph, z_dim, len(table.names)),
        "output": _output(graph, size),
        "truncation": "built in: "
        + (
            "w is pulled toward the style weights' blend of the per-style mean codes"
            if graph.mapped
            else "z is scaled by psi"
        ),  # fmt: skip
        "seeds": "ganpipe's seed s is torch.randn(z_dim, generator=torch.Generator()."
        "manual_seed(s)); any standard normal z works",
        "training_data": {
            "fingerprint": meta.get("dataset_fingerprint"),
            "steps": meta.get("steps"),
        },
        "evaluation": evaluation,
        "licence": licence,
        "verified": verified,
        "usage": _usage(fmt, file, graph, z_dim, len(table.names)),
        "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
