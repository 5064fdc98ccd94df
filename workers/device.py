"""Device choice and torch thread settings: the one module that touches them.

Oversubscribing the cores with torch threads collapses throughput 20-40x (see the perf facts), so every
worker process sets its thread count here, once, from the number of workers sharing its host.
"""

from __future__ import annotations

import logging
import os
import re

import torch

logger = logging.getLogger(__name__)

DEVICE_NAMES = ("auto", "cpu", "cuda", "cuda:N")
_CUDA_NAME = re.compile(r"cuda(?::(\d+))?")


def select_device(name: str = "auto") -> torch.device:
    """The device for ``name``: ``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    normalised = name.strip().lower()
    if normalised == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if normalised == "cpu":
        return torch.device("cpu")
    match = _CUDA_NAME.fullmatch(normalised)
    if match is None:
        raise ValueError(f"unknown device {name!r}: choose one of {', '.join(DEVICE_NAMES)}")
    if not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but CUDA is not available on this machine")
    if match.group(1) is None:
        return torch.device("cuda")
    index = int(match.group(1))
    available = torch.cuda.device_count()
    if index >= available:
        raise ValueError(f"device {name!r} asked for, but this machine has {available} CUDA device(s)")
    return torch.device("cuda", index)


def available_cores() -> int:
    """Cores this process may run on: its CPU affinity (containers, taskset), else the machine's count."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def threads_per_worker(workers_on_host: int, cores: int | None = None) -> int:
    """Torch threads for one of ``workers_on_host`` processes sharing ``cores``: a fair share, at least 1."""
    if workers_on_host < 1:
        raise ValueError(f"workers_on_host must be at least 1, got {workers_on_host}")
    if cores is None:
        cores = available_cores()
    return max(1, cores // workers_on_host)


def configure_threads(threads: int) -> None:
    """Use ``threads`` torch threads in this process, for intra-op and (where still allowed) inter-op work."""
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError as error:
        # Torch allows this only once per process, before any inter-op work has started.
        logger.debug("inter-op threads already fixed at %d: %s", torch.get_num_interop_threads(), error)
    logger.debug(
        "torch threads: %d intra-op, %d inter-op", torch.get_num_threads(), torch.get_num_interop_threads()
    )


def configure_device(device: torch.device) -> None:
    """Per-device speed settings; on CUDA, let cuDNN pick the fastest kernels for our fixed input shapes."""
    if device.type == "cuda":
        if device.index is not None:
            # Make cuda:N the current device so library calls without an explicit device go there too.
            torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
        # fp32 (precision auto on CUDA) with TF32 tensor cores for matrix products and convolutions.
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def device_description(device: torch.device, threads: int) -> str:
    """The device as results show it: ``cpu (1 thread)``, ``cpu (2 threads)`` or the CUDA device's name."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    unit = "thread" if threads == 1 else "threads"
    return f"{device.type} ({threads} {unit})"


def gpu_index(device: torch.device, environment: dict[str, str] | None = None) -> str | None:
    """Which physical GPU ``device`` is: its entry of ``CUDA_VISIBLE_DEVICES`` (an index or a UUID) when
    that is set, else its CUDA index; None on the CPU."""
    if device.type != "cuda":
        return None
    index = device.index if device.index is not None else torch.cuda.current_device()
    visible = (os.environ if environment is None else environment).get("CUDA_VISIBLE_DEVICES")
    entries = [entry.strip() for entry in visible.split(",")] if visible else []
    return entries[index] if index < len(entries) else str(index)


def reset_peak_memory(device: torch.device) -> None:
    """Start measuring a job's peak GPU memory (nothing on the CPU)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> int | None:
    """Bytes of GPU memory the tensors of the job used at most since :func:`reset_peak_memory` (allocated,
    not the allocator's cache); None on the CPU."""
    return int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None
