"""The HpBandSter worker: a thin shell that turns a job into ``train(...)`` and its outcome into a result."""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

import torch

from hpo_service.hpbandster_fixes import ServiceWorker
from hpo_service.records import EvaluationResult, JobStatus
from workers.data import DatasetTensors
from workers.models import ConfigurationError
from workers.trainer import train

logger = logging.getLogger(__name__)


def budget_to_epochs(budget: float) -> int:
    """Budgets are epochs; HpBandSter's geometric budgets are floats like 2.9999999999999996."""
    return max(1, round(budget))


class TrainingWorker(ServiceWorker):
    """Trains the CNN of each job on data loaded once, on this process's device."""

    def __init__(
        self,
        run_id: str,
        *,
        data: DatasetTensors,
        device: torch.device,
        device_name: str,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(run_id, **kwargs)
        self.data = data
        self.device = device
        self.device_name = device_name
        self.seed = seed
        self.identity = f"{socket.gethostname()}:{os.getpid()}"

    def evaluate(self, config_id: tuple[int, ...], config: dict[str, Any], budget: float) -> EvaluationResult:
        epochs = budget_to_epochs(budget)
        context: dict[str, Any] = {
            "dataset": self.data.name,
            "seed": self.seed,
            "worker": self.identity,
            "device": self.device_name,
            "epochs": epochs,
        }
        logger.debug("job %s: %d epoch(s) of %s", config_id, epochs, config)
        try:
            outcome = train(
                config, epochs, self.device, self.data, seed=self.seed, device_name=self.device_name
            )
        except ConfigurationError as error:
            # The configuration's own fault (cannot be built for this input, bad values): a failed result.
            return EvaluationResult.failure(f"invalid configuration: {error}", info=context)
        except torch.cuda.OutOfMemoryError as error:
            torch.cuda.empty_cache()
            return EvaluationResult.failure(f"CUDA out of memory: {error}", info=context)
        status = JobStatus.FAILED if outcome.diverged else JobStatus.OK
        logger.info(
            "job %s, %d epoch(s): validation error %.4f, test error %.4f, %.1f s, %.0f images/s%s",
            config_id,
            epochs,
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
            info={**outcome.to_info(), **context},
        )
