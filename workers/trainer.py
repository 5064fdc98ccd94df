"""Train one configuration for a number of epochs and score it: knows nothing about HPO.

The hot path follows what ``benchmarks/train_throughput.py`` measured on CPUs (benchmarks/README.md): the
data is already on the device as tensors, batches are drawn by indexing with a seeded permutation (no
DataLoader, no per-image Python), conv models run channels-last, augmentation is batched tensor work on the
device (:mod:`workers.augmentation`), the forward pass runs in the precision of :mod:`workers.precision`
(bf16 autocast on CPUs with native bfloat16 by default), evaluation uses large batches under
``torch.inference_mode``. The learning rate follows :mod:`workers.schedules`, set before every step from a
global step counter; with the state of :mod:`workers.checkpoints` a run continues exactly where an earlier
one stopped. On CUDA each step is replayed from a captured CUDA graph where it can be (step mode ``auto``,
:mod:`workers.graph_step`), else launched eagerly (:mod:`workers.steps`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional

from workers.augmentation import Augmenter, augmenter
from workers.checkpoints import (
    CheckpointError,
    TrainingState,
    capture_objects,
    restore_objects,
    run_identity,
)
from workers.data import DatasetTensors
from workers.device import device_description
from workers.graph_step import check_step_mode, make_steps
from workers.models import build_model, parameter_count, uses_convolutions
from workers.outcome import WORST_ERROR, History, TrainingOutcome
from workers.precision import Precision, resolve_precision
from workers.steps import EagerSteps, Steps, training_step
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
    "train_with_state",
    "training_step",
]

logger = logging.getLogger(__name__)

# Added to the seed for the augmentation's generator, so that its draws do not mirror the batch order's.
AUGMENTATION_SEED_OFFSET = 1_000_003
EVALUATION_BATCH_SIZE = 2048
# Batches between checks for a non-finite training loss: each check waits for the device (a sync on CUDA).
DIVERGENCE_CHECK_INTERVAL = 32


class TrainingStopped(Exception):
    """Training stopped because ``should_stop`` said so (the master's job timeout)."""


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
    precision: Precision
    grad_scaler: torch.amp.GradScaler | None

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
    precision: str = "auto",
    resume: TrainingState | None = None,
    step_mode: str = "auto",
) -> TrainingOutcome:
    """Train ``config``'s model on ``data`` for ``epochs`` epochs, then score it on the test set.

    ``seed`` fixes the weights' initialisation, dropout, the batch order and the augmentation: the same
    configuration and seed give the same outcome on CPU. ``device_name`` is what the outcome reports as its
    device. ``schedule_epochs`` (default ``epochs``, never fewer) is the learning-rate schedule's horizon: a
    run of 2 of 4 planned epochs ends with the rate a 4-epoch run has after its second epoch. ``precision``
    is one of :data:`workers.precision.PRECISIONS`. ``resume`` is the state of an earlier run of the same
    configuration, seed, precision and horizon, after fewer epochs: this run trains only the rest, and ends
    exactly where an uninterrupted run of ``epochs`` epochs ends (on CPU). ``step_mode`` is one of
    :data:`workers.graph_step.STEP_MODES`: ``auto`` replays CUDA graphs on CUDA where the capture works and
    runs eagerly elsewhere; ``graph`` off CUDA runs eagerly too, the outcome saying why.
    Raises :class:`~workers.models.ModelBuildError` or :class:`TrainingConfigError` for an invalid
    configuration and :class:`~workers.checkpoints.CheckpointError` for a state this run cannot continue
    (before any training); a non-finite loss is not an error but a ``diverged`` outcome.
    """
    outcome, _ = train_with_state(
        config, epochs, device, data, seed=seed, device_name=device_name, schedule_epochs=schedule_epochs,
        precision=precision, resume=resume, step_mode=step_mode,
    )  # fmt: skip
    return outcome


def train_with_state(
    config: Mapping[str, Any],
    epochs: int,
    device: torch.device,
    data: DatasetTensors,
    *,
    seed: int = 0,
    device_name: str | None = None,
    schedule_epochs: int | None = None,
    precision: str = "auto",
    resume: TrainingState | None = None,
    should_stop: Callable[[], bool] | None = None,
    step_mode: str = "auto",
) -> tuple[TrainingOutcome, TrainingState | None]:
    """:func:`train`, also returning the final state to continue from (None when the run diverged).

    ``should_stop`` is asked before every training step; once it says yes, :class:`TrainingStopped` is
    raised (the master's job timeout: the job is recorded already, so nothing is measured)."""
    history = History()
    horizon = _horizon(epochs, schedule_epochs)
    check_step_mode(step_mode)
    _check_data_device(data, device)
    resolved = resolve_precision(precision, device)
    model, optimizer, plan, generators = _prepare(
        config, data, device, seed=seed, precision=resolved, horizon=horizon
    )
    run = run_identity(config, seed, resolved.name, horizon)
    if resume is not None:
        _resume(resume, run, epochs, history, (model, optimizer, plan, generators))
    steps, step_mode_reason = make_steps(
        step_mode, model, optimizer, spec=plan.spec, precision=resolved, grad_scaler=plan.grad_scaler,
        sample=_first_batch(data, plan),
    )  # fmt: skip
    for epoch in range(history.resumed_epochs + 1, epochs + 1):
        reason = _run_epoch(model, steps, data, history, plan, should_stop=should_stop)
        if reason is not None:
            history.reason = f"{reason} at epoch {epoch}"
            logger.info("diverged: %s", history.reason)
            break
        logger.debug(
            "epoch %d: train loss %.4f, validation loss %.4f, validation error %.4f",
            epoch, history.train_loss[-1], history.validation_loss[-1], history.validation_error[-1],
        )  # fmt: skip
    state = None
    if not history.diverged:
        state = history.state(run, capture_objects(model, steps.optimizer, plan.grad_scaler, generators))
    test = (
        (None, WORST_ERROR)
        if history.diverged
        else evaluate(model, data.test_x, data.test_y, precision=resolved)
    )
    outcome = history.outcome(
        test, parameter_count=parameter_count(model), device=device_name or _describe(device),
        final_learning_rate=plan.learning_rate(history.steps), precision=resolved.name,
        step_mode=steps.mode, step_mode_reason=step_mode_reason,
    )  # fmt: skip
    return outcome, state


def _horizon(epochs: int, schedule_epochs: int | None) -> int:
    """The schedule's horizon in epochs; ValueError for a run of no epochs or a horizon shorter than it."""
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    horizon = epochs if schedule_epochs is None else schedule_epochs
    if horizon < epochs:
        raise ValueError(f"schedule_epochs must be at least epochs ({epochs}), got {schedule_epochs}")
    return horizon


def _resume(
    resume: TrainingState,
    run: dict[str, Any],
    epochs: int,
    history: History,
    objects: tuple[nn.Module, torch.optim.Optimizer, _Plan, dict[str, torch.Generator]],
) -> None:
    """Load ``resume`` into a freshly prepared run of ``epochs`` epochs; CheckpointError where it cannot."""
    reason = resume.mismatch(run) or (None if resume.epochs < epochs else f"it holds {resume.epochs} epochs")
    if reason is not None:
        raise CheckpointError(f"cannot continue this state: {reason}")
    model, optimizer, plan, generators = objects
    restore_objects(resume, model, optimizer, plan.grad_scaler, generators)
    history.continue_from(resume)


def _first_batch(data: DatasetTensors, plan: _Plan) -> tuple[torch.Tensor, torch.Tensor]:
    """A full batch of training images (in the model's memory format) and labels: a graph's shapes."""
    count = plan.spec.batch_size
    return data.train_x[:count].contiguous(memory_format=plan.memory_format), data.train_y[:count]


def _prepare(
    config: Mapping[str, Any],
    data: DatasetTensors,
    device: torch.device,
    *,
    seed: int,
    precision: Precision,
    horizon: int,
) -> tuple[nn.Module, torch.optim.Optimizer, _Plan, dict[str, torch.Generator]]:
    """The model (seeded), its optimizer, the run's plan and its generators, before the first epoch."""
    spec = TrainingSpec.from_config(config)
    torch.manual_seed(seed)
    model = build_model(config, data.input_shape, data.n_classes).to(device)
    _check_batch_norm(model, spec)
    memory_format = _model_memory_format(model)
    model = model.to(memory_format=memory_format)
    optimizer = spec.make_optimizer(model.parameters())
    # Own generators, so that batch order and augmentation depend on the seed only, not on what ran before.
    # The augmentation's lives on the device: its draws need no copy to the device per batch.
    generators = {
        "batch_order": torch.Generator().manual_seed(seed),
        "augmentation": torch.Generator(device=device).manual_seed(seed + AUGMENTATION_SEED_OFFSET),
    }
    plan = _Plan(
        spec=spec,
        memory_format=memory_format,
        generator=generators["batch_order"],
        augment=augmenter(spec.augmentation, generators["augmentation"]),
        steps_per_epoch=steps_per_epoch(len(data.train_y), spec.batch_size),
        horizon_epochs=horizon,
        precision=precision,
        grad_scaler=precision.grad_scaler(),
    )
    return model, optimizer, plan, generators


def _describe(device: torch.device) -> str:
    return device_description(device, torch.get_num_threads())


def _check_data_device(data: DatasetTensors, device: torch.device) -> None:
    if data.device.type != device.type:
        raise ValueError(f"the data is on {data.device} but training was asked for on {device}")


def _check_batch_norm(model: nn.Module, spec: TrainingSpec) -> None:
    # Batch norm in training mode needs two or more values per channel; one image per batch has one.
    if spec.batch_size == 1 and any(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in model.modules()):
        raise TrainingConfigError("batch_size must be at least 2 with batch_norm, got 1")


def _run_epoch(
    model: nn.Module,
    steps: Steps,
    data: DatasetTensors,
    history: History,
    plan: _Plan,
    *,
    should_stop: Callable[[], bool] | None = None,
) -> str | None:
    """Train one epoch and score it on the validation set; ``history`` gets the results.

    Returns ``None``, or what went non-finite; then ``history`` gets no entry for this epoch.
    """
    started = time.perf_counter()
    train_loss, samples, taken = train_epoch(
        model, steps.optimizer, data.train_x, data.train_y,
        batch_size=plan.spec.batch_size, generator=plan.generator, memory_format=plan.memory_format,
        learning_rate=plan.learning_rate, first_step=history.steps, augment=plan.augment,
        precision=plan.precision, grad_scaler=plan.grad_scaler, should_stop=should_stop, steps=steps,
    )  # fmt: skip
    history.train_seconds += time.perf_counter() - started
    history.samples += samples
    history.steps += taken
    if not math.isfinite(train_loss):
        return "non-finite training loss"
    validation_loss, validation_error = evaluate(
        model, data.validation_x, data.validation_y, precision=plan.precision
    )
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
    precision: Precision | None = None,
    grad_scaler: torch.amp.GradScaler | None = None,
    should_stop: Callable[[], bool] | None = None,
    steps: Steps | None = None,
) -> tuple[float, int, int]:
    """One pass over ``inputs`` in a random order: (mean loss over the batches, images, steps).

    ``learning_rate(step)``, where given, sets the rate of global step ``first_step + i`` before the
    epoch's ``i``-th step; ``augment`` transforms each training batch; the forward pass runs under
    ``precision`` (default float32), the backward pass through ``grad_scaler`` where given (fp16). Stops
    early, returning a non-finite mean, as soon as a periodic check finds a non-finite loss. ``steps``, where
    given, runs each step (a CUDA graph's replay); by default each runs eagerly on ``optimizer``.
    """
    autocast = precision.autocast if precision is not None else contextlib.nullcontext
    runner = steps or EagerSteps(model, optimizer, autocast, grad_scaler)
    model.train()
    count = len(targets)
    # The permutation is drawn on the CPU, so the batch order is the same on every device.
    order = torch.randperm(count, generator=generator).to(inputs.device)
    # Summed on the device: reading each batch's loss would wait for the device every step.
    loss_sum = torch.zeros((), dtype=torch.float64, device=inputs.device)
    batches = samples = 0
    for step in range(steps_per_epoch(count, batch_size)):
        if should_stop is not None and should_stop():
            raise TrainingStopped(f"stopped on request after {step} step(s) of this epoch")
        index = order[step * batch_size : (step + 1) * batch_size]
        batch = inputs.index_select(0, index)
        if augment is not None:
            batch = augment(batch)
        batch = batch.contiguous(memory_format=memory_format)
        rate = None if learning_rate is None else learning_rate(first_step + step)
        loss = runner.run(batch, targets.index_select(0, index), rate)
        loss_sum += loss.detach()
        batches += 1
        samples += len(index)
        if batches % DIVERGENCE_CHECK_INTERVAL == 0 and not torch.isfinite(loss_sum).item():
            break
    _synchronize(inputs.device)
    return loss_sum.item() / batches, samples, batches


def evaluate(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    batch_size: int = EVALUATION_BATCH_SIZE,
    *,
    precision: Precision | None = None,
) -> tuple[float, float]:
    """(mean cross-entropy, error rate) of ``model`` on ``inputs`` / ``targets``, in large batches, the
    forward pass under ``precision`` (default float32)."""
    autocast = precision.autocast if precision is not None else contextlib.nullcontext
    model.eval()
    memory_format = _model_memory_format(model)
    loss_sum = torch.zeros((), dtype=torch.float64, device=inputs.device)
    wrong = torch.zeros((), dtype=torch.int64, device=inputs.device)
    with torch.inference_mode(), autocast():
        for start in range(0, len(targets), batch_size):
            batch = inputs[start : start + batch_size].contiguous(memory_format=memory_format)
            batch_targets = targets[start : start + batch_size]
            # The loss in float32 whatever the logits' format: autocast leaves the sum to float32 anyway.
            logits = model(batch).float()
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
