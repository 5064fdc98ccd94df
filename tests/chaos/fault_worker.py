"""A fake worker that injects faults on demand: the chaos suite's worker process.

Run as ``python tests/chaos/fault_worker.py --run-id ID --run-dir DIR --faults FAULTS --state STATE
[--sleep S] [--name NAME]``; every other option is :func:`tests.support.fake_worker.main`'s, which builds and
runs the worker (so this worker finds the nameserver exactly as the plain fake worker does).

Faults are files the test drops into ``FAULTS``: ``KIND`` or ``KIND.anything``. The first job that starts
after a file appears takes it (an atomic rename into ``FAULTS/taken``, so each file is taken by one job
only) and behaves as ``KIND`` says:

``nan``          the loss is NaN (the service records a failed result, "non-finite loss")
``oom``          training raises ``torch.cuda.OutOfMemoryError``; ``error`` a plain ``RuntimeError``
``unbuildable``  building the model raises ``ModelBuildError``
``hang``         the job never ends on its own: it polls the worker's cancel flag (``job_cancelled``) and
                 returns once the master has asked it to stop (or after ``--hang-limit`` seconds)
``slow``         the job sleeps ``--slow-seconds``: a window for the test to SIGKILL this worker mid-job
``poison``       the worker SIGKILLs itself, and so does every worker that is sent the same job again (the
                 job is listed in ``FAULTS/poisoned.jsonl``): a job that kills whoever runs it

``oom`` and ``unbuildable`` go through :meth:`workers.worker.TrainingWorker.evaluate`, the real worker's
mapping of those exceptions to results, with only its training step replaced by the fault.

Every job start and end is appended to ``STATE/NAME.jsonl`` (job id, budget, fault, times, pid), one flushed
JSON line each, so the test knows which worker runs which job, and which faults were injected, even for a
worker it killed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from hpo_service.records import EvaluationResult, JobRequest, JobStatus
from tests.support.fake_worker import FakeWorker
from tests.support.fake_worker import main as fake_worker_main

FAULT_KINDS = ("nan", "oom", "error", "unbuildable", "hang", "slow", "poison")
TAKEN = "taken"
POISONED = "poisoned.jsonl"


class FaultOptions(SimpleNamespace):
    faults: Path
    state: Path
    hang_limit: float
    slow_seconds: float


# Set by main() before the worker is built: fake_worker.main constructs the worker with its own arguments.
OPTIONS = FaultOptions(faults=Path("faults"), state=Path("state"), hang_limit=60.0, slow_seconds=60.0)


def take_fault(faults: Path, taker: str) -> str | None:
    """The kind of the first fault file in ``faults`` that this call takes (renames away), or None."""
    try:
        names = sorted(entry.name for entry in faults.iterdir() if entry.is_file())
    except FileNotFoundError:
        return None
    for name in names:
        kind = name.split(".", 1)[0]
        if kind not in FAULT_KINDS:
            continue
        (faults / TAKEN).mkdir(exist_ok=True)
        try:
            os.rename(faults / name, faults / TAKEN / f"{name}@{taker}")
        except FileNotFoundError:  # another worker took it first
            continue
        return kind
    return None


class FaultWorker(FakeWorker):
    def __init__(self, run_id: str, sleep: float, name: str = "fake", **kwargs: Any) -> None:
        super().__init__(run_id, sleep, name, **kwargs)
        self.options = OPTIONS
        self.options.state.mkdir(parents=True, exist_ok=True)
        self.journal = self.options.state / f"{name}.jsonl"

    def record(self, **fields: Any) -> None:
        line = json.dumps({"worker": self.name, "pid": os.getpid(), "time": time.time(), **fields})
        with open(self.journal, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()

    def evaluate(self, request: JobRequest) -> EvaluationResult:
        job, budget = list(request.config_id), request.budget
        poisoned = self.options.faults / POISONED
        if poisoned.is_file() and [job, budget] in map(json.loads, poisoned.read_text().splitlines()):
            self.record(event="start", job=job, budget=budget, fault="poison", again=True)
            os.kill(os.getpid(), signal.SIGKILL)
        fault = take_fault(self.options.faults, self.name)
        self.record(event="start", job=job, budget=budget, fault=fault)
        if fault == "poison":
            with open(poisoned, "a", encoding="utf-8") as handle:
                handle.write(json.dumps([job, budget]) + "\n")
            os.kill(os.getpid(), signal.SIGKILL)
        outcome: dict[str, Any] = {}
        try:
            result = self.inject(fault, request, outcome) if fault else None
            if result is None:
                result = super().evaluate(request)
        except BaseException as error:
            self.record(event="end", job=job, budget=budget, fault=fault, raised=repr(error), **outcome)
            raise
        self.record(
            event="end", job=job, budget=budget, fault=fault, status=result.to_wire()["info"]["status"],
            **outcome,
        )  # fmt: skip
        return result

    def inject(self, fault: str, request: JobRequest, outcome: dict[str, Any]) -> EvaluationResult | None:
        if fault == "nan":
            time.sleep(self.sleep)
            return EvaluationResult(loss=float("nan"), info={"worker": self.name})
        if fault == "error":
            raise RuntimeError("simulated worker fault (chaos suite)")
        if fault == "oom":
            import torch

            message = "CUDA out of memory. Tried to allocate 20.00 GiB (simulated by the chaos suite)"
            return self.through_training_worker(request, torch.cuda.OutOfMemoryError(message))
        if fault == "unbuildable":
            from workers.models import ModelBuildError

            message = "the feature map collapses below 1x1 after conv layer 3 (simulated by the chaos suite)"
            return self.through_training_worker(request, ModelBuildError(message))
        if fault == "hang":
            started = time.monotonic()
            while time.monotonic() - started < self.options.hang_limit:
                if self.cancel_requested():
                    outcome.update(cancelled=True, hung_seconds=round(time.monotonic() - started, 3))
                    return EvaluationResult.failure("cancelled by the master", JobStatus.ERROR)
                time.sleep(0.05)
            outcome.update(cancelled=False, hung_seconds=round(time.monotonic() - started, 3))
            return None  # never cancelled: end as a normal job, late
        if fault == "slow":
            time.sleep(self.options.slow_seconds)
            return None
        raise ValueError(f"unknown fault {fault!r}")

    def cancel_requested(self) -> bool:
        """The service's cancel flag for the running job: ``job_cancelled()`` or an Event (absent: never)."""
        flag = getattr(self, "job_cancelled", None)
        if flag is None:
            return False
        is_set = getattr(flag, "is_set", None)
        if callable(is_set):
            return bool(is_set())
        return bool(flag()) if callable(flag) else bool(flag)

    def through_training_worker(self, request: JobRequest, error: BaseException) -> EvaluationResult:
        """The real worker's evaluate(), whose training step raises ``error``: its own exception mapping."""
        import torch

        from workers.continuation import ContinuationPlan
        from workers.worker import TrainingWorker

        shim = TrainingWorker.__new__(TrainingWorker)
        shim.data = SimpleNamespace(name="fake")  # type: ignore[assignment]  # only .name is read
        shim.device = torch.device("cpu")  # its GPU facts (index, peak memory) are then null
        shim.device_name = "fake device"
        shim.seed = 0
        shim.precision = "fp32"
        shim.identity = self.name
        shim.continuation = ContinuationPlan()

        def train(*args: Any, **kwargs: Any) -> Any:
            raise error

        shim._train = train  # type: ignore[method-assign]
        return TrainingWorker.evaluate(shim, request)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--faults", type=Path, required=True, help="directory the test drops fault files in")
    parser.add_argument("--state", type=Path, required=True, help="directory of the per-worker journals")
    parser.add_argument("--hang-limit", type=float, default=60.0)
    parser.add_argument("--slow-seconds", type=float, default=60.0)
    known, rest = parser.parse_known_args(argv)
    OPTIONS.faults, OPTIONS.state = known.faults, known.state
    OPTIONS.hang_limit, OPTIONS.slow_seconds = known.hang_limit, known.slow_seconds
    return fake_worker_main(rest, worker_class=FaultWorker)


if __name__ == "__main__":
    sys.exit(main())
