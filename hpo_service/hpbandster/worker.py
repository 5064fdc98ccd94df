"""The worker side of the layer: HpBandSter's ``Worker`` whose results always cross the wire as builtins
with a status (fixes 1, 5, 6, 7 and 9 of :mod:`hpo_service.hpbandster`). Imports nothing of the master's."""

from __future__ import annotations

import logging
import os
import threading
import traceback
import uuid
from typing import Any

import Pyro4
from hpbandster.core.worker import Worker

from hpo_service.errors import STALE_SPEC_EXIT_CODE
from hpo_service.hpbandster.membership import Membership, NameserverSource
from hpo_service.records import EvaluationResult, JobRequest, JobStatus
from hpo_service.wire import to_builtins

# Seconds a worker waits for its run's master (or a lost nameserver) before it gives up and exits.
MASTER_PATIENCE = 120.0


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
        run_started: float | None = None,
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
        # When the run whose spec this worker read started (run.json's "started"); every job says when its
        # master's run started, so a spec read from a stale run.json is caught at the first job.
        self.run_started = run_started
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

    def evaluate(self, job: JobRequest) -> EvaluationResult:
        raise NotImplementedError

    def compute(self, config_id: Any, config: Any, budget: Any, working_directory: Any) -> dict[str, Any]:
        self._current_job = tuple(config_id)
        self._cancelled.clear()
        try:
            result = self.evaluate(JobRequest.from_wire(config_id, config, budget))
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
        self._check_run(kwargs.pop("run_started", None))
        return super().start_computation(self._dispatcher_proxy(callback), id, *args, **kwargs)

    def _check_run(self, run_started: Any) -> None:
        """Exit (code 3) when the job's run is not the one whose spec this worker read: its run.json was an
        earlier start's, left in the run dir. The master gives the job to another worker; a launcher or
        compose starts this one again, and it reads the current spec."""
        if None in (run_started, self.run_started) or run_started == self.run_started:
            return
        self.logger.error(
            "the run's master started at %s, but this worker read the spec of a start at %s (a run.json left "
            "from an earlier start); exiting to be started again with the current one",
            run_started, self.run_started,
        )  # fmt: skip
        logging.shutdown()
        os._exit(STALE_SPEC_EXIT_CODE)

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
