"""Train one configuration for a number of epochs and score it: knows nothing about HPO.

The hot path follows the measured facts for CPUs (docs in ``shared/docs/perf-facts.md``): the data is
already on the device as tensors, batches are drawn by indexing with a seeded permutation (no DataLoader,
no per-image Python), conv models run channels-last, evaluation uses large batches under
``torch.inference_mode``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional

from workers.data import DatasetTensors
from workers.device import device_description
from workers.models import (
    ConfigurationError,
    build_model,
    parameter_count,
    read_float,
    read_int,
    uses_convolutions,
)

logger = logging.getLogger(__name__)

OPTIMIZERS = ("sgd", "adam")
EVALUATION_BATCH_SIZE = 2048
# Batches between checks for a non-finite training loss: each check waits for the device (a sync on CUDA).
DIVERGENCE_CHECK_INTERVAL = 32
# The error reported where a diverged run has no measured one: the worst possible.
WORST_ERROR = 1.0


class TrainingConfigError(ConfigurationError):
    """The training hyperparameters of a configuration are invalid (e.g. an unknown optimizer)."""


@dataclass(frozen=True)
class TrainingSpec:
    """The training hyperparameters of one configuration, validated."""

    learning_rate: float = 0.01
    batch_size: int = 64
    optimizer: str = "sgd"
    # SGD only; a configuration with optimizer "adam" has no momentum key.
    momentum: float = 0.0

    def __post_init__(self) -> None:
        if self.learning_rate <= 0:
            raise TrainingConfigError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.batch_size < 1:
            raise TrainingConfigError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.optimizer not in OPTIMIZERS:
            raise TrainingConfigError(
                f"unknown optimizer {self.optimizer!r}: choose one of {', '.join(OPTIMIZERS)}"
            )
        if not 0.0 <= self.momentum < 1.0:
            raise TrainingConfigError(f"momentum must be in [0, 1), got {self.momentum}")

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> TrainingSpec:
        """The spec of a configuration; absent keys take the defaults, keys it does not know are ignored."""
        defaults = cls()
        return cls(
            learning_rate=read_float(config, "learning_rate", defaults.learning_rate, TrainingConfigError),
            batch_size=read_int(config, "batch_size", defaults.batch_size, TrainingConfigError),
            optimizer=str(config.get("optimizer", defaults.optimizer)).lower(),
            momentum=read_float(config, "momentum", defaults.momentum, TrainingConfigError),
        )

    def make_optimizer(self, parameters: Iterator[nn.Parameter]) -> torch.optim.Optimizer:
        if self.optimizer == "adam":
            return torch.optim.Adam(parameters, lr=self.learning_rate)
        return torch.optim.SGD(parameters, lr=self.learning_rate, momentum=self.momentum)


@dataclass(frozen=True)
class TrainingOutcome:
    """What one training run measured; :meth:`to_info` gives the trainer's part of a result's ``info``.

    Per-epoch tuples hold one entry per completed epoch (``epochs_trained``). A diverged run has
    ``diverged`` set, ``reason`` saying where, errors of 1.0 and losses of ``None`` where it measured none.
    """

    validation_error: float
    validation_loss: float | None
    test_error: float
    test_loss: float | None
    validation_error_per_epoch: tuple[float, ...]
    validation_loss_per_epoch: tuple[float, ...]
    train_loss_per_epoch: tuple[float, ...]
    epochs_trained: int
    wall_seconds: float
    train_seconds: float
    samples_per_second: float
    parameter_count: int
    device: str
    diverged: bool = False
    reason: str | None = None

    def to_info(self) -> dict[str, Any]:
        """The fields as builtins (floats, ints, lists, str, bool, None), ready for the wire and JSON."""
        return {
            key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()
        }


@dataclass
class _History:
    """Per-epoch measurements, appended as the epochs complete, and how the run ended."""

    started: float
    train_loss: list[float] = field(default_factory=list)
    validation_loss: list[float] = field(default_factory=list)
    validation_error: list[float] = field(default_factory=list)
    samples: int = 0
    train_seconds: float = 0.0
    # What went non-finite and when; None while the run is healthy.
    reason: str | None = None


def train(
    config: Mapping[str, Any],
    epochs: int,
    device: torch.device,
    data: DatasetTensors,
    *,
    seed: int = 0,
    device_name: str | None = None,
) -> TrainingOutcome:
    """Train ``config``'s model on ``data`` for ``epochs`` epochs, then score it on the test set.

    ``seed`` fixes the weights' initialisation, dropout and the batch order: the same configuration and
    seed give the same outcome on CPU. ``device_name`` is what the outcome reports as its device.
    Raises :class:`~workers.models.ModelBuildError` or :class:`TrainingConfigError` for an invalid
    configuration; a non-finite loss is not an error but a ``diverged`` outcome.
    """
    history = _History(started=time.perf_counter())
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    _check_data_device(data, device)
    spec = TrainingSpec.from_config(config)
    torch.manual_seed(seed)
    model = build_model(config, data.input_shape, data.n_classes).to(device)
    memory_format = _model_memory_format(model)
    model = model.to(memory_format=memory_format)
    optimizer = spec.make_optimizer(model.parameters())
    # Its own generator, so that the batch order depends on the seed only, not on what ran before.
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(1, epochs + 1):
        reason = _run_epoch(
            model, optimizer, data, history, batch_size=spec.batch_size, generator=generator,
            memory_format=memory_format,
        )  # fmt: skip
        if reason is not None:
            history.reason = f"{reason} at epoch {epoch}"
            logger.info("diverged: %s", history.reason)
            break
        logger.debug(
            "epoch %d: train loss %.4f, validation loss %.4f, validation error %.4f",
            epoch, history.train_loss[-1], history.validation_loss[-1], history.validation_error[-1],
        )  # fmt: skip
    return _outcome(model, data, history, device_name or _describe(device))


def _describe(device: torch.device) -> str:
    return device_description(device, torch.get_num_threads())


def _outcome(model: nn.Module, data: DatasetTensors, history: _History, device: str) -> TrainingOutcome:
    """Score the test set (unless the run diverged) and gather everything measured into the outcome."""
    diverged = history.reason is not None
    test_loss, test_error = (None, WORST_ERROR) if diverged else evaluate(model, data.test_x, data.test_y)
    return TrainingOutcome(
        validation_error=WORST_ERROR if diverged else history.validation_error[-1],
        validation_loss=None if diverged else history.validation_loss[-1],
        test_error=test_error,
        test_loss=test_loss,
        validation_error_per_epoch=tuple(history.validation_error),
        validation_loss_per_epoch=tuple(history.validation_loss),
        train_loss_per_epoch=tuple(history.train_loss),
        epochs_trained=len(history.train_loss),
        wall_seconds=time.perf_counter() - history.started,
        train_seconds=history.train_seconds,
        samples_per_second=history.samples / history.train_seconds if history.train_seconds > 0 else 0.0,
        parameter_count=parameter_count(model),
        device=device,
        diverged=diverged,
        reason=history.reason,
    )


def _check_data_device(data: DatasetTensors, device: torch.device) -> None:
    if data.device.type != device.type:
        raise ValueError(f"the data is on {data.device} but training was asked for on {device}")


def _run_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: DatasetTensors,
    history: _History,
    *,
    batch_size: int,
    generator: torch.Generator,
    memory_format: torch.memory_format,
) -> str | None:
    """Train one epoch and score it on the validation set; ``history`` gets the results.

    Returns ``None``, or what went non-finite; then ``history`` gets no entry for this epoch.
    """
    started = time.perf_counter()
    train_loss, samples = train_epoch(
        model, optimizer, data.train_x, data.train_y,
        batch_size=batch_size, generator=generator, memory_format=memory_format,
    )  # fmt: skip
    history.train_seconds += time.perf_counter() - started
    history.samples += samples
    if not math.isfinite(train_loss):
        return "non-finite training loss"
    validation_loss, validation_error = evaluate(model, data.validation_x, data.validation_y)
    if not math.isfinite(validation_loss):
        return "non-finite validation loss"
    history.train_loss.append(train_loss)
    history.validation_loss.append(validation_loss)
    history.validation_error.append(validation_error)
    return None


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    batch_size: int,
    generator: torch.Generator,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> tuple[float, int]:
    """One pass over ``inputs`` in a random order: (mean loss over the batches, images processed).

    Stops early, returning a non-finite mean, as soon as a periodic check finds a non-finite loss.
    """
    model.train()
    count = len(targets)
    # The permutation is drawn on the CPU, so the batch order is the same on every device.
    order = torch.randperm(count, generator=generator).to(inputs.device)
    # Summed on the device: reading each batch's loss would wait for the device every step.
    loss_sum = torch.zeros((), dtype=torch.float64, device=inputs.device)
    batches = samples = 0
    for start in range(0, count, batch_size):
        index = order[start : start + batch_size]
        batch = inputs.index_select(0, index).contiguous(memory_format=memory_format)
        optimizer.zero_grad(set_to_none=True)
        loss = functional.cross_entropy(model(batch), targets.index_select(0, index))
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach()
        batches += 1
        samples += len(index)
        if batches % DIVERGENCE_CHECK_INTERVAL == 0 and not torch.isfinite(loss_sum).item():
            break
    _synchronize(inputs.device)
    return loss_sum.item() / batches, samples


def evaluate(
    model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, batch_size: int = EVALUATION_BATCH_SIZE
) -> tuple[float, float]:
    """(mean cross-entropy, error rate) of ``model`` on ``inputs`` / ``targets``, in large batches."""
    model.eval()
    memory_format = _model_memory_format(model)
    loss_sum = torch.zeros((), dtype=torch.float64, device=inputs.device)
    wrong = torch.zeros((), dtype=torch.int64, device=inputs.device)
    with torch.inference_mode():
        for start in range(0, len(targets), batch_size):
            batch = inputs[start : start + batch_size].contiguous(memory_format=memory_format)
            batch_targets = targets[start : start + batch_size]
            logits = model(batch)
            loss_sum += functional.cross_entropy(logits, batch_targets, reduction="sum")
            wrong += (logits.argmax(dim=1) != batch_targets).sum()
    count = len(targets)
    return loss_sum.item() / count, wrong.item() / count


def _model_memory_format(model: nn.Module) -> torch.memory_format:
    # Conv layers run faster on channels-last tensors (measured ~30 % on CPU); an MLP gains nothing.
    return torch.channels_last if uses_convolutions(model) else torch.contiguous_format


def _synchronize(device: torch.device) -> None:
    # CUDA runs asynchronously: without this the epoch's time would stop before its work did.
    if device.type == "cuda":
        torch.cuda.synchronize(device)
