"""Our thin layer of fixes around HpBandSter 0.7.4 (unmaintained), in one place.

Each fix names the upstream failure it prevents; ``tests/test_hpbandster_fixes.py``,
``tests/test_deadlocks.py`` (the dispatcher's single-fault deadlocks, each hanging on stock HpBandSter),
``tests/test_dispatch.py`` and ``tests/test_failures.py`` reproduce each failure and show the fix.

1. Numpy values on the wire (numpy 2 / ConfigSpace 1.x): configurations become builtins as they leave
   the config generator (so the logs and the final ``Result`` hold them too), budgets in
   :meth:`FixedMaster._submit_job`, worker results in :meth:`ServiceWorker.compute`. Otherwise serpent
   raises inside the dispatcher's job-runner thread (or writes ``np.float64(1.0)`` that the worker cannot
   parse) and the run hangs silently.
2. ``json_result_logger`` cannot write numpy integers and loses lines on a crash:
   :class:`JsonResultLogger` converts and flushes every line (and fsyncs it off the master's lock).
3. ``Master.run`` holds its condition with ``acquire()``/``release()``; an exception (Ctrl-C) leaves it
   locked and every later result callback blocks: :meth:`FixedMaster.run` releases it.
4. ``shutdown(shutdown_workers=True)`` raises on a dead worker and leaves the non-daemon dispatcher
   thread running: :meth:`FixedMaster.shutdown` shuts workers down one by one, tolerating failures.
5. ``Worker.__init__`` calls ``logging.basicConfig(DEBUG)`` when given no logger: :class:`ServiceWorker`
   always passes one.
6. ``Worker._run`` asks the dispatcher to discover workers *before* registering itself in the nameserver,
   so a worker joining a running search idles until the next ping interval (10 s and more); it registers
   only once (a restarted nameserver or a resumed master never finds it) and waits forever for a master
   that never comes (a wrong run id): :class:`hpo_service.membership.Membership`, run by
   :meth:`ServiceWorker._run`, keeps it registered, greets every new dispatcher of its run once it is
   registered, and gives up with a reason (``ServiceWorker.exit_error``) after ``MASTER_PATIENCE``.
7. Worker names are host name + pid: two containers on the host network (same host name, both pid 7)
   register under one name and one of them never gets a job: :class:`ServiceWorker` adds a random id.

Idle workers (``tests/test_dispatch.py``; effect measured by ``benchmarks/dispatch.py``):

8. Upstream keeps no job waiting (``job_queue_sizes=(-1, 0)``): a worker that reports a result waits until
   the master has processed it and sampled the next configuration. :class:`FixedMaster` keeps
   ``PREFETCH_JOBS`` sampled jobs waiting. Staleness this introduces: a waiting job's configuration was
   sampled before the result(s) that arrived while it waited (at most ``PREFETCH_JOBS`` results, the same
   kind of staleness upstream already has for every job running on another worker); a new bracket may
   start one job earlier than upstream would start it. Brackets, budgets and promotions are unchanged.
9. Upstream sends that job from a separate thread over a new connection, and the worker answers over
   another new one: :class:`hpo_service.dispatch.ServiceDispatcher` (installed here) sends it from the
   result's own thread over a kept connection, and :class:`ServiceWorker` keeps its connection back. A job
   that cannot be sent goes back to the queue (upstream's job-runner thread dies holding its lock). Each
   worker's kept connection holds one thread of the master's Pyro pool (``THREADPOOL_SIZE``, 256).
   Discovery looks only for new workers when one announces itself (upstream checked all of them, at start-up
   with N workers N times), loses no announcement, and does not free a worker just sent a job.
Failures (issue 5), in :mod:`hpo_service.dispatch`: jobs of dead workers are re-dispatched up to
``max_attempts`` times; ``job_timeout`` stops and records long jobs (:meth:`ServiceWorker.cancel_job`,
:meth:`ServiceWorker.job_cancelled`); every call to a worker has a timeout (a frozen worker blocked
upstream's discovery forever); a dispatcher whose nameserver entry vanished (nameserver restart)
registers again at the next discovery round.

10. BOHB's generator needs ~60 ms of master CPU per model-based configuration:
    :class:`hpo_service.bohb_generator.FastBOHBGenerator` returns the same configurations ~30x cheaper.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import traceback
import uuid
from collections.abc import Callable
from typing import Any

import Pyro4
import Pyro4.errors
from hpbandster.core.dispatcher import Job
from hpbandster.core.master import Master, WarmStartIteration
from hpbandster.core.result import json_result_logger
from hpbandster.core.worker import Worker

from hpo_service.dispatch import MAX_ATTEMPTS, WORKER_CALL_TIMEOUT, ServiceDispatcher
from hpo_service.membership import Membership, NameserverSource
from hpo_service.records import EvaluationResult, JobStatus
from hpo_service.wire import budget_to_builtin, json_safe, to_builtins

logger = logging.getLogger(__name__)

ResultListener = Callable[[Job], None]

# Jobs sampled ahead and waiting in the dispatcher, so a worker that finishes gets its next job at once.
PREFETCH_JOBS = 1
# Seconds a worker waits for its run's master (or a lost nameserver) before it gives up and exits.
MASTER_PATIENCE = 120.0


class FixedMaster(Master):
    """HpBandSter's ``Master`` with our dispatcher and sampler, built by its own constructor.

    Placed after an HpBandSter optimizer, ``class Fixed(BOHB, FixedMaster)``: the optimizer's
    ``super().__init__(config_generator=...)`` then reaches this constructor, which does what upstream's
    ``Master.__init__`` does (the same attributes, checks and warm start) but builds
    :class:`~hpo_service.dispatch.ServiceDispatcher` and wraps the generator itself, before the dispatcher
    thread starts. It never calls upstream's constructor, so nothing depends on the order of its lines; the
    optimizers add only ``get_next_iteration``, so every method here overrides ``Master``'s.
    """

    def __init__(  # upstream's arguments (the optimizers pass them by name), then ours
        self,
        *,
        run_id: str,
        config_generator: Any,
        working_directory: str = ".",
        ping_interval: int = 60,
        nameserver: str = "127.0.0.1",
        nameserver_port: int | None = None,
        host: str | None = None,
        shutdown_workers: bool = True,
        job_queue_sizes: tuple[int, int] | None = None,
        dynamic_queue_size: bool = True,
        logger: logging.Logger | None = None,
        result_logger: Any = None,
        previous_result: Any = None,
        result_listener: ResultListener | None = None,
        prefetch_jobs: int = PREFETCH_JOBS,
        max_attempts: int = MAX_ATTEMPTS,
        job_timeout: float | None = None,
    ) -> None:
        del shutdown_workers  # upstream takes it and ignores it too: shutdown() is told each time
        self.result_listener = result_listener
        self.working_directory = working_directory
        os.makedirs(working_directory, exist_ok=True)
        self.logger = logger or logging.getLogger("hpbandster")
        self.result_logger = result_logger
        self.config_generator = self.sampling_builtins(self.adopt_config_generator(config_generator))
        self.time_ref = None
        self.iterations: list[Any] = []
        self.jobs: list[Any] = []
        self.num_running_jobs = 0
        # Queue sizes are relative to the number of workers: keep every worker busy and `prefetch_jobs` more
        # sampled and waiting in the dispatcher (upstream: none waiting, see the module text).
        sizes = job_queue_sizes or (prefetch_jobs - 1, prefetch_jobs)
        if sizes[0] >= sizes[1]:
            raise ValueError("The queue size range needs to be (min, max) with min<max!")
        self.job_queue_sizes = self.user_job_queue_sizes = sizes
        self.dynamic_queue_size = dynamic_queue_size
        self.warmstart_iteration = (
            [] if previous_result is None else [WarmStartIteration(previous_result, self.config_generator)]
        )
        # Condition that synchronises job_callback and the queue (upstream's name: its methods use it).
        self.thread_cond = threading.Condition()
        self.config: dict[str, Any] = {"time_ref": self.time_ref}
        self.dispatcher = ServiceDispatcher(
            self.job_callback,
            queue_callback=self.adjust_queue_size,
            run_id=run_id,
            ping_interval=ping_interval,
            nameserver=nameserver,
            nameserver_port=nameserver_port,
            host=host,
            max_attempts=max_attempts,
            job_timeout=job_timeout,
        )
        self.dispatcher_thread = threading.Thread(target=self.dispatcher.run)
        self.dispatcher_thread.start()

    def adopt_config_generator(self, generator: Any) -> Any:
        """Hook: the generator this master uses instead of the optimizer's own (default: the same)."""
        return generator

    @staticmethod
    def sampling_builtins(generator: Any) -> Any:
        """``generator``, its samples made builtins as they leave it (fix 1: the logs and the final
        ``Result`` hold them too)."""
        sample = generator.get_config

        def get_config(budget: Any) -> tuple[dict[str, Any], dict[str, Any]]:
            config, config_info = sample(budget)
            return to_builtins(config), to_builtins(config_info)

        generator.get_config = get_config
        return generator

    def _submit_job(self, config_id: Any, config: Any, budget: Any) -> None:
        super()._submit_job(tuple(to_builtins(config_id)), to_builtins(config), budget_to_builtin(budget))

    def job_callback(self, job: Job) -> None:
        super().job_callback(job)
        if self.result_listener is not None:
            self.result_listener(job)

    def run(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().run(*args, **kwargs)
        except BaseException:
            # Not owned (the exception came from a with-block) raises RuntimeError: nothing to release.
            with contextlib.suppress(RuntimeError):
                self.thread_cond.release()
            raise

    def shutdown(self, shutdown_workers: bool = False) -> None:
        if shutdown_workers:
            self._shutdown_workers()
        super().shutdown(shutdown_workers=False)

    def _shutdown_workers(self) -> None:
        with self.dispatcher.discover_cond:
            workers = list(self.dispatcher.worker_pool.values())
        for worker in workers:
            # A fresh proxy with a timeout: a frozen worker must not block the shutdown.
            try:
                with Pyro4.Proxy(worker.proxy._pyroUri) as proxy:
                    proxy._pyroTimeout = WORKER_CALL_TIMEOUT
                    proxy.shutdown()
            except Pyro4.errors.PyroError as error:
                logger.warning("worker %s did not take the shutdown call: %s", worker.name, error)


class JsonResultLogger(json_result_logger):
    """HpBandSter's JSON log format, written with builtins only; each line written and flushed at once.

    A flushed line survives a crash of this process. ``fsync`` (for a crash of the machine) runs on a
    background thread, so the master, which logs while holding its lock, never waits for the disk (0.2 ms
    per line here, milliseconds on network file systems). :meth:`close` syncs what is left.
    """

    def __init__(self, directory: str, overwrite: bool = False) -> None:
        super().__init__(directory, overwrite=overwrite)
        self._syncer = FileSyncer()

    def new_config(self, config_id: Any, config: Any, config_info: Any) -> None:
        config_id = tuple(to_builtins(config_id))
        if config_id not in self.config_ids:
            self.config_ids.add(config_id)
            self._append(self.config_fn, [config_id, config, config_info])

    def __call__(self, job: Job) -> None:
        job_id = tuple(to_builtins(job.id))
        if job_id not in self.config_ids:
            self.config_ids.add(job_id)
            self._append(self.config_fn, [job_id, job.kwargs["config"], {}])
        line = [job_id, job.kwargs["budget"], job.timestamps, job.result, job.exception]
        self._append(self.results_fn, line)

    def close(self) -> None:
        """Wait until every line written so far is on disk; later lines are synced as they are written."""
        self._syncer.close()

    def _append(self, path: str, record: Any) -> None:
        text = json.dumps(json_safe(record)) + "\n"
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
        self._syncer.request(path)


class FileSyncer:
    """fsyncs files on one background thread, started by the first request; requests made while a sync
    runs are coalesced into the next. After :meth:`close`, requests sync in the caller's thread."""

    def __init__(self) -> None:
        self._pending: set[str] = set()
        self._condition = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    def request(self, path: str) -> None:
        with self._condition:
            if not self._closed:
                self._pending.add(path)
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="fsync", daemon=True)
                    self._thread.start()
                self._condition.notify()
                return
        _fsync(path)

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while True:
            with self._condition:
                while not self._pending and not self._closed:
                    self._condition.wait()
                if not self._pending:
                    return
                paths, self._pending = self._pending, set()
            for path in paths:
                _fsync(path)


def _fsync(path: str) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class ServiceWorker(Worker):
    """HpBandSter worker whose results always cross the wire as builtins with a status.

    Subclasses implement :meth:`evaluate`; anything it raises becomes a recorded result with status
    ``error`` and the traceback as reason, so the master never waits on a dead callback.
    """

    def __init__(
        self,
        run_id: str,
        *,
        worker_logger: logging.Logger | None = None,
        nameserver_source: NameserverSource | None = None,
        patience: float = MASTER_PATIENCE,
        **kwargs: Any,
    ) -> None:
        # Upstream names a worker by host name and pid only; containers on the host network share the host
        # name and often the pid, and a second worker with the same name silently replaces the first in the
        # nameserver. A random suffix keeps every worker's name its own.
        kwargs.setdefault("id", uuid.uuid4().hex[:8])
        super().__init__(run_id, logger=worker_logger or logging.getLogger("hpbandster.worker"), **kwargs)
        self.shutdown_requested = False
        # Why this worker stopped on its own (no master, nameserver gone); None when the master stopped it.
        self.exit_error: str | None = None
        self._dispatcher: Any = None
        self._membership = Membership(self, nameserver_source, patience=patience)
        self._current_job: tuple[Any, ...] | None = None
        self._cancelled = threading.Event()

    def job_cancelled(self) -> bool:
        """True once the master asked to stop the running job (job timeout): :meth:`evaluate` polls it."""
        return self._cancelled.is_set()

    @Pyro4.expose
    @Pyro4.oneway
    def cancel_job(self, job_id: Any) -> None:
        if self._current_job is not None and tuple(job_id) == self._current_job:
            self.logger.warning("job %s: the master asked to stop it (job timeout)", self._current_job)
            self._cancelled.set()

    def evaluate(self, config_id: tuple[int, ...], config: dict[str, Any], budget: float) -> EvaluationResult:
        raise NotImplementedError

    def compute(self, config_id: Any, config: Any, budget: Any, working_directory: Any) -> dict[str, Any]:
        self._current_job = tuple(config_id)
        self._cancelled.clear()
        try:
            result = self.evaluate(tuple(config_id), dict(config), float(budget))
        except Exception as error:  # any fault must still produce a result for the master
            self.logger.exception("job %s raised", config_id)
            result = EvaluationResult.failure(
                f"{type(error).__name__}: {error}", JobStatus.ERROR, {"traceback": traceback.format_exc()}
            )
        finally:
            self._current_job = None
        return to_builtins(result.to_wire())

    @Pyro4.expose
    @Pyro4.oneway
    def start_computation(self, callback: Any, id: Any, *args: Any, **kwargs: Any) -> Any:
        return super().start_computation(self._dispatcher_proxy(callback), id, *args, **kwargs)

    def _dispatcher_proxy(self, callback: Any) -> Any:
        """The dispatcher sends a fresh proxy of itself with every job, and upstream opens a connection for
        each result; we keep one connection per dispatcher (one job at a time runs here, so one user)."""
        with self.thread_cond:
            if self._dispatcher is None or self._dispatcher._pyroUri != callback._pyroUri:
                if self._dispatcher is not None:
                    self._dispatcher._pyroRelease()
                self._dispatcher = callback
            return self._dispatcher

    @Pyro4.expose
    @Pyro4.oneway
    def shutdown(self) -> None:
        self.shutdown_requested = True
        with self.thread_cond:
            if self._dispatcher is not None:
                self._dispatcher._pyroRelease()
        super().shutdown()

    def _run(self) -> None:
        # Upstream registers once; membership keeps this worker registered and known to the run's master.
        self._membership.start()
        try:
            super()._run()
        finally:
            self._membership.stop()
