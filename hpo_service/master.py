"""One search from start to end: run directory, nameserver, optimizer, result log, final pickle."""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from hpbandster.core.dispatcher import Job
from hpbandster.core.master import Master
from hpbandster.core.result import Result

from hpo_service import resume, run_files, warm_start
from hpo_service.brackets import planned_jobs
from hpo_service.checkpoint_files import CheckpointJanitor, chain_listeners
from hpo_service.hpbandster.optimizers import create_optimizer
from hpo_service.hpbandster.result_log import JsonResultLogger
from hpo_service.nameserver import (
    LocalNameserver,
    NameserverAddress,
    remove_credentials,
    wait_for_nameserver,
    write_credentials,
)
from hpo_service.progress import CountsPublisher, LiveCounts, Outcome, ProgressState
from hpo_service.pyro_setup import configure_pyro
from hpo_service.records import JobStatus, RunDescription
from hpo_service.run_spec import RunSpec
from hpo_service.settings import MasterSettings, check_fresh_run_dir
from hpo_service.signals import deferred_stop
from hpo_service.space import load_space, write_space
from hpo_service.sweeps.plan import SweepPlan
from hpo_service.sweeps.setup import apply_space_from_sweep, optimizer_arguments, prepare_sweep

logger = logging.getLogger(__name__)


class ProgressReporter:
    """Logs one line per finished job: how far the run is, this result and the best so far."""

    def __init__(self, planned: int) -> None:
        self.state = ProgressState(planned)
        self.master: Master | None = None

    @property
    def finished(self) -> int:
        return self.state.finished

    @finished.setter
    def finished(self, count: int) -> None:  # results kept by a resumed run
        self.state.finished = count

    def __call__(self, job: Job) -> None:
        result = job.result or {}
        loss = result.get("loss")
        fallback = JobStatus.CRASHED if job.exception else JobStatus.OK
        status = (result.get("info") or {}).get("status", fallback.value)
        budget = float(job.kwargs["budget"])
        self.state.record(Outcome(tuple(job.id), budget, loss, status))
        running, queued = self.job_counts()
        loss_text = f"{loss:.4f}" if isinstance(loss, float) else "-"
        best_text = "-" if self.state.best is None else self.state.best.describe()
        logger.info(
            "[%d/%d] iteration %d %s budget %g: loss %s (%s) | best at largest budget so far: %s "
            "| running %d, queued %d",
            self.state.finished,
            self.state.planned,
            job.id[0],
            tuple(job.id),
            budget,
            loss_text,
            status,
            best_text,
            running,
            queued,
        )

    def live_counts(self) -> LiveCounts:
        """For ``RUN_DIR/progress.json`` (:class:`hpo_service.progress.CountsPublisher`)."""
        running, queued = self.job_counts()
        pool = getattr(getattr(self.master, "dispatcher", None), "worker_pool", None) or {}
        return LiveCounts(self.state.planned, running, queued, len(pool))

    def job_counts(self) -> tuple[int, int]:
        """Jobs on workers (busy workers) and jobs waiting for a free worker, from the dispatcher.

        Read without the dispatcher's lock: a log line may be one job off, and the master never waits.
        """
        dispatcher = getattr(self.master, "dispatcher", None)
        if dispatcher is None:
            return (self.master.num_running_jobs if self.master is not None else 0), 0
        return len(dispatcher.running_jobs), dispatcher.waiting_jobs.qsize()


def prepare_run_dir(run_dir: Path) -> None:
    """Create ``run_dir``; refuse one that already holds results so nothing is silently overwritten."""
    check_fresh_run_dir(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)


def write_result_pickle(path: Path, result: Result) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as handle:
        pickle.dump(result, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


@contextlib.contextmanager
def nameserver_for(settings: MasterSettings) -> Iterator[NameserverAddress]:
    """Join the given nameserver, or serve one from this process for the duration of the run."""
    if settings.nameserver is not None:
        wait_for_nameserver(settings.nameserver, timeout=30)
        yield settings.nameserver
        return
    with LocalNameserver(settings.host, settings.nameserver_port) as address:
        write_credentials(settings.run_dir, address)
        try:
            yield address
        finally:
            remove_credentials(settings.run_dir)


@dataclass(frozen=True)
class PreparedRun:
    """What a run holds before its nameserver starts: space, plan, description and result log."""

    space: Any
    sweep: SweepPlan | None  # the study's plan; None for a search
    warm: warm_start.WarmStart | None
    description: RunDescription
    result_log: JsonResultLogger
    planned: int
    # A resumed run's logs (None for a new run).
    logged: resume.LoggedRun | None


def run_master(settings: MasterSettings) -> Result:
    """Run the whole search; results land in ``settings.run_dir`` as they arrive. Returns the Result."""
    # TLS (or not) for every Pyro connection of this process, before any exists.
    configure_pyro(settings.tls_dir)
    run = prepare_run(settings)
    progress = ProgressReporter(run.planned)
    janitor = CheckpointJanitor(settings.run_dir, keep=settings.keep_checkpoints)
    listener = chain_listeners(progress, janitor)
    # While the optimizer's threads share locks with this one, a stop signal waits for a safe point.
    with nameserver_for(settings) as address, deferred_stop() as stop:
        optimizer = build_optimizer(settings, run, address, listener, stop.requested)
        try:  # from here on, every way out shuts the dispatcher's (non-daemon) threads down
            progress.master = janitor.master = optimizer
            n_iterations, min_workers = restore_model(optimizer, settings, run, progress)
            stop.check()
            logger.info(
                "run %s: %s, budgets %g..%g epochs, eta %g, %d iterations (%d jobs); "
                "waiting for %d worker(s) at %s",
                settings.run_id, settings.optimizer, settings.min_budget, settings.max_budget, settings.eta,
                settings.n_iterations, run.planned, settings.min_workers, address,
            )  # fmt: skip
            result = search(
                optimizer, settings, run, progress, n_iterations=n_iterations, min_workers=min_workers
            )
        finally:
            optimizer.shutdown(shutdown_workers=settings.shutdown_workers)
        # Only a finished run drops every checkpoint: an interrupted one may go on with --resume.
        janitor.finish()
    log_incumbent(result)
    return result


def prepare_run(settings: MasterSettings) -> PreparedRun:
    """A new run: its directory, space, plan and ``run.json`` written; a resumed one (``--resume``): its logs
    read back and repaired. Either way the seeds are set and the result log is open for new lines."""
    run_dir = settings.run_dir
    logged = resume.load_run(run_dir) if settings.resume else None
    if logged is None:
        prepare_run_dir(run_dir)
    # A resumed run draws new random numbers (the same seed would sample the first run's configurations).
    seed = settings.seed if logged is None else resume.resumed_seed(settings.seed, logged)
    random.seed(seed)
    # BOHB's KDE sampling draws from numpy's global generator.
    np.random.seed(seed)
    space = load_space(settings.space, seed=seed, dataset=settings.dataset)
    if logged is None:
        space = apply_space_from_sweep(settings, space, run_dir)
        write_space(space, run_dir / run_files.SPACE)
    warm = prepare_warm_start(settings, space)
    # None unless a sweep or grid; writes sweep.json (a resumed study checks it rebuilds the same plan).
    sweep = prepare_sweep(settings, space, run_dir if logged is None else None)
    if logged is not None and sweep is not None:
        resume.check_plan(run_dir, sweep.to_dict())
    if logged is None:
        description = describe(settings, warm)
        run_files.write_json(run_dir / run_files.RUN_DESCRIPTION, description.to_dict())
        result_log = JsonResultLogger(str(run_dir), overwrite=True)
    else:
        description = resume.open_description(run_dir, RunSpec.of(settings))
        resume.repair_logs(logged)
        result_log = resume.appending_logger(JsonResultLogger, run_dir, logged.config_ids())
        remove_credentials(run_dir)  # the dead master's nameserver: workers must not read it
    planned = sweep.job_count if sweep is not None else planned_jobs(
        settings.optimizer, settings.min_budget, settings.max_budget, settings.eta, settings.n_iterations
    )  # fmt: skip
    return PreparedRun(space, sweep, warm, description, result_log, planned, logged)


def describe(settings: MasterSettings, warm: warm_start.WarmStart | None) -> RunDescription:
    """``run.json`` of a run starting now: its spec as given, its start time, its warm start."""
    return RunDescription(
        run_id=settings.run_id,
        spec=RunSpec.of(settings),
        started=time.time(),
        warm_start=None if warm is None else warm.record(),
    )


def build_optimizer(
    settings: MasterSettings,
    run: PreparedRun,
    address: NameserverAddress,
    listener: Any,
    stop_requested: Callable[[], bool],
) -> Master:
    """The optimizer, its dispatcher started and listening at ``address``; its loop raises
    ``KeyboardInterrupt`` at its next wait once ``stop_requested()``."""
    return create_optimizer(
        settings.optimizer,
        run.space,
        run_id=settings.run_id,
        min_budget=settings.min_budget,
        max_budget=settings.max_budget,
        eta=settings.eta,
        nameserver=address.host,
        nameserver_port=address.port,
        host=settings.host,
        ping_interval=settings.ping_interval,
        max_attempts=settings.max_attempts,
        job_timeout=settings.job_timeout,
        # Workers without the shared run dir ask the dispatcher for the run's spec.
        run_description=run.description.to_dict(),
        working_directory=str(settings.run_dir),
        result_logger=run.result_log,
        result_listener=listener,
        stop_requested=stop_requested,
        logger=logging.getLogger("hpbandster"),
        **optimizer_arguments(run.sweep),
        **(settings.bohb.model_arguments() if settings.optimizer == "bohb" else {}),
    )


def restore_model(
    optimizer: Master, settings: MasterSettings, run: PreparedRun, progress: ProgressReporter
) -> tuple[int, int]:
    """Feed the model (warm start, a resumed run's results) before the first sample; returns the iterations
    left to run and the workers to wait for (none when a resumed run only lacks its final pickle)."""
    restored = prepare_model(optimizer, run.logged, run.warm, run.result_log, run.description.started)
    if restored is None:
        return settings.n_iterations, settings.min_workers
    progress.finished = restored.results
    n_iterations = max(0, settings.n_iterations - restored.iterations)
    min_workers = 0 if n_iterations == 0 and not optimizer.active_iterations() else settings.min_workers
    logger.info(
        "resuming %s: %d results kept, %d iteration(s) rebuilt, %d job(s) to run again, %d new iteration(s)",
        settings.run_dir, restored.results, restored.iterations, restored.rerun, n_iterations,
    )  # fmt: skip
    return n_iterations, min_workers


def search(
    optimizer: Master,
    settings: MasterSettings,
    run: PreparedRun,
    progress: ProgressReporter,
    *,
    n_iterations: int,
    min_workers: int,
) -> Result:
    """Run the iterations; then the JSON logs on disk, the pickle and ``run.json`` finished (the caller shuts
    the optimizer down and so stops the workers)."""
    counts = CountsPublisher(settings.run_dir, progress.live_counts)
    try:
        counts.start()
        result = optimizer.run(n_iterations=n_iterations, min_n_workers=min_workers)
        run.result_log.close()  # the JSON logs are on disk before the pickle that summarises them
        # Saved before the workers are told to stop: a supervisor that reacts to their exit (compose's
        # --abort-on-container-exit, a batch scheduler) may stop this process right after.
        write_result_pickle(settings.run_dir / run_files.RESULT_PICKLE, result)
        finished = replace(run.description, finished=time.time())
        run_files.write_json(settings.run_dir / run_files.RUN_DESCRIPTION, finished.to_dict())
    finally:
        counts.stop()
        run.result_log.close()
    return result


def prepare_model(
    optimizer: Master,
    logged: resume.LoggedRun | None,
    warm: warm_start.WarmStart | None,
    result_log: Any,
    time_ref: float | None,
) -> resume.Restored | None:
    """Before the first sample: the warm start's results, then a resumed run's own (its iterations rebuilt),
    reach the config generator; with a warm start every budget's model is fitted once all are in."""
    if warm is not None:
        warm_start.feed(optimizer.config_generator, warm)
        logger.info("%s", warm.summary())
    restored = None
    if logged is not None:
        restored = resume.restore(optimizer, logged, result_log, time_ref, fit_model=warm is None)
    if warm is not None:
        warm_start.fit_models(optimizer.config_generator)
    return restored


def prepare_warm_start(settings: MasterSettings, space: Any) -> warm_start.WarmStart | None:
    """The results of ``--warm-start``'s runs for BOHB's model (None without a warm start)."""
    if not settings.bohb.warm_start:
        return None
    budgets = warm_start.run_budgets(settings.min_budget, settings.max_budget, settings.eta)
    return warm_start.prepare(settings.bohb.warm_start, space, budgets, settings.eta)


def log_incumbent(result: Result) -> None:
    incumbent = result.get_incumbent_id()
    if incumbent is None:
        logger.warning("no configuration finished on the largest budget")
        return
    runs = result.get_runs_by_id(incumbent)
    last = runs[-1]
    status = (last.info or {}).get("status", JobStatus.OK.value)
    if status != JobStatus.OK.value:  # upstream's pick among failures, each with the worst loss
        logger.warning("no incumbent: every job on the largest budget failed (%s: %s)", incumbent, status)
        return
    test_error = (last.info or {}).get("test_error")
    logger.info(
        "incumbent %s: validation error %.4f, test error %s at budget %g; config %s",
        incumbent,
        last.loss,
        "n/a" if test_error is None else f"{test_error:.4f}",
        last.budget,
        result.get_id2config_mapping()[incumbent]["config"],
    )
