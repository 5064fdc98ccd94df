"""The HpBandSter worker: a thin shell that turns a job into ``train(...)`` and its outcome into a result.

With continuation on (:mod:`workers.continuation`), a job of a configuration that an earlier job trained on
a smaller budget resumes from that job's checkpoint and trains only the remaining epochs.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

import torch

from hpo_service.hpbandster.worker import ServiceWorker
from hpo_service.records import EvaluationResult, JobRequest, JobStatus
from workers.checkpoints import CheckpointError, TrainingState, run_identity
from workers.continuation import ContinuationPlan, budget_to_epochs
from workers.data import DatasetTensors
from workers.device import gpu_index, peak_memory, reset_peak_memory
from workers.graph_step import check_step_mode
from workers.models import ConfigurationError
from workers.outcome import TrainingOutcome
from workers.trainer import TrainingStopped, train_with_state

__all__ = ["TrainingWorker", "budget_to_epochs"]

logger = logging.getLogger(__name__)


class TrainingWorker(ServiceWorker):
    """Trains the CNN of each job on data loaded once, on this process's device.

    ``precision`` is a resolved one (``fp32``, ``bf16``, ``fp16``: checkpoints record it, so it must not
    be ``auto``); ``continuation`` says whether and how jobs resume (default: never); ``step_mode`` is how
    training steps run (:data:`workers.graph_step.STEP_MODES`; results say which mode each job really used).
    """

    def __init__(
        self,
        run_id: str,
        *,
        data: DatasetTensors,
        device: torch.device,
        device_name: str,
        seed: int = 0,
        precision: str = "fp32",
        continuation: ContinuationPlan | None = None,
        step_mode: str = "auto",
        **kwargs: Any,
    ) -> None:
        super().__init__(run_id, **kwargs)
        self.step_mode = check_step_mode(step_mode)
        self.data = data
        self.device = device
        self.device_name = device_name
        self.seed = seed
        self.precision = precision
        self.continuation = continuation or ContinuationPlan()
        self.identity = f"{socket.gethostname()}:{os.getpid()}"

    def evaluate(self, job: JobRequest) -> EvaluationResult:
        config_id, config = job.config_id, dict(job.config)
        epochs = budget_to_epochs(job.budget)
        plan = self.continuation
        context: dict[str, Any] = {
            "dataset": self.data.name,
            "seed": self.training_seed(config),
            "worker": self.identity,
            "device": self.device_name,
            "gpu_index": gpu_index(self.device),
            "epochs": epochs,
            "schedule_epochs": plan.horizon(epochs),
            "resumed_from_budget": None,
        }
        logger.debug("job %s: %d epoch(s) of %s", config_id, epochs, config)
        reset_peak_memory(self.device)
        failure: EvaluationResult | None = None
        try:
            outcome, state, resumed_from = self._train(config_id, config, epochs, plan)
        except ConfigurationError as error:
            # The configuration's own fault (cannot be built for this input, bad values): a failed result.
            failure = EvaluationResult.failure(
                f"invalid configuration: {error}", info=self._measured(context)
            )
        except torch.cuda.OutOfMemoryError as error:
            # The measured peak is the one it reached before it ran out.
            failure = EvaluationResult.failure(f"CUDA out of memory: {error}", info=self._measured(context))
        except TrainingStopped as error:
            # The master recorded the job as timed out already and drops this result.
            failure = EvaluationResult.failure(str(error), JobStatus.TIMEOUT, info=self._measured(context))
        if failure is not None:
            if self.device.type == "cuda":
                # After the except block the error's traceback, which held the job's tensors, is gone:
                # the cache can give their memory back before the next job.
                torch.cuda.empty_cache()
            return failure
        context = self._measured(context)
        context["resumed_from_budget"] = resumed_from
        self._keep(config_id, state, plan)
        status = JobStatus.FAILED if outcome.diverged else JobStatus.OK
        logger.info(
            "job %s, %d epoch(s)%s: validation error %.4f, test error %.4f, %.1f s, %.0f images/s%s",
            config_id,
            epochs,
            "" if resumed_from is None else f" resumed from {resumed_from}",
            outcome.validation_error,
            outcome.test_error,
            outcome.wall_seconds,
            outcome.samples_per_second,
            f" ({outcome.reason})" if outcome.reason else "",
        )
        return EvaluationResult(
            loss=outcome.validation_error,
            status=status,
            reason=outcome.reason,
            info={**outcome.to_info(), **context, "seconds_per_epoch": seconds_per_epoch(outcome)},
        )

    def _measured(self, context: dict[str, Any]) -> dict[str, Any]:
        """``context`` with the job's peak GPU memory in bytes (None on the CPU)."""
        return {**context, "peak_gpu_memory": peak_memory(self.device)}

    def training_seed(self, config: dict[str, Any]) -> int:
        """Sweeps and grids send each repeat's seed with the configuration (key ``seed``, not a
        hyperparameter); other jobs train with this worker's ``--seed``."""
        return int(config.get("seed", self.seed))

    def _train(
        self, config_id: tuple[int, ...], config: dict[str, Any], epochs: int, plan: ContinuationPlan
    ) -> tuple[TrainingOutcome, TrainingState | None, int | None]:
        """Train the job, resuming where a checkpoint allows: (outcome, final state, epochs resumed from)."""
        horizon = plan.horizon(epochs)
        seed = self.training_seed(config)
        resume = None
        if plan.store is not None:
            run = run_identity(config, seed, self.precision, horizon)
            resume = plan.store.resume_state(config_id, epochs, run)
        arguments: dict[str, Any] = {
            "seed": seed,
            "device_name": self.device_name,
            "schedule_epochs": horizon,
            "precision": self.precision,
            "should_stop": self.job_cancelled,
            "step_mode": self.step_mode,
        }
        if resume is not None:
            try:
                outcome, state = train_with_state(
                    config, epochs, self.device, self.data, resume=resume, **arguments
                )
                return outcome, state, resume.epochs
            except CheckpointError as error:
                # Raised before any training: starting afresh costs only the time continuation would save.
                logger.warning("job %s: cannot resume (%s); training from scratch", config_id, error)
        outcome, state = train_with_state(config, epochs, self.device, self.data, **arguments)
        return outcome, state, None

    def _keep(self, config_id: tuple[int, ...], state: TrainingState | None, plan: ContinuationPlan) -> None:
        """Save the job's final state where a larger budget may resume from it, else drop the older one.
        Saved before the result goes back, so the master, which removes dropped configurations'
        checkpoints when it has the result, never races the write."""
        if state is None or plan.store is None:
            return
        try:
            if plan.saves(state.epochs):
                plan.store.save(config_id, state)
            else:
                # The largest budget: nothing continues this configuration, so its older state is waste.
                plan.store.discard(config_id)
        except (OSError, RuntimeError) as error:
            # A full or read-only disk (torch.save may say RuntimeError) costs the saving, not the job.
            logger.warning("job %s: checkpoint not saved: %s", config_id, error)


def seconds_per_epoch(outcome: TrainingOutcome) -> float | None:
    """Training wall time per epoch this job trained (None when it trained none)."""
    return outcome.train_seconds / outcome.epochs_trained if outcome.epochs_trained > 0 else None
