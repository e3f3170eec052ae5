"""Exported generators: a trained model as one file that runs without ganpipe (ONNX for
onnxruntime, game engines and browsers; TorchScript for C++ services), with a model card.

``graph`` is the module that is exported (latents and style weights in, images out, with
ganpipe's truncation built in); ``formats`` writes and verifies the files; ``card`` describes
them; ``run`` is what ``ganpipe export`` calls.
"""

from ganpipe.export.run import FORMATS, OUTPUTS, ExportResult, export_model

__all__ = ["FORMATS", "OUTPUTS", "ExportResult", "export_model"]
