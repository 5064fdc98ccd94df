"""Mixed precision: which floating-point format the forward pass runs in, per worker setting and device.

``fp32`` runs everything in float32. ``bf16`` and ``fp16`` run the forward pass under ``torch.autocast``
(convolutions and matrix products in the low format, losses and reductions in float32; the weights and the
optimizer stay float32). ``fp16`` needs a gradient scaler against underflowing gradients; bf16 has float32's
exponent range and needs none. ``auto`` picks, per device:

- CUDA: ``fp32``, with TF32 tensor-core matrix products allowed (``workers.device.configure_device``). On
  an H200, bf16 autocast made lenet-small's steps slower, eager and graph-captured (its casts cost more than
  the small convolutions save: ``../shared/docs/gpu-facts.md``, the table in ``benchmarks/README.md``), and
  fp16 needs a gradient scaler, which cannot be captured in a CUDA graph;
- CPU: ``bf16`` where the CPU computes bfloat16 natively (AVX512-BF16 or AMX), measured faster on such a
  CPU for every network shape we tried (``benchmarks/README.md``); else ``fp32``, since emulated bfloat16
  is slower than float32.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from workers.settings import PRECISIONS

__all__ = ["PRECISIONS", "Precision", "cpu_has_native_bf16", "resolve_precision"]

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# CPU flags that mean native bfloat16 arithmetic (x86 Linux); without them oneDNN emulates it, slowly.
NATIVE_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
CPU_INFO = Path("/proc/cpuinfo")


@dataclass(frozen=True)
class Precision:
    """A resolved precision (``fp32``, ``bf16`` or ``fp16``) on one kind of device (``cpu``, ``cuda``)."""

    name: str
    device_type: str

    def __post_init__(self) -> None:
        if self.name not in ("fp32", *_DTYPES):
            raise ValueError(f"unknown precision {self.name!r}: choose one of {', '.join(PRECISIONS)}")

    def autocast(self, *, cache_enabled: bool = True) -> contextlib.AbstractContextManager[Any]:
        """The context the forward pass (and the loss) runs in: entered once per training step, so a plain
        context object rather than a generator-based one. A step captured in a CUDA graph needs
        ``cache_enabled=False``: autocast's cache of cast weights would be freed while the graph uses it."""
        if self.name == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=_DTYPES[self.name], cache_enabled=cache_enabled)

    @property
    def needs_grad_scaler(self) -> bool:
        # float16's narrow exponent flushes small gradients to zero unless the loss is scaled up first.
        return self.name == "fp16"

    def grad_scaler(self) -> torch.amp.GradScaler | None:
        """A fresh gradient scaler for one training run, or None where the format needs none."""
        return torch.amp.GradScaler(self.device_type) if self.needs_grad_scaler else None


def resolve_precision(name: str, device: torch.device) -> Precision:
    """The precision ``name`` (one of :data:`PRECISIONS`) stands for on ``device``."""
    normalised = name.strip().lower()
    if normalised not in PRECISIONS:
        raise ValueError(f"unknown precision {name!r}: choose one of {', '.join(PRECISIONS)}")
    if normalised == "auto":
        normalised = _automatic(device)
    if normalised == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"precision bf16 asked for, but {torch.cuda.get_device_name(device)} has no bf16")
    return Precision(normalised, device.type)


def _automatic(device: torch.device) -> str:
    if device.type == "cuda":
        return "fp32"
    if device.type == "cpu" and cpu_has_native_bf16():
        return "bf16"
    return "fp32"


@functools.cache
def cpu_has_native_bf16(cpu_info: Path = CPU_INFO) -> bool:
    """Whether this CPU computes bfloat16 natively (its ``/proc/cpuinfo`` flags; False where unreadable)."""
    try:
        text = cpu_info.read_text(errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.partition(":")[2].split())
            return any(flag in flags for flag in NATIVE_BF16_CPU_FLAGS)
    return False
