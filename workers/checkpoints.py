"""Checkpoint continuation: the state a training run continues from, and where workers keep it.

When successive halving promotes a configuration to a larger budget, the worker that gets it resumes from
the state saved by the job on the largest smaller budget and trains only the remaining epochs. A
:class:`TrainingState` holds everything that decides what the following epochs compute: weights, optimizer
and gradient-scaler state, the schedule's step counter, every random generator (torch's global one for
dropout, the batch order's, the augmentation's) and the per-epoch history; since the learning rate is a
function of the global step over the run's largest budget, a resumed run takes the very same steps as an
uninterrupted one (exactly, on CPU).

Files are written atomically (a temporary file, then ``os.replace``) and read with
``torch.load(weights_only=True)``: tensors and builtins only, never arbitrary pickled objects. A missing,
damaged or mismatching checkpoint is never an error for the job: :meth:`CheckpointStore.resume_state` logs a
warning and the job trains from scratch.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

from hpo_service.checkpoint_files import checkpoint_path, config_directory, saved_epochs

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
# Optimizer settings that belong to the optimizer as built, not to a checkpoint: the learning rate (set
# before every step anyway; a device tensor in graph mode) and how the step is computed, which differs
# between step modes (workers.graph_step), so a state saved in one mode continues in the other.
BUILT_OPTIMIZER_KEYS = ("lr", "capturable", "fused", "foreach", "differentiable")
# The random generators a run draws from, by their name in a state.
GENERATORS = ("global", "cuda", "batch_order", "augmentation")


class CheckpointError(Exception):
    """A checkpoint cannot be used (missing, damaged, another format, or another run's configuration)."""


@dataclass(frozen=True, eq=False)
class TrainingState:
    """A training run after ``epochs`` epochs (``steps`` optimizer steps): enough to continue it exactly.

    ``run`` says which run this is (:func:`run_identity`: configuration, seed, precision, schedule
    horizon); a run continues only a state with the same identity (:meth:`mismatch`). ``rng`` maps each of
    :data:`GENERATORS` to its state (a CPU byte tensor), or None where the run has no such generator. The
    three lists are the per-epoch curves so far.
    """

    run: dict[str, Any]
    epochs: int
    steps: int
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    grad_scaler: dict[str, Any] | None
    rng: dict[str, torch.Tensor | None]
    train_loss: list[float]
    validation_loss: list[float]
    validation_error: list[float]

    def to_dict(self) -> dict[str, Any]:
        """The state as one dict of tensors and builtins (shallow: tensors are not copied)."""
        return {"format": FORMAT_VERSION, **{item.name: getattr(self, item.name) for item in fields(self)}}

    @classmethod
    def from_dict(cls, data: Any) -> TrainingState:
        """The state :meth:`to_dict` gave; :class:`CheckpointError` for anything else."""
        if not isinstance(data, Mapping) or data.get("format") != FORMAT_VERSION:
            found = data.get("format") if isinstance(data, Mapping) else type(data).__name__
            raise CheckpointError(f"not a checkpoint of format {FORMAT_VERSION} (found {found!r})")
        missing = [item.name for item in fields(cls) if item.name not in data]
        if missing:
            raise CheckpointError(f"checkpoint lacks {', '.join(missing)}")
        state = cls(**{item.name: data[item.name] for item in fields(cls)})
        if not 1 <= state.epochs == len(state.train_loss) == len(state.validation_error):
            raise CheckpointError(f"checkpoint history does not match its {state.epochs} epoch(s)")
        if not isinstance(state.run, Mapping) or set(state.rng) != set(GENERATORS):
            raise CheckpointError("checkpoint has no run identity or not the expected generators")
        return state

    def mismatch(self, run: Mapping[str, Any]) -> str | None:
        """Why the run ``run`` (:func:`run_identity`) must not continue this state; None when it may."""
        for key, value in run.items():
            if self.run.get(key) != value:
                return f"{key} differs (checkpoint {self.run.get(key)!r}, job {value!r})"
        return None


def run_identity(config: Mapping[str, Any], seed: int, precision: str, horizon_epochs: int) -> dict[str, Any]:
    """What makes two runs the same run, epoch for epoch: only such a run may continue another's state."""
    return {"config": dict(config), "seed": seed, "precision": precision, "horizon_epochs": horizon_epochs}


def capture_objects(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    grad_scaler: torch.amp.GradScaler | None,
    generators: Mapping[str, torch.Generator],
) -> dict[str, Any]:
    """The ``model``, ``optimizer``, ``grad_scaler`` and ``rng`` entries of a state (tensors not copied)."""
    device = next(model.parameters()).device
    rng: dict[str, torch.Tensor | None] = {name: each.get_state() for name, each in generators.items()}
    rng["global"] = torch.get_rng_state()
    rng["cuda"] = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return {
        "model": model.state_dict(),
        "optimizer": _plain_rates(optimizer.state_dict()),
        "grad_scaler": None if grad_scaler is None else grad_scaler.state_dict(),
        "rng": rng,
    }


def restore_objects(
    state: TrainingState,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    grad_scaler: torch.amp.GradScaler | None,
    generators: Mapping[str, torch.Generator],
) -> None:
    """Load what :func:`capture_objects` took back into a freshly built run; :class:`CheckpointError` if
    the state does not fit it (other shapes, another optimizer)."""
    device = next(model.parameters()).device
    try:
        model.load_state_dict(state.model)
        load_optimizer_state(optimizer, state.optimizer)
        if grad_scaler is not None and state.grad_scaler is not None:
            grad_scaler.load_state_dict(state.grad_scaler)
        for name, generator in generators.items():
            generator.set_state(_present(state.rng[name], name))
        torch.set_rng_state(_present(state.rng["global"], "global"))
        if device.type == "cuda":
            torch.cuda.set_rng_state(_present(state.rng["cuda"], "cuda"), device)
    except (RuntimeError, ValueError, KeyError, TypeError) as error:
        raise CheckpointError(
            f"the checkpoint does not fit this run: {type(error).__name__}: {error}"
        ) from error


def load_optimizer_state(optimizer: torch.optim.Optimizer, saved: Mapping[str, Any]) -> None:
    """Load ``saved`` (an optimizer's ``state_dict``) into ``optimizer``, keeping its
    :data:`BUILT_OPTIMIZER_KEYS`: the same objects (a graph's learning-rate tensor stays the one the graph
    reads), and state placed as they need (capturable optimizers keep their step counters on the device)."""
    built = [
        {key: group[key] for key in BUILT_OPTIMIZER_KEYS if key in group} for group in optimizer.param_groups
    ]
    groups = [{**group, **values} for group, values in zip(saved["param_groups"], built, strict=False)]
    if len(groups) != len(saved["param_groups"]):
        raise ValueError(f"the state has {len(saved['param_groups'])} parameter groups, not {len(built)}")
    optimizer.load_state_dict({**saved, "param_groups": groups})
    # load_state_dict copies the groups' values: put the built objects back.
    for group, values in zip(optimizer.param_groups, built, strict=True):
        group.update(values)


def _plain_rates(state: dict[str, Any]) -> dict[str, Any]:
    # A graph's learning rate is a device tensor: a state holds it as a float, like an eager run's.
    groups = [
        {**group, "lr": float(group["lr"])} if isinstance(group["lr"], torch.Tensor) else group
        for group in state["param_groups"]
    ]
    return {**state, "param_groups": groups}


def _present(state: torch.Tensor | None, name: str) -> torch.Tensor:
    if state is None:
        raise CheckpointError(f"checkpoint has no state of the {name} generator")
    return state


def save_state(path: Path, state: TrainingState) -> None:
    """Write ``state`` to ``path`` atomically: readers see the old file, or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        torch.save(state.to_dict(), temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def load_state(path: Path) -> TrainingState:
    """The state in ``path``, on the CPU; :class:`CheckpointError` when it is missing or unusable."""
    try:
        # weights_only: tensors and builtins only; a checkpoint can never run code in this process.
        data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as error:
        raise CheckpointError(f"{path} is missing") from error
    except Exception as error:  # torch.load raises many kinds on a damaged file: each means unusable
        raise CheckpointError(f"{path} is unreadable: {type(error).__name__}: {error}") from error
    try:
        return TrainingState.from_dict(data)
    except TypeError as error:
        raise CheckpointError(f"{path}: {error}") from error


class CheckpointStore:
    """The checkpoints of one run, under ``RUN_DIR/checkpoints`` (:mod:`hpo_service.checkpoint_files`)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir

    def resume_state(
        self, config_id: Sequence[int], epochs: int, run: Mapping[str, Any]
    ) -> TrainingState | None:
        """The latest usable state of ``config_id`` before ``epochs`` epochs for the run ``run``
        (:func:`run_identity`), or None to train afresh.

        Tries the saved epochs from the largest down; each unusable file is a logged warning, never an
        error: continuation saves time, it must not fail jobs.
        """
        directory = config_directory(self.run_dir, config_id)
        for saved in saved_epochs(directory):
            if saved >= epochs:
                continue
            path = checkpoint_path(self.run_dir, config_id, saved)
            try:
                state = load_state(path)
            except CheckpointError as error:
                logger.warning("job %s: checkpoint unusable: %s", tuple(config_id), error)
                continue
            reason = state.mismatch(run)
            if reason is None and state.epochs == saved:
                return state
            reason = reason or f"it holds {state.epochs} epoch(s), not {saved}"
            logger.warning("job %s: not resuming from %s: %s", tuple(config_id), path, reason)
        return None

    def save(self, config_id: Sequence[int], state: TrainingState) -> Path:
        """Save ``state`` as ``config_id``'s checkpoint after ``state.epochs``; remove its older ones."""
        path = checkpoint_path(self.run_dir, config_id, state.epochs)
        save_state(path, state)
        self.discard(config_id, below=state.epochs)
        return path

    def discard(self, config_id: Sequence[int], below: int | None = None) -> None:
        """Remove ``config_id``'s checkpoints (those before ``below`` epochs): no job resumes from them."""
        for saved in saved_epochs(config_directory(self.run_dir, config_id)):
            if below is None or saved < below:
                checkpoint_path(self.run_dir, config_id, saved).unlink(missing_ok=True)
