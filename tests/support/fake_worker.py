"""A worker process with a fast fake training function, for tests where the optimizer is under test.

The loss is a known function of the configuration and the budget, and ``info`` deliberately holds numpy
values: the wire layer must convert them. Run as ``python tests/support/fake_worker.py --run-id ID --run-dir
DIR``.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from hpo_service.hpbandster.worker import ServiceWorker
from hpo_service.logging_setup import configure_logging
from hpo_service.nameserver import current_credentials, read_credentials, wait_for_nameserver
from hpo_service.pyro_setup import configure_pyro
from hpo_service.records import EvaluationResult, JobRequest
from hpo_service.tls import in_run_dir


def fake_loss(config: dict[str, Any], budget: float) -> float:
    """Smallest near learning_rate 1e-2; larger budgets lower it: a smooth, known target."""
    distance = (math.log10(config["learning_rate"]) + 2.0) ** 2
    return min(1.0, 0.05 + 0.1 * distance + 0.3 / (1.0 + budget))


class FakeWorker(ServiceWorker):
    def __init__(self, run_id: str, sleep: float, name: str = "fake", **kwargs: Any) -> None:
        super().__init__(run_id, **kwargs)
        self.sleep = sleep
        self.name = name

    def evaluate(self, job: JobRequest) -> EvaluationResult:
        time.sleep(self.sleep)
        budget = job.budget
        loss = fake_loss(dict(job.config), budget)
        info = {
            "test_error": np.float64(loss + 0.01),
            "epochs_trained": np.int64(round(budget)),
            "curve": np.arange(3),
            "worker": self.name,
        }
        return EvaluationResult(loss=np.float32(loss), info=info)


def main(argv: list[str] | None = None, worker_class: type[FakeWorker] | None = None) -> int:
    """Serve jobs with ``worker_class`` (default :class:`FakeWorker`) until the master shuts it down."""
    worker_class = worker_class or FakeWorker
    parser = argparse.ArgumentParser()
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--sleep", type=float, default=0.01)
    parser.add_argument("--name", default="fake", help="recorded as info['worker']")
    parser.add_argument("--tls-dir", type=Path, default=None, help="the run's TLS credentials")
    parser.add_argument("--insecure", action="store_true", help="no TLS even where RUN_DIR/tls exists")
    args = parser.parse_args(argv)
    configure_logging(prefix="fake-worker ")
    address = read_credentials(args.run_dir, timeout=60)
    # As the real worker: RUN_DIR/tls, which a master started by hand makes before nameserver.json.
    run_tls = in_run_dir(args.run_dir)
    configure_pyro(args.tls_dir or (run_tls if run_tls.is_dir() and not args.insecure else None))
    wait_for_nameserver(address, timeout=30)
    worker = worker_class(
        args.run_id,
        args.sleep,
        args.name,
        nameserver=address.host,
        nameserver_port=address.port,
        host="127.0.0.1",
        nameserver_source=partial(current_credentials, args.run_dir),
    )
    try:
        worker.run(background=False)
    except Exception:
        if not worker.shutdown_requested:
            raise
    if worker.exit_error is not None:
        logging.getLogger(__name__).error("giving up: %s", worker.exit_error)
        return 1
    logging.getLogger(__name__).info("%s done", worker_class.__name__)
    return 0


if __name__ == "__main__":
    sys.exit(main())
