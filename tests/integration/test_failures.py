"""Failure semantics of the dispatcher and the worker (issue 5), unit by unit; ``tests/chaos`` runs the same
faults in real runs.

- a job whose worker died is re-dispatched up to ``max_attempts`` times, then recorded crashed;
- ``job_timeout``: a long job is recorded as timed out at once, its worker asked to stop, and freed when
  it reports;
- a result for a job that is no longer running is dropped (upstream raises ``KeyError`` in the callback);
- a worker with a wrong run id, or no nameserver, says so and exits non-zero;
- the trainer stops between steps when asked.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import Pyro4
import pytest
import torch
from hpbandster.core.dispatcher import Dispatcher, Job

from hpo_service.hpbandster.dispatch import ServiceDispatcher
from hpo_service.nameserver import LocalNameserver
from tests.conftest import REPO
from tests.integration.test_dispatch import probe_all


class PooledWorker:
    """A worker in the dispatcher's pool: records the calls it gets, alive unless told otherwise."""

    def __init__(self, name: str, alive: bool = True) -> None:
        self.name, self.runs_job, self.alive = name, None, alive
        self.proxy = self
        self.started: list[Any] = []
        self.cancelled: list[Any] = []

    def is_alive(self) -> bool:
        return self.alive

    def is_busy(self) -> bool:
        return self.runs_job is not None

    def start_computation(self, callback: Any, job_id: Any, **kwargs: Any) -> None:
        self.started.append(job_id)

    def cancel_job(self, job_id: Any) -> None:
        self.cancelled.append(job_id)

    def _pyroRelease(self) -> None:
        pass


def dispatcher_with(*workers: PooledWorker, **options: Any) -> tuple[ServiceDispatcher, list[Job]]:
    reported: list[Job] = []
    dispatcher = ServiceDispatcher(reported.append, run_id="failures", **options)
    for worker in workers:
        dispatcher.worker_pool[worker.name] = worker
        dispatcher.idle_workers.add(worker.name)
    return dispatcher, reported


def submit_and_start(dispatcher: ServiceDispatcher, job_id: tuple[int, int, int]) -> None:
    dispatcher.submit_job(job_id, config={}, budget=1.0, working_directory=".")
    with dispatcher.runner_cond:
        dispatcher._start_waiting_jobs()


def sweep(dispatcher: ServiceDispatcher) -> None:
    """One check of every worker, as the discovery thread makes each ping interval."""
    with dispatcher.discover_cond:
        _, crashed = dispatcher._check_workers(probe_all(dispatcher))
        failed = [job for job_id, reason in crashed.items() if (job := dispatcher._job_lost(job_id, reason))]
        dispatcher._start_waiting_jobs()
        dispatcher._report(failed)


def test_a_job_of_a_dead_worker_is_sent_to_another_worker_and_reports_its_attempts() -> None:
    first, second = PooledWorker("a"), PooledWorker("b")
    dispatcher, reported = dispatcher_with(first, second)
    dispatcher.idle_workers.discard("b")
    submit_and_start(dispatcher, (0, 0, 0))
    assert first.started == [(0, 0, 0)]
    first.alive = False
    dispatcher.idle_workers.add("b")
    sweep(dispatcher)
    # Upstream (and HpBandSter's default here) records the job crashed, loss infinite, never retried.
    assert reported == [] and second.started == [(0, 0, 0)] and dispatcher.retries == 1
    assert "a" not in dispatcher.worker_pool
    dispatcher.register_result((0, 0, 0), {"result": {"loss": 0.25, "info": {}}, "exception": None})
    (job,) = reported
    assert job.result["loss"] == 0.25
    assert job.result["info"]["attempts"] == 2
    assert job.result["info"]["retried_after"] == ["Worker died unexpectedly."]
    assert "b" in dispatcher.idle_workers


def test_a_job_is_recorded_crashed_after_the_last_attempt() -> None:
    workers = [PooledWorker(name) for name in "abc"]
    dispatcher, reported = dispatcher_with(*workers, max_attempts=2)
    submit_and_start(dispatcher, (0, 0, 0))
    for _ in range(2):
        for worker in workers:
            if worker.runs_job is not None:
                worker.alive = False
        sweep(dispatcher)
    (job,) = reported
    assert job.result is None
    assert "dispatched 2 time(s)" in job.exception and "Worker died unexpectedly." in job.exception
    assert dispatcher.retries == 1 and not dispatcher.running_jobs and dispatcher.waiting_jobs.empty()


def test_max_attempts_one_keeps_upstreams_behaviour() -> None:
    worker = PooledWorker("a")
    dispatcher, reported = dispatcher_with(worker, max_attempts=1)
    submit_and_start(dispatcher, (0, 0, 0))
    worker.alive = False
    sweep(dispatcher)
    assert [job.result for job in reported] == [None] and dispatcher.retries == 0


def test_a_long_job_is_recorded_as_timed_out_and_its_worker_freed_once_it_reports() -> None:
    worker = PooledWorker("a")
    dispatcher, reported = dispatcher_with(worker, job_timeout=0.2)
    submit_and_start(dispatcher, (0, 0, 0))
    submit_and_start(dispatcher, (0, 0, 1))  # waits: the only worker is busy
    with dispatcher.discover_cond:
        assert 0 < dispatcher._next_expiry() - time.time() <= 0.2
        dispatcher._expire_jobs()
        assert reported == []  # not yet
        time.sleep(0.25)
        dispatcher._expire_jobs()
    (job,) = reported
    assert job.result["info"]["status"] == "timeout" and job.result["loss"] == 1.0
    assert "job timeout of 0.2 s" in job.result["info"]["reason"]
    assert worker.cancelled == [(0, 0, 0)]
    # Still stopping the job: no second job yet.
    assert worker.started == [(0, 0, 0)] and "a" not in dispatcher.idle_workers
    dispatcher.register_result((0, 0, 0), {"result": {"loss": 0.5, "info": {}}, "exception": None})
    assert len(reported) == 1  # the late result is not a second record
    assert worker.started == [(0, 0, 0), (0, 0, 1)]


def test_no_timeout_by_default() -> None:
    dispatcher, reported = dispatcher_with(PooledWorker("a"))
    submit_and_start(dispatcher, (0, 0, 0))
    dispatcher.running_jobs[(0, 0, 0)].timestamps["started"] = 0.0  # 1970
    with dispatcher.discover_cond:
        dispatcher._expire_jobs()
    assert reported == [] and dispatcher._next_expiry() == float("inf")


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_result_for_a_job_that_is_not_running_is_dropped() -> None:
    stock = Dispatcher(lambda job: None, run_id="late")
    with pytest.raises(KeyError):  # upstream: raised in the worker's callback thread
        stock.register_result((9, 9, 9), {"result": None, "exception": None})
    dispatcher, reported = dispatcher_with(PooledWorker("a"))
    dispatcher.register_result((9, 9, 9), {"result": None, "exception": None})
    assert reported == []


def run_worker_cli(*arguments: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workers", *arguments],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.integration
def test_a_worker_with_a_wrong_run_id_says_so_and_exits_non_zero() -> None:
    with LocalNameserver("127.0.0.1", 0) as address:
        # A run with a master: a dispatcher entry under another run id.
        with Pyro4.locateNS(address.host, port=address.port) as nameserver:
            nameserver.register("hpbandster.run_the-right-one.dispatcher", "PYRO:d@127.0.0.1:9")
        started = time.monotonic()
        process = run_worker_cli("--run-id", "a-typo", "--nameserver", str(address), "--connect-timeout", "3")
    # Without a run dir it asks the run's master for the spec first: no master of the run, nothing to train.
    assert process.returncode == 2, process.stderr
    assert "no master for run id 'a-typo'" in process.stderr
    assert "runs with a master there: the-right-one" in process.stderr
    assert time.monotonic() - started < 60


@pytest.mark.integration
def test_a_worker_without_a_nameserver_says_so_and_exits_non_zero(tmp_path: Path) -> None:
    with LocalNameserver("127.0.0.1", 0) as address:
        pass  # a port nothing listens on any more
    process = run_worker_cli("--run-id", "x", "--nameserver", str(address), "--connect-timeout", "2")
    assert process.returncode == 2, process.stderr
    assert f"no nameserver answered at {address}" in process.stderr


def test_training_stops_between_steps_when_asked() -> None:
    from workers.data import load_dataset
    from workers.trainer import TrainingStopped, train_with_state

    data = load_dataset("digits", None, torch.device("cpu"), train_limit=256)
    calls: list[int] = []

    def should_stop() -> bool:
        calls.append(1)
        return len(calls) > 3

    config = {"optimizer": "sgd", "learning_rate": 0.1, "batch_size": 16}
    with pytest.raises(TrainingStopped, match="after 3 step"):
        train_with_state(config, 5, torch.device("cpu"), data, should_stop=should_stop)
