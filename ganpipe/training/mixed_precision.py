"""Mixed precision and memory layout for training, chosen once per run.

``train.precision: auto`` means bf16 autocast on a CUDA device that supports it (fp16 with loss
scaling on older cards) and plain fp32 on CPU, so a config written on a laptop runs unchanged on
a GPU node and the other way round. bf16 and fp16 may also be asked for explicitly on CPU
(autocast works there too; useful on CPUs with bf16 units, and how the path is tested).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch

from ganpipe.errors import ConfigError

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Precision:
    name: str  # fp32 | bf16 | fp16, after resolving auto
    device_type: str
    channels_last: bool

    @property
    def dtype(self) -> torch.dtype | None:
        return _DTYPES.get(self.name)

    def autocast(self):
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def scaler(self) -> torch.amp.GradScaler:
        """Loss scaling keeps fp16 gradients from underflowing; bf16 and fp32 need none (a
        disabled scaler passes losses and steps through untouched)."""
        return torch.amp.GradScaler(self.device_type, enabled=self.name == "fp16")

    def layout(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def prepare(self, module: torch.nn.Module) -> torch.nn.Module:
        return module.to(memory_format=torch.channels_last) if self.channels_last else module


def resolve_precision(precision: str, channels_last: bool | str, device: torch.device) -> Precision:
    cuda = device.type == "cuda"
    if precision == "auto" and not cuda:
        precision = "fp32"
    elif precision == "auto":
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    elif precision == "bf16" and cuda and not torch.cuda.is_bf16_supported():
        raise ConfigError(
            f"this GPU ({torch.cuda.get_device_name(device)}) does not support bf16",
            where="train.precision",
            fix="use fp16 or auto",
        )
    layout = True if channels_last == "auto" else bool(channels_last)
    return Precision(precision, device.type, layout)
