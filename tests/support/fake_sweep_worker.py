"""A fast fake worker for studies: like :mod:`tests.support.fake_worker`, and it trains "with" the
configuration's ``seed`` the way the real worker does, reporting it with curves, parameter count and timings.

The loss is :func:`sweep_loss`, a known function of configuration, budget and seed. Run as
``python tests/support/fake_sweep_worker.py --run-id ID --run-dir DIR [--sleep S]``.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np

from hpo_service.records import EvaluationResult, JobRequest
from tests.support.fake_worker import FakeWorker, fake_loss, main

WORKER_SEED = 99


def sweep_loss(config: dict[str, Any], budget: float, seed: int) -> float:
    """:func:`tests.support.fake_worker.fake_loss` plus a small seed-dependent offset (so repeats differ)."""
    return fake_loss(config, budget) + 0.001 * seed


class SeededFakeWorker(FakeWorker):
    def evaluate(self, job: JobRequest) -> EvaluationResult:
        config, budget = job.config, job.budget
        time.sleep(self.sleep)
        seed = int(config.get("seed", WORKER_SEED))
        loss = sweep_loss(config, budget, seed)
        epochs = max(1, round(budget))
        parameters = 1000 * int(config.get("batch_size", 64))
        info = {
            "seed": np.int64(seed),
            "worker": self.name,
            "epochs_trained": epochs,
            "validation_error_per_epoch": [
                loss + 0.2 / epoch - 0.2 / epochs for epoch in range(1, epochs + 1)
            ],
            "train_loss_per_epoch": [2.0 / epoch for epoch in range(1, epochs + 1)],
            "parameter_count": parameters,
            "train_seconds": 0.001 * parameters * epochs / 1000,
            "seconds_per_epoch": 0.001 * parameters / 1000,
            "device": "cpu (fake)",
        }
        return EvaluationResult(loss=np.float32(loss), info=info)


if __name__ == "__main__":
    sys.exit(main(worker_class=SeededFakeWorker))
