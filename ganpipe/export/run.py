"""``ganpipe export``: a model version's generator as an ONNX or TorchScript file plus
``model-card.json``, verified against the generator before it is handed out."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ganpipe.domain.model_pointers import ModelRef
from ganpipe.errors import ConfigError
from ganpipe.progress import log
from ganpipe.registry import Registry
from ganpipe.store import RunStore
from ganpipe.store.checkpoints import load_network

FORMATS = {"onnx": "generator.onnx", "torchscript": "generator.pt"}
OUTPUTS = ("float", "uint8")
CARD = "model-card.json"


@dataclass
class ExportResult:
    format: str
    file: str  # URI of the exported file
    card: str  # URI of model-card.json
    bytes: int
    verified: dict[str, float] | None  # agreement with the generator on a fresh batch

    def to_dict(self) -> dict:
        return asdict(self)


def default_folder(model: ModelRef, fmt: str, output: str) -> str:
    """``export/<format>`` inside the model version (``-uint8`` for that output)."""
    return model.files.export(fmt + ("-uint8" if output == "uint8" else ""))


def export_model(
    model: ModelRef,
    registry: Registry,
    fmt: str = "onnx",
    output: str = "float",
    out: RunStore | None = None,
    licence: str | None = None,
) -> ExportResult:
    """Write ``model``'s generator as ``fmt`` with ``output`` images into ``out`` (default:
    ``export/<format>`` in the model version) with its model card."""
    from ganpipe.domain.style_table import StyleTable
    from ganpipe.export import formats
    from ganpipe.export.card import model_card
    from ganpipe.export.graph import GeneratorGraph, check_exportable

    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}", where="--format",
                          fix=f"use one of: {', '.join(FORMATS)}")  # fmt: skip
    if output not in OUTPUTS:
        raise ConfigError(f"unknown output {output!r}", where="--output",
                          fix=f"use one of: {', '.join(OUTPUTS)}")  # fmt: skip
    # 1. The generator, wrapped as the graph to export
    generator, meta = load_network(model.store, model.folder, "generator", registry)
    name = meta.get("name", type(generator).__name__)
    check_exportable(generator, name)
    num_styles = len(StyleTable.from_json(meta["styles"]).names)
    graph = GeneratorGraph(generator, num_styles, output).eval()
    # 2. The file, checked on a batch it was not traced with
    data = formats.to_onnx(graph, name) if fmt == "onnx" else formats.to_torchscript(graph, name)
    verified = formats.verify(graph, fmt, data, name)
    if verified is None:
        log.warning("onnxruntime is not installed: the ONNX file was not run to check it")
    # 3. The file and its card, side by side
    store = out or model.store
    folder = "" if out is not None else default_folder(model, fmt, output)
    rel = f"{folder}/{FORMATS[fmt]}" if folder else FORMATS[fmt]
    card_rel = f"{folder}/{CARD}" if folder else CARD
    evaluation = None
    if model.store.exists(model.files.evaluation):
        evaluation = model.store.read_json(model.files.evaluation)
    card = model_card(
        fmt=fmt, file=FORMATS[fmt], opset=formats.OPSET if fmt == "onnx" else None, graph=graph,
        meta=meta, model_uri=model.uri, evaluation=evaluation, licence=licence,
        verified=verified,
    )  # fmt: skip
    store.write_bytes(rel, data)
    store.write_json(card_rel, card)
    return ExportResult(fmt, store.uri(rel), store.uri(card_rel), len(data), verified)
