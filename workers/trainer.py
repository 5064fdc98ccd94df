"""Train one configuration for a number of epochs and score it: knows nothing about HPO.

The hot path follows the measured facts for CPUs (docs in ``shared/docs/perf-facts.md``): the data is
already on the device as tensors, batches are drawn by indexing with a seeded permutation (no DataLoader,
no per-image Python), conv models run channels-last, augmentation is batched tensor work on the device
(:mod:`workers.augmentation`), evaluation uses large batches under ``torch.inference_mode``. The learning
rate follows :mod:`workers.schedules`, set before every step from a global step counter.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional

from workers.augmentation import Augmenter, augmenter
from workers.data import DatasetTensors
from workers.device import device_description
from workers.models import build_model, parameter_count, uses_convolutions
from workers.training_spec import OPTIMIZERS, TrainingConfigError, TrainingSpec

__all__ = [
    "OPTIMIZERS",
    "TrainingConfigError",
    "TrainingOutcome",
    "TrainingSpec",
    "evaluate",
    "steps_per_epoch",
    "train",
    "train_epoch",
]

logger = logging.getLogger(__name__)

# Added to the seed for the augmentation's generator, so that its draws do not mirror the batch order's.
AUGMENTATION_SEED_OFFSET = 1_000_003
EVALUATION_BATCH_SIZE = 2048
# Batches between checks for a non-finite training loss: each check waits for the device (a sync on CUDA).
DIVERGENCE_CHECK_INTERVAL = 32
# The error reported where a diverged run has no measured one: the worst possible.
WORST_ERROR = 1.0


@dataclass(frozen=True)
class TrainingOutcome:
    """What one training run measured; :meth:`to_info` gives the trainer's part of a result's ``info``.

    Per-epoch tuples hold one entry per completed epoch (``epochs_trained``). A diverged run has
    ``diverged`` set, ``reason`` saying where, errors of 1.0 and losses of ``None`` where it measured none.
    ``final_learning_rate`` is the schedule's rate after the last step: where a continued run would start.
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
    final_learning_rate: float
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
    # Optimizer steps taken so far: the learning-rate schedule's position.
    steps: int = 0
    train_seconds: float = 0.0
    # What went non-finite and when; None while the run is healthy.
    reason: str | None = None


@dataclass(frozen=True)
class _Plan:
    """How every epoch of one run trains: batches, schedule, augmentation."""

    spec: TrainingSpec
    memory_format: torch.memory_format
    # Batch order: drawn on the CPU, so that it is the same on every device.
    generator: torch.Generator
    augment: Augmenter | None
    steps_per_epoch: int
    horizon_epochs: int

    def learning_rate(self, step: int) -> float:
        return self.spec.learning_rate_at(step, self.steps_per_epoch, self.horizon_epochs)


def train(
    config: Mapping[str, Any],
    epochs: int,
    device: torch.device,
    data: DatasetTensors,
    *,
    seed: int = 0,
    device_name: str | None = None,
    schedule_epochs: int | None = None,
) -> TrainingOutcome:
    """Train ``config``'s model on ``data`` for ``epochs`` epochs, then score it on the test set.

    ``seed`` fixes the weights' initialisation, dropout, the batch order and the augmentation: the same
    configuration and seed give the same outcome on CPU. ``device_name`` is what the outcome reports as its
    device. ``schedule_epochs`` (default ``epochs``, never fewer) is the learning-rate schedule's horizon: a
    run of 2 of 4 planned epochs ends with the rate a 4-epoch run has after its second epoch.
    Raises :class:`~workers.models.ModelBuildError` or :class:`TrainingConfigError` for an invalid
    configuration; a non-finite loss is not an error but a ``diverged`` outcome.
    """
    history = _History(started=time.perf_counter())
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    horizon = epochs if schedule_epochs is None else schedule_epochs
    if horizon < epochs:
        raise ValueError(f"schedule_epochs must be at least epochs ({epochs}), got {schedule_epochs}")
    _check_data_device(data, device)
    spec = TrainingSpec.from_config(config)
    torch.manual_seed(seed)
    model = build_model(config, data.input_shape, data.n_classes).to(device)
    _check_batch_norm(model, spec)
    memory_format = _model_memory_format(model)
    model = model.to(memory_format=memory_format)
    optimizer = spec.make_optimizer(model.parameters())
    # Own generators, so that batch order and augmentation depend on the seed only, not on what ran before.
    # The augmentation's lives on the device: its draws need no copy to the device per batch.
    augment_generator = torch.Generator(device=device).manual_seed(seed + AUGMENTATION_SEED_OFFSET)
    plan = _Plan(
        spec=spec,
        memory_format=memory_format,
        generator=torch.Generator().manual_seed(seed),
        augment=augmenter(spec.augmentation, augment_generator),
        steps_per_epoch=steps_per_epoch(len(data.train_y), spec.batch_size),
        horizon_epochs=horizon,
    )
    for epoch in range(1, epochs + 1):
        reason = _run_epoch(model, optimizer, data, history, plan)
        if reason is not None:
            history.reason = f"{reason} at epoch {epoch}"
            logger.info("diverged: %s", history.reason)
            break
        logger.debug(
            "epoch %d: train loss %.4f, validation loss %.4f, validation error %.4f",
            epoch, history.train_loss[-1], history.validation_loss[-1], history.validation_error[-1],
        )  # fmt: skip
    final_rate = plan.learning_rate(history.steps)
    return _outcome(model, data, history, device_name or _describe(device), final_rate)


def _describe(device: torch.device) -> str:
    return device_description(device, torch.get_num_threads())


def _outcome(
    model: nn.Module, data: DatasetTensors, history: _History, device: str, final_learning_rate: float
) -> TrainingOutcome:
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
        final_learning_rate=final_learning_rate,
        diverged=diverged,
        reason=history.reason,
    )


def _check_data_device(data: DatasetTensors, device: torch.device) -> None:
    if data.device.type != device.type:
        raise ValueError(f"the data is on {data.device} but training was asked for on {device}")


def _check_batch_norm(model: nn.Module, spec: TrainingSpec) -> None:
    # Batch norm in training mode needs two or more values per channel; one image per batch has one.
    if spec.batch_size == 1 and any(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in model.modules()):
        raise TrainingConfigError("batch_size must be at least 2 with batch_norm, got 1")


def _run_epoch(
    model: nn.Module, optimizer: torch.optim.Optimizer, data: DatasetTensors, history: _History, plan: _Plan
) -> str | None:
    """Train one epoch and score it on the validation set; ``history`` gets the results.

    Returns ``None``, or what went non-finite; then ``history`` gets no entry for this epoch.
    """
    started = time.perf_counter()
    train_loss, samples, steps = train_epoch(
        model, optimizer, data.train_x, data.train_y,
        batch_size=plan.spec.batch_size, generator=plan.generator, memory_format=plan.memory_format,
        learning_rate=plan.learning_rate, first_step=history.steps, augment=plan.augment,
    )  # fmt: skip
    history.train_seconds += time.perf_counter() - started
    history.samples += samples
    history.steps += steps
    if not math.isfinite(train_loss):
        return "non-finite training loss"
    validation_loss, validation_error = evaluate(model, data.validation_x, data.validation_y)
    if not math.isfinite(validation_loss):
        return "non-finite validation loss"
    history.train_loss.append(train_loss)
    history.validation_loss.append(validation_loss)
    history.validation_error.append(validation_error)
    return None


def steps_per_epoch(count: int, batch_size: int) -> int:
    """Batches (optimizer steps) of one epoch over ``count`` images.

    A final batch of exactly one image is dropped unless it is the only batch: batch norm cannot train on
    one image (a single value per channel has no variance), and one image in thousands is no loss.
    """
    full, rest = divmod(count, batch_size)
    return full + (1 if rest > 1 or (rest == 1 and full == 0) else 0)


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    batch_size: int,
    generator: torch.Generator,
    memory_format: torch.memory_format = torch.contiguous_format,
    learning_rate: Callable[[int], float] | None = None,
    first_step: int = 0,
    augment: Augmenter | None = None,
) -> tuple[float, int, int]:
    """One pass over ``inputs`` in a random order: (mean loss over the batches, images, steps).

    ``learning_rate(step)``, where given, sets the rate of global step ``first_step + i`` before the
    epoch's ``i``-th step; ``augment`` transforms each training batch. Stops early, returning a non-finite
    mean, as soon as a periodic check finds a non-finite loss.
    """
    model.train()
    count = len(targets)
    # The permutation is drawn on the CPU, so the batch order is the same on every device.
    order = torch.randperm(count, generator=generator).to(inputs.device)
    # Summed on the device: reading each batch's loss would wait for the device every step.
    loss_sum = torch.zeros((), dtype=torch.float64, device=inputs.device)
    batches = samples = 0
    for step in range(steps_per_epoch(count, batch_size)):
        index = order[step * batch_size : (step + 1) * batch_size]
        batch = inputs.index_select(0, index)
        if augment is not None:
            batch = augment(batch)
        batch = batch.contiguous(memory_format=memory_format)
        if learning_rate is not None:
            rate = learning_rate(first_step + step)
            for group in optimizer.param_groups:
                group["lr"] = rate
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
    return loss_sum.item() / batches, samples, batches


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
