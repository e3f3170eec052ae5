"""A projected code as a file: ``.npz`` of plain arrays (read with ``allow_pickle=False``, so
a file from anyone is only ever data) plus a JSON description.

Two kinds: ``z`` (a latent ``z`` (z_dim,) and weights over the styles, for generators without
a mapping network) and ``w+`` (one intermediate code per level (L, w_dim), the style weights
the variations are drawn in, and per-layer noise maps). ``model`` names the model version the
code belongs to: a code is meaningless to any other.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field

import numpy as np

from ganpipe.errors import ConfigError

KINDS = ("z", "w+")


@dataclass
class ProjectedCode:
    kind: str  # z | w+
    style: np.ndarray  # (S,) weights over the styles
    model: str  # "<model>/<version>" it was projected with
    z: np.ndarray | None = None  # (z_dim,), kind z
    w: np.ndarray | None = None  # (L, w_dim), kind w+
    noise: list[np.ndarray] = field(default_factory=list)  # (H, W) per layer, kind w+
    info: dict = field(default_factory=dict)  # source image, PSNR, steps...

    @property
    def nearest(self) -> int:
        """The reconstruction's style as the style encoder saw it (else the largest weight):
        what the manifest records for variations."""
        return int(self.info.get("nearest_index", np.argmax(self.style)))

    def to_bytes(self) -> bytes:
        arrays: dict[str, np.ndarray] = {"style": self.style.astype(np.float32)}
        if self.z is not None:
            arrays["z"] = self.z.astype(np.float32)
        if self.w is not None:
            arrays["w"] = self.w.astype(np.float32)
        for i, n in enumerate(self.noise):
            arrays[f"noise_{i:02d}"] = n.astype(np.float32)
        meta = {"kind": self.kind, "model": self.model, "info": self.info}
        arrays["meta"] = np.array(json.dumps(meta, default=float))
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> ProjectedCode:
        """The code in ``data``; anything else is a clear error naming ``where``."""
        fix = "give a .npz written by 'ganpipe project'"
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
                files = {k: arrays[k] for k in arrays.files}
            meta = json.loads(str(files.pop("meta")))
            kind, model = meta["kind"], meta["model"]
            style = files.pop("style").astype(np.float32)
        except Exception as exc:  # a zip of other arrays, pickles, truncated bytes: all refused
            raise ConfigError(
                f"{where} is not a projected code ({type(exc).__name__}: {str(exc)[:120]})",
                where=where,
                fix=fix,
            ) from None
        if kind not in KINDS or style.ndim != 1:
            raise ConfigError(f"{where} holds an unknown kind of code ({kind!r})", where=where,
                              fix=fix)  # fmt: skip
        noise = [files[k] for k in sorted(files) if k.startswith("noise_")]
        return cls(kind, style, model, files.get("z"), files.get("w"), noise,
                   meta.get("info", {}))  # fmt: skip


def check_fits(code: ProjectedCode, meta: dict, num_styles: int, where: str) -> None:
    """A code from another model version, or for another number of styles, is an error that
    says which model it belongs to (the renderer checks the code's shapes)."""
    label = f"{meta.get('model')}/{meta.get('version')}"
    if code.model != label:
        raise ConfigError(
            f"the code was projected with model {code.model}, not {label}",
            where=where,
            fix=f"project the image again with this model ('ganpipe project'), or generate "
            f"with the model it came from (--model <the {code.model} version folder>)",
        )
    if len(code.style) != num_styles:
        raise ConfigError(
            f"the code has weights for {len(code.style)} styles; the model has {num_styles}",
            where=where,
            fix="project the image again with this model",
        )
