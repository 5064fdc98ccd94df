"""A worker's first job should start training at once: what happens only once per process is done by one
short training run before the worker says it is ready. On CUDA that is the context, cuBLAS and cuDNN
handles, autocast, the graph-capture path and the optimizer kernels: a worker's first job spent 5-7 s
before it trained (``../shared/docs/gpu-facts.md``). On the CPU it is mostly torch's lazy import of
``torch._dynamo`` by the first optimizer (about 1 s of CPU; measured 3-4 s of a first job on 2 busy cores)."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time

import torch

from workers.data import DatasetTensors
from workers.device import reset_peak_memory
from workers.trainer import train

logger = logging.getLogger(__name__)

# A small network of the kinds the spaces build (convolution, pooling, a dense layer, momentum SGD).
WARM_UP_CONFIG = {"learning_rate": 0.01, "batch_size": 32, "optimizer": "momentum", "conv_layers": 1}
# Images of each split the warm-up trains and scores on: a few full batches and a smaller last one.
WARM_UP_IMAGES = 200


def start_early_imports() -> threading.Thread:
    """Build a throwaway optimizer on a thread, so that torch's lazy ``torch._dynamo`` import runs while
    the worker waits for its run's master (the warm-up's run then takes a fraction of a second)."""

    def build() -> None:
        torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)

    thread = threading.Thread(target=build, name="early-imports", daemon=True)
    thread.start()
    return thread


def warm_up(device: torch.device, data: DatasetTensors, precision: str, step_mode: str) -> float:
    """One epoch of :data:`WARM_UP_CONFIG` on the first images; returns the seconds it took. A failure is
    logged, never raised: the jobs then pay for what the warm-up did not do."""
    started = time.monotonic()
    small = dataclasses.replace(
        data,
        train_x=data.train_x[:WARM_UP_IMAGES], train_y=data.train_y[:WARM_UP_IMAGES],
        validation_x=data.validation_x[:WARM_UP_IMAGES], validation_y=data.validation_y[:WARM_UP_IMAGES],
        test_x=data.test_x[:WARM_UP_IMAGES], test_y=data.test_y[:WARM_UP_IMAGES],
    )  # fmt: skip
    try:
        train(WARM_UP_CONFIG, 1, device, small, precision=precision, step_mode=step_mode)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    except Exception as error:  # a warm-up must never stop a worker that can train
        logger.warning("warm-up failed (%s: %s); the first job initialises what it needs itself",
                       type(error).__name__, error)  # fmt: skip
    reset_peak_memory(device)  # the first job's peak is its own
    return time.monotonic() - started
