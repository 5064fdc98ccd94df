"""A whole search whose workers only sleep: the dispatch and scaling benchmarks' building block.

One measurement is two processes started by :func:`measure`: a *master* process (nameserver, optimizer,
dispatcher) and a *worker host* process that runs N workers as threads, each with its own Pyro daemon.
Master and workers thus use a core each on a 2-core machine, and a worker's "job" is ``time.sleep``.

Two variants of the master side:

- ``ours``: the service's own path, :func:`hpo_service.master.run_master` (our fixed classes, JSON result
  log with fsync, progress log), and :class:`hpo_service.hpbandster.worker.ServiceWorker` workers;
- ``stock``: HpBandSter 0.7.4's own ``BOHB`` / ``RandomSearch`` / ``HyperBand`` and ``Worker`` classes
  with only the fix without which they hang under numpy 2 (configurations and budgets sent as builtins);
  no result logger (HpBandSter's cannot write numpy integers).

Both use the same Pyro4 configuration (``hpo_service.pyro_setup``: serpent, ``SOCK_NODELAY``), which is
process-global. The master process writes each job's worker name and HpBandSter's time stamps (seconds,
wall clock) as JSON; :func:`summarise` turns them into jobs per second, idle gaps and utilisation.

Run as ``python benchmarks/sleep_search.py master|workers ...`` only through :func:`measure`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
WORKER_HOST_TIMEOUT = 900.0


@dataclass(frozen=True)
class SearchSpec:
    """What one measurement runs: ``job_seconds + seconds_per_budget * budget`` is each job's sleep."""

    variant: str  # "ours" or "stock"
    optimizer: str  # "bohb", "hyperband" or "randomsearch"
    n_workers: int
    n_iterations: int
    job_seconds: float = 0.0
    seconds_per_budget: float = 0.0
    min_budget: float = 1.0
    max_budget: float = 9.0
    eta: float = 3.0
    seed: int = 0


@dataclass(frozen=True)
class JobTimes:
    worker: str
    budget: float
    submitted: float
    started: float
    finished: float


@dataclass(frozen=True)
class Summary:
    """One measurement. Times in seconds; gaps are between one worker's consecutive jobs."""

    spec: SearchSpec
    jobs: int
    wall: float  # first submission to last result
    jobs_per_second: float
    gap_median: float
    gap_p95: float
    utilisation: float  # busy time / (workers x (first start .. last finish))
    end_latency: float  # last result to the master process having shut everything down
    master_cpu_per_job: float  # CPU seconds of the master process (the whole run) per job


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile (``share`` in 0..1); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def worker_gaps(jobs: Sequence[JobTimes]) -> list[float]:
    """Idle time between each worker's consecutive jobs (by start time)."""
    gaps = []
    by_worker: dict[str, list[JobTimes]] = {}
    for job in jobs:
        by_worker.setdefault(job.worker, []).append(job)
    for own in by_worker.values():
        own.sort(key=lambda job: job.started)
        gaps += [after.started - before.finished for before, after in zip(own, own[1:], strict=False)]
    return gaps


def summarise(spec: SearchSpec, jobs: Sequence[JobTimes], returned: float, cpu: float) -> Summary:
    first_submitted = min(job.submitted for job in jobs)
    first_started = min(job.started for job in jobs)
    last_finished = max(job.finished for job in jobs)
    busy = sum(job.finished - job.started for job in jobs)
    gaps = worker_gaps(jobs)
    wall = last_finished - first_submitted
    return Summary(
        spec=spec,
        jobs=len(jobs),
        wall=wall,
        jobs_per_second=len(jobs) / wall if wall > 0 else float("nan"),
        gap_median=statistics.median(gaps) if gaps else float("nan"),
        gap_p95=percentile(gaps, 0.95),
        utilisation=busy / (spec.n_workers * (last_finished - first_started)),
        end_latency=returned - last_finished,
        master_cpu_per_job=cpu / len(jobs),
    )


def measure(spec: SearchSpec, timeout: float = 600.0) -> Summary:
    """Run one search in fresh processes and summarise it."""
    with tempfile.TemporaryDirectory(prefix="hpo-bench-") as directory:
        output = Path(directory) / "times.json"
        command = [sys.executable, __file__, "master", "--spec", json.dumps(asdict(spec))]
        command += ["--out", str(output), "--dir", directory]
        log_path = Path(directory) / "master.log"
        with open(log_path, "wb") as log:
            completed = subprocess.run(
                command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, timeout=timeout, check=False
            )
        if completed.returncode != 0 or not output.is_file():
            tail = log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"measurement {spec} failed (exit {completed.returncode}):\n{tail}")
        data = json.loads(output.read_text())
    jobs = [JobTimes(**job) for job in data["jobs"]]
    return summarise(spec, jobs, data["returned"], data["cpu"])


# --- the master process -------------------------------------------------------------------------------


def start_worker_host(
    spec: SearchSpec, run_id: str, directory: str, where: list[str]
) -> subprocess.Popen[bytes]:
    command = [sys.executable, __file__, "workers", "--spec", json.dumps(asdict(spec)), "--run-id", run_id]
    log = open(Path(directory) / "workers.log", "wb")  # noqa: SIM115 - the child holds it
    return subprocess.Popen(command + where, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)


def run_ours(spec: SearchSpec, directory: str) -> list[JobTimes]:
    from hpo_service.master import run_master
    from hpo_service.settings import MasterSettings

    run_dir = Path(directory) / "run"
    run_id = f"bench-{os.getpid()}"
    settings = MasterSettings(
        run_dir=run_dir, run_id=run_id, optimizer=spec.optimizer, min_budget=spec.min_budget,
        max_budget=spec.max_budget, eta=spec.eta, n_iterations=spec.n_iterations, seed=spec.seed,
        min_workers=spec.n_workers,
    )  # fmt: skip
    host = start_worker_host(spec, run_id, directory, ["--run-dir", str(run_dir)])
    try:
        run_master(settings)
    finally:
        host.wait(timeout=60)
    jobs = []
    for line in (run_dir / "results.json").read_text().splitlines():
        _, budget, stamps, result, _ = json.loads(line)
        worker = (result or {}).get("info", {}).get("worker", "?")
        jobs.append(JobTimes(worker, budget, stamps["submitted"], stamps["started"], stamps["finished"]))
    return jobs


def stock_optimizer_class(name: str) -> type:
    """HpBandSter's optimizer with the one fix it needs to run at all: builtins on the wire."""
    from hpbandster.optimizers import BOHB, HyperBand, RandomSearch

    from hpo_service.wire import to_builtins

    base = {"bohb": BOHB, "hyperband": HyperBand, "randomsearch": RandomSearch}[name]

    class StockOnBuiltins(base):  # type: ignore[misc, valid-type]
        def _submit_job(self, config_id: Any, config: Any, budget: Any) -> None:
            super()._submit_job(config_id, to_builtins(config), float(budget))

    return StockOnBuiltins


def run_stock(spec: SearchSpec, directory: str) -> list[JobTimes]:
    import random

    import numpy as np

    from hpo_service.nameserver import LocalNameserver
    from hpo_service.space import default_space

    random.seed(spec.seed)
    np.random.seed(spec.seed)
    run_id = f"bench-{os.getpid()}"
    with LocalNameserver("127.0.0.1", 0) as address:
        optimizer = stock_optimizer_class(spec.optimizer)(
            configspace=default_space(seed=spec.seed), run_id=run_id, min_budget=spec.min_budget,
            max_budget=spec.max_budget, eta=spec.eta, nameserver=address.host, nameserver_port=address.port,
            host="127.0.0.1", working_directory=directory, logger=logging.getLogger("hpbandster"),
        )  # fmt: skip
        where = ["--nameserver", f"{address.host}:{address.port}"]
        host = start_worker_host(spec, run_id, directory, where)
        try:
            result = optimizer.run(n_iterations=spec.n_iterations, min_n_workers=spec.n_workers)
        finally:
            optimizer.shutdown(shutdown_workers=True)
            host.wait(timeout=60)
    reference = result.HB_config["time_ref"]
    return [
        JobTimes(
            run.info["worker"],
            float(run.budget),
            *(reference + run.time_stamps[key] for key in ("submitted", "started", "finished")),
        )
        for run in result.get_all_runs()
    ]


def preload() -> None:
    """Import what both variants use, so that the master's CPU time counts the run, not the imports."""
    import hpbandster.optimizers  # noqa: F401

    import hpo_service.master  # noqa: F401
    from hpo_service.space import default_space

    default_space()


def master_main(spec: SearchSpec, output: Path, directory: str) -> None:
    from hpo_service.logging_setup import configure_logging
    from hpo_service.pyro_setup import configure_pyro

    configure_logging(prefix="master ")
    configure_pyro()
    preload()
    cpu_before = time.process_time()
    jobs = run_ours(spec, directory) if spec.variant == "ours" else run_stock(spec, directory)
    returned = time.time()
    cpu = time.process_time() - cpu_before
    output.write_text(json.dumps({"jobs": [asdict(job) for job in jobs], "returned": returned, "cpu": cpu}))


# --- the worker host process --------------------------------------------------------------------------


def sleep_seconds(spec: SearchSpec, budget: float) -> float:
    return spec.job_seconds + spec.seconds_per_budget * float(budget)


def loss_of(config: dict[str, Any], budget: float) -> float:
    """A smooth known target (best near learning rate 1e-2), so BOHB has something to model."""
    import math

    distance = (math.log10(float(config.get("learning_rate", 1e-2))) + 2.0) ** 2
    return min(1.0, 0.05 + 0.1 * distance + 0.3 / (1.0 + budget))


def make_workers(spec: SearchSpec, run_id: str, host: str, port: int) -> list[Any]:
    from hpbandster.core.worker import Worker

    from hpo_service.hpbandster.worker import ServiceWorker
    from hpo_service.records import EvaluationResult, JobRequest

    quiet = logging.getLogger("hpbandster.worker")

    class OurSleeper(ServiceWorker):
        def evaluate(self, job: JobRequest) -> EvaluationResult:
            time.sleep(sleep_seconds(spec, job.budget))
            return EvaluationResult(loss=loss_of(dict(job.config), job.budget), info={"worker": self.name})

    class StockSleeper(Worker):
        def compute(self, config: dict[str, Any], budget: float, **kwargs: Any) -> dict[str, Any]:
            time.sleep(sleep_seconds(spec, budget))
            return {"loss": loss_of(config, budget), "info": {"worker": self.name}}

    workers = []
    for index in range(spec.n_workers):
        common = {"nameserver": host, "nameserver_port": port, "host": "127.0.0.1"}
        if spec.variant == "ours":
            worker: Any = OurSleeper(run_id, worker_logger=quiet, **common)
        else:
            worker = StockSleeper(run_id, logger=quiet, id=index, **common)
        worker.name = f"w{index:02d}"
        workers.append(worker)
    return workers


def workers_main(spec: SearchSpec, run_id: str, run_dir: Path | None, nameserver: str | None) -> None:
    from hpo_service.logging_setup import configure_logging
    from hpo_service.nameserver import NameserverAddress, read_credentials, wait_for_nameserver
    from hpo_service.pyro_setup import configure_pyro

    configure_logging(prefix="workers ")
    configure_pyro()
    if nameserver is not None:
        address = NameserverAddress.parse(nameserver)
    else:
        assert run_dir is not None
        address = read_credentials(run_dir, timeout=60)
    wait_for_nameserver(address, timeout=30)
    workers = make_workers(spec, run_id, address.host, address.port)
    for worker in workers:
        worker.run(background=True)
    deadline = time.monotonic() + WORKER_HOST_TIMEOUT
    for worker in workers:
        worker.thread.join(timeout=max(0.0, deadline - time.monotonic()))
    alive = sum(worker.thread.is_alive() for worker in workers)
    logging.getLogger(__name__).info("worker host done (%d of %d still running)", alive, len(workers))
    # Pyro's pool threads of a stopped daemon may linger; nothing is left to do here.
    os._exit(0 if alive == 0 else 1)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=("master", "workers"))
    parser.add_argument("--spec", required=True, help="SearchSpec as JSON")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--dir")
    parser.add_argument("--run-id")
    parser.add_argument("--run-dir", type=Path)
    parser.add_argument("--nameserver")
    args = parser.parse_args(argv)
    spec = SearchSpec(**json.loads(args.spec))
    if args.role == "master":
        master_main(spec, args.out, args.dir)
    else:
        workers_main(spec, args.run_id, args.run_dir, args.nameserver)
    return 0


if __name__ == "__main__":
    threading.current_thread().name = "main"
    sys.exit(main())
