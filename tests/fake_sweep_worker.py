"""A fast fake worker for studies: like :mod:`tests.fake_worker`, and it trains "with" the configuration's
``seed`` the way the real worker does, reporting it with curves, parameter count and timings.

The loss is :func:`sweep_loss`, a known function of configuration, budget and seed. Run as
``python tests/fake_sweep_worker.py --run-id ID --run-dir DIR [--sleep S]``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from hpo_service.logging_setup import configure_logging
from hpo_service.nameserver import read_credentials, wait_for_nameserver
from hpo_service.pyro_setup import configure_pyro
from hpo_service.records import EvaluationResult
from tests.fake_worker import FakeWorker, fake_loss

WORKER_SEED = 99


def sweep_loss(config: dict[str, Any], budget: float, seed: int) -> float:
    """:func:`tests.fake_worker.fake_loss` plus a small seed-dependent offset (so repeats differ)."""
    return fake_loss(config, budget) + 0.001 * seed


class SeededFakeWorker(FakeWorker):
    def evaluate(self, config_id: tuple[int, ...], config: dict[str, Any], budget: float) -> EvaluationResult:
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--sleep", type=float, default=0.01)
    parser.add_argument("--name", default="fake")
    args = parser.parse_args(argv)
    configure_logging(prefix="fake-sweep-worker ")
    configure_pyro()
    address = read_credentials(args.run_dir, timeout=60)
    wait_for_nameserver(address, timeout=30)
    worker = SeededFakeWorker(
        args.run_id,
        args.sleep,
        args.name,
        nameserver=address.host,
        nameserver_port=address.port,
        host="127.0.0.1",
    )
    try:
        worker.run(background=False)
    except Exception:
        if not worker.shutdown_requested:
            raise
    logging.getLogger(__name__).info("fake sweep worker done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
