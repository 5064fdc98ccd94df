"""What a training run measured: the per-epoch history as it grows, and the outcome it ends with."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from workers.checkpoints import TrainingState

# The error reported where a diverged run has no measured one: the worst possible.
WORST_ERROR = 1.0


@dataclass(frozen=True)
class TrainingOutcome:
    """What one training run measured; :meth:`to_info` gives the trainer's part of a result's ``info``.

    Per-epoch tuples hold one entry per completed epoch (``total_epochs``), including those of the state
    a resumed run continued from; ``epochs_trained`` and the timings count this run's epochs only. A
    diverged run has ``diverged`` set, ``reason`` saying where, errors of 1.0 and losses of ``None`` where
    it measured none. ``final_learning_rate`` is the schedule's rate after the last step: where a continued
    run would start. ``precision`` is the resolved one (``fp32``, ``bf16`` or ``fp16``).
    """

    validation_error: float
    validation_loss: float | None
    test_error: float
    test_loss: float | None
    validation_error_per_epoch: tuple[float, ...]
    validation_loss_per_epoch: tuple[float, ...]
    train_loss_per_epoch: tuple[float, ...]
    epochs_trained: int
    total_epochs: int
    wall_seconds: float
    train_seconds: float
    samples_per_second: float
    parameter_count: int
    device: str
    final_learning_rate: float
    precision: str
    # How the training steps ran: "eager" (one kernel launch per operation) or "graph" (replays of a captured
    # CUDA graph); step_mode_reason says why eager ran where a graph was wanted (workers.graph_step).
    step_mode: str = "eager"
    step_mode_reason: str | None = None
    diverged: bool = False
    reason: str | None = None

    def to_info(self) -> dict[str, Any]:
        """The fields as builtins (floats, ints, lists, str, bool, None), ready for the wire and JSON."""
        return {
            key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()
        }


@dataclass
class History:
    """Per-epoch measurements, appended as the epochs complete, and how the run ended."""

    started: float = field(default_factory=time.perf_counter)
    train_loss: list[float] = field(default_factory=list)
    validation_loss: list[float] = field(default_factory=list)
    validation_error: list[float] = field(default_factory=list)
    samples: int = 0
    # Optimizer steps taken so far: the learning-rate schedule's position.
    steps: int = 0
    # Epochs of the state this run resumed from (0 for a fresh run).
    resumed_epochs: int = 0
    train_seconds: float = 0.0
    # What went non-finite and when; None while the run is healthy.
    reason: str | None = None

    @property
    def diverged(self) -> bool:
        return self.reason is not None

    def continue_from(self, state: TrainingState) -> None:
        """Take over the curves and the step counter of the state a run resumes from."""
        self.train_loss = list(state.train_loss)
        self.validation_loss = list(state.validation_loss)
        self.validation_error = list(state.validation_error)
        self.steps = state.steps
        self.resumed_epochs = state.epochs

    def state(self, run: dict[str, Any], objects: dict[str, Any]) -> TrainingState:
        """The state to continue this run from; ``objects`` from ``checkpoints.capture_objects``."""
        return TrainingState(
            run=run,
            epochs=len(self.train_loss),
            steps=self.steps,
            train_loss=list(self.train_loss),
            validation_loss=list(self.validation_loss),
            validation_error=list(self.validation_error),
            **objects,
        )

    def outcome(
        self,
        test: tuple[float | None, float],
        *,
        parameter_count: int,
        device: str,
        final_learning_rate: float,
        precision: str,
        step_mode: str = "eager",
        step_mode_reason: str | None = None,
    ) -> TrainingOutcome:
        """The outcome of the run so far, with ``test`` = (test loss, test error) as scored."""
        diverged = self.diverged
        return TrainingOutcome(
            validation_error=WORST_ERROR if diverged else self.validation_error[-1],
            validation_loss=None if diverged else self.validation_loss[-1],
            test_error=test[1],
            test_loss=test[0],
            validation_error_per_epoch=tuple(self.validation_error),
            validation_loss_per_epoch=tuple(self.validation_loss),
            train_loss_per_epoch=tuple(self.train_loss),
            epochs_trained=len(self.train_loss) - self.resumed_epochs,
            total_epochs=len(self.train_loss),
            wall_seconds=time.perf_counter() - self.started,
            train_seconds=self.train_seconds,
            samples_per_second=self.samples / self.train_seconds if self.train_seconds > 0 else 0.0,
            parameter_count=parameter_count,
            device=device,
            final_learning_rate=final_learning_rate,
            precision=precision,
            step_mode=step_mode,
            step_mode_reason=step_mode_reason,
            diverged=diverged,
            reason=self.reason,
        )
