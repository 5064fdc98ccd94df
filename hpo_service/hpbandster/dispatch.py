"""Our HpBandSter dispatcher: a worker that reports a result is sent its next job in the same breath.

Upstream's path from one job's end to the next job's start (HpBandSter 0.7.4, measured with BOHB and 4
workers on trivial jobs, see ``benchmarks/README.md``):

1. the worker opens a new connection to the dispatcher and sends the result;
2. ``register_result`` marks the worker idle, wakes the job-runner thread, and calls the master's
   ``job_callback`` (result log, iteration bookkeeping, BOHB's model refit, under the master's lock);
3. only then does the master thread sample the next configuration (upstream's queue sizes keep no job
   waiting): BOHB needed ~60 ms of CPU for that, with the master's lock held;
4. the job-runner thread, woken in step 2 but waiting for the interpreter lock held by step 3, opens a new
   connection to the worker (``register_result`` closed the last one) and sends the job.

Ours (:class:`ServiceDispatcher`, built by :class:`hpo_service.hpbandster.fixed_master.FixedMaster`):

- the master keeps ``PREFETCH_JOBS`` jobs sampled and waiting in the dispatcher (HpBandSter's own
  ``job_queue_sizes``), and ``register_result`` sends a waiting job to the worker that just reported, in
  the same thread, before it calls the master (no thread hand-off);
- the connection to each worker stays open between jobs (a dead worker is still found by the discovery
  round, as upstream finds a worker that dies mid-job);
- a job that cannot be sent (the worker went away) goes back to the queue instead of killing the
  job-runner thread, which upstream leaves dead while holding the dispatcher's lock (a deadlock);
- discovery (see :meth:`ServiceDispatcher.discover_workers`) checks only new workers when one announces
  itself, loses no announcement, and never frees a worker that was just sent a job.

Failure semantics (issue 5), also here because they live in the dispatcher's bookkeeping:

- a job whose worker died, or never received it, is sent again (first in line) up to ``max_attempts``
  dispatches in all; only then is it reported crashed, with the attempts in its exception text. A
  retried job's result carries ``info["attempts"]`` and ``info["retried_after"]`` (the reasons);
- with ``job_timeout`` set, a job running longer is recorded at once as ``timeout`` (worst loss) and its
  worker is asked to stop it (:meth:`hpo_service.hpbandster.worker.ServiceWorker.cancel_job`); the worker
  takes jobs again once it has reported back;
- every call to a worker has a timeout (``WORKER_CALL_TIMEOUT``): upstream's proxies have none
  (``COMMTIMEOUT`` 0), so one frozen worker (SIGSTOP) blocked discovery, and with it the run, forever;
- a result for a job that is no longer running (reported crashed and re-dispatched, or timed out) is
  dropped with a warning instead of raising ``KeyError`` in the worker's callback.

BOHB's sampling itself got ~30x cheaper in :mod:`hpo_service.hpbandster.bohb_generator`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import Pyro4
import Pyro4.errors
from hpbandster.core.dispatcher import Dispatcher, Job, Worker

from hpo_service.records import WORST_LOSS, JobStatus
from hpo_service.wire import to_builtins

logger = logging.getLogger(__name__)

# Seconds a worker has to answer any call (liveness check, job, cancel, shutdown) before it counts as gone.
WORKER_CALL_TIMEOUT = 5.0
# Dispatches of one job in all, when workers die under it (1: never retried, upstream's behaviour).
MAX_ATTEMPTS = 3


@dataclass
class JobAttempts:
    """How often a job was dispatched, and why the earlier dispatches did not give a result."""

    count: int = 0
    reasons: list[str] = field(default_factory=list)


class ServiceDispatcher(Dispatcher):
    """HpBandSter's ``Dispatcher`` with jobs started from the result thread (see the module text)."""

    def __init__(
        self,
        *args: Any,
        max_attempts: int = MAX_ATTEMPTS,
        job_timeout: float | None = None,
        run_description: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.max_attempts = max_attempts
        self.job_timeout = job_timeout
        self._run_description = dict(run_description or {})
        self._discovery_requested = False
        # Worker name -> the job it was sent but did not run at the last check (see _check_workers).
        self._not_running: dict[str, Any] = {}
        # Workers whose last check timed out (alive but frozen, not gone): their lost job says so.
        self._frozen: set[str] = set()
        # Job id -> its dispatches so far (jobs that were re-dispatched keep their entry until they end).
        self._attempts: dict[Any, JobAttempts] = {}
        # Job id -> the worker still running it after it timed out (the job is already recorded).
        self._cancelled: dict[Any, str] = {}
        self.retries = 0

    @Pyro4.expose
    def run_description(self) -> dict[str, Any]:
        """The run's ``run.json`` record (its spec): what a worker without the shared run dir trains by."""
        return to_builtins(self._run_description)

    @Pyro4.expose
    @Pyro4.callback
    @Pyro4.oneway
    def register_result(self, id: Any = None, result: Any = None) -> None:
        id = tuple(id) if isinstance(id, list) else id
        with self.runner_cond:
            if id in self._cancelled:
                # The timed-out job's worker has stopped it: free again; the job is already recorded.
                self._free(self._cancelled.pop(id), id)
                self._start_waiting_jobs()
                return
            job: Job | None = self.running_jobs.pop(id, None)
            if job is None:
                logger.warning("result for job %s, which is no longer running, dropped", id)
                return
            job.time_it("finished")
            job.result = result["result"]
            job.exception = result["exception"]
            self._note_attempts(job)
            self._free(job.worker_name, id)
            self._start_waiting_jobs()
        # Outside the lock, as upstream: the master's callback may submit the next job at once.
        self.new_result_callback(job)

    def _free(self, name: str, job_id: Any) -> None:
        """The worker ``name`` finished ``job_id``: idle again (unless discovery removed it as dead)."""
        worker = self.worker_pool.get(name)
        if worker is not None and worker.runs_job == job_id:
            worker.runs_job = None
            self.idle_workers.add(name)

    def _note_attempts(self, job: Job) -> None:
        """A re-dispatched job's result says how often it was sent and why the earlier ones failed."""
        attempts = self._attempts.pop(job.id, None)
        if attempts is None or attempts.count < 2:
            return
        if isinstance(job.result, dict) and isinstance(job.result.get("info"), dict):
            job.result["info"]["attempts"] = attempts.count
            job.result["info"]["retried_after"] = list(attempts.reasons)
        if job.exception is not None:
            job.exception = f"{job.exception}\n(attempt {attempts.count}; earlier: {attempts.reasons})"

    def job_runner(self) -> None:
        """Starts jobs submitted while workers are idle (e.g. at the start and after a stage barrier)."""
        with self.runner_cond:
            while not self.shutdown_all_threads:
                self._start_waiting_jobs()
                self.runner_cond.wait()  # submit_job and discovery wake it
            self.discover_cond.notify()
        logger.debug("job runner shutting down")

    @Pyro4.expose
    @Pyro4.oneway
    def trigger_discover_worker(self) -> None:
        # Upstream notifies the discovery thread, and a notification that arrives during a round is lost.
        with self.discover_cond:
            self._discovery_requested = True
            self.discover_cond.notify_all()

    def discover_workers(self) -> None:
        """Upstream's discovery, with three changes. A request (a worker announcing itself) looks only for
        new workers; every ``ping_interval`` all workers are checked, as upstream checks them in every round
        (64 workers announcing themselves made upstream check all 64 up to 64 times at start-up). Requests
        made during a round are not lost but served by one more round. A worker that was just sent a job is
        not made idle because its ``is_busy`` does not say yes yet (upstream would send it a second job)."""
        with self.discover_cond:
            next_sweep = 0.0
            while not self.shutdown_all_threads:
                self._discovery_requested = False
                sweep = time.monotonic() >= next_sweep
                try:
                    self._discovery_round(sweep)
                except Exception:  # upstream's thread dies holding the lock: the run would hang
                    logger.exception("worker discovery failed; trying again at the next round")
                if sweep:
                    next_sweep = time.monotonic() + self.ping_interval
                self._expire_jobs()
                while not (self._discovery_requested or self.shutdown_all_threads):
                    remaining = min(next_sweep - time.monotonic(), self._next_expiry() - time.time())
                    if remaining <= 0:
                        break
                    self.discover_cond.wait(remaining)
            self.runner_cond.notify()
        logger.debug("discovery shutting down")

    def _discovery_round(self, sweep: bool) -> None:
        """Called and returns with the dispatcher's lock held. It lets the lock go while it asks the
        nameserver and the workers (each call may take up to ``WORKER_CALL_TIMEOUT``: a frozen worker or a
        nameserver outage must not hold up results and jobs meanwhile) and while it calls the master."""
        known = set(self.worker_pool)
        pooled = [(worker, worker.runs_job) for worker in self.worker_pool.values()] if sweep else []
        self.discover_cond.release()
        try:
            found = self._find_new_workers(known)
            probes = [(worker, job_id, *self._probe(worker)) for worker, job_id in pooled]
        finally:
            self.discover_cond.acquire()
        changed = self._add_workers(found)
        crashed: dict[Any, str] = {}
        if sweep:
            removed, crashed = self._check_workers(probes)
            changed = changed or removed
        if changed and self.queue_callback is not None:
            self.discover_cond.release()
            try:
                self.queue_callback(len(self.worker_pool))
            finally:
                self.discover_cond.acquire()
        if self.idle_workers:
            self.runner_cond.notify()
        failed = [job for job_id, reason in crashed.items() if (job := self._job_lost(job_id, reason))]
        if failed:
            self.runner_cond.notify()
        self._report(failed)

    def _report(self, jobs: list[Job]) -> None:
        """Hand ended jobs to the master; called with the lock held, which it releases meanwhile."""
        if not jobs:
            return
        self.discover_cond.release()
        try:
            for job in jobs:
                self.new_result_callback(job)
        finally:
            self.discover_cond.acquire()

    def _job_lost(self, job_id: Any, reason: str) -> Job | None:
        """The job's worker died or never got it: send it again, or return it crashed after the last attempt.
        Call with the lock held."""
        if job_id in self._cancelled:  # timed out and recorded already; nothing is waiting for it
            self._free(self._cancelled.pop(job_id), job_id)
            return None
        job: Job | None = self.running_jobs.pop(job_id, None)
        if job is None:
            return None
        self._free(job.worker_name, job_id)
        attempts = self._attempts.setdefault(job_id, JobAttempts(count=1))
        attempts.reasons.append(reason)
        if attempts.count < self.max_attempts:
            self.retries += 1
            logger.warning(
                "re-dispatching job %s (attempt %d of %d): %s",
                job_id, attempts.count + 1, self.max_attempts, reason,
            )  # fmt: skip
            self._put_back(job)
            return None
        del self._attempts[job_id]
        job.time_it("finished")
        job.result = None
        job.exception = f"{reason} (dispatched {attempts.count} time(s), the most --max-attempts allows)"
        if attempts.count > 1:
            job.exception += f"; earlier attempts: {'; '.join(attempts.reasons[:-1])}"
        logger.error("job %s failed for good: %s", job_id, job.exception)
        return job

    def _next_expiry(self) -> float:
        """When (``time.time()``) the next running job reaches the job timeout; infinity without one."""
        if self.job_timeout is None or not self.running_jobs:
            return math.inf
        started = min(job.timestamps.get("started", math.inf) for job in self.running_jobs.values())
        return started + self.job_timeout

    def _expire_jobs(self) -> None:
        """Record every job past the job timeout as timed out and ask its worker to stop it. Lock held."""
        if self.job_timeout is None:
            return
        now, expired = time.time(), []
        for job_id, job in list(self.running_jobs.items()):
            if now - job.timestamps.get("started", now) < self.job_timeout:
                continue
            del self.running_jobs[job_id]
            self._cancelled[job_id] = job.worker_name
            job.time_it("finished")
            reason = f"stopped after the job timeout of {self.job_timeout:g} s"
            job.result = {
                "loss": WORST_LOSS,
                "info": {"status": JobStatus.TIMEOUT.value, "reason": reason, "worker_name": job.worker_name},
            }
            job.exception = None
            self._note_attempts(job)
            logger.warning("job %s on %s: %s", job_id, job.worker_name, reason)
            worker = self.worker_pool.get(job.worker_name)
            if worker is not None:
                try:
                    worker.proxy.cancel_job(job_id)
                except Exception as error:  # a stock worker has no cancel_job; a gone one is found anyway
                    logger.debug("could not ask %s to stop job %s: %s", job.worker_name, job_id, error)
            expired.append(job)
        self._report(expired)

    def _probe(self, worker: Any) -> tuple[bool, bool]:
        """(alive, busy) of a pooled worker, asked over a connection of its own with a timeout: the pool's
        proxy may be sending a job from another thread, and upstream's call without a timeout never
        returned from a frozen worker. Called without the lock."""
        try:
            with Pyro4.Proxy(worker.proxy._pyroUri) as proxy:
                proxy._pyroTimeout = WORKER_CALL_TIMEOUT
                busy = bool(proxy.is_busy())
            self._frozen.discard(worker.name)
            return True, busy
        except Pyro4.errors.PyroError as error:
            logger.debug("worker %s did not answer: %s", worker.name, error)
            if isinstance(error, Pyro4.errors.TimeoutError):
                self._frozen.add(worker.name)
            return False, False

    def _find_new_workers(self, known: set[str]) -> list[tuple[Worker, bool]]:
        """The run's workers in the nameserver that are not in ``known`` and answer, with whether each is
        busy. Called without the lock."""
        try:
            with Pyro4.locateNS(host=self.nameserver, port=self.nameserver_port) as nameserver:
                nameserver._pyroTimeout = WORKER_CALL_TIMEOUT
                self._stay_registered(nameserver)
                names = nameserver.list(prefix=f"hpbandster.run_{self.run_id}.worker.")
        except Pyro4.errors.PyroError as error:
            # Upstream's thread dies here holding the lock; a nameserver back later is found next round.
            logger.warning("worker discovery: nameserver unreachable (%s)", error)
            return []
        found = []
        for name, uri in names.items():
            if name in known:
                continue
            worker = Worker(name, uri)
            worker.proxy._pyroTimeout = WORKER_CALL_TIMEOUT
            alive, busy = self._probe(worker)
            if alive:
                found.append((worker, busy))
        return found

    def _add_workers(self, found: list[tuple[Worker, bool]]) -> bool:
        added = False
        for worker, busy in found:
            if worker.name in self.worker_pool:
                continue
            self.logger.info("DISPATCHER: discovered new worker, %s", worker.name)
            self.worker_pool[worker.name] = worker
            if not busy:
                self.idle_workers.add(worker.name)
            added = True
        return added

    def _stay_registered(self, nameserver: Any) -> None:
        """A restarted nameserver has forgotten this dispatcher (upstream registers once): register again,
        so that new workers, and surviving ones that re-register, find the run."""
        daemon = getattr(self, "pyro_daemon", None)
        if daemon is None or self.pyro_id not in daemon.objectsById:
            return
        uri = str(daemon.uriFor(self.pyro_id))
        if nameserver.list(prefix=self.pyro_id).get(self.pyro_id) != uri:
            nameserver.register(self.pyro_id, uri)
            logger.warning("registered the dispatcher again with the nameserver (it had lost the entry)")

    def _check_workers(self, probes: list[tuple[Any, Any, bool, bool]]) -> tuple[bool, dict[Any, str]]:
        """Upstream's check of every worker, from ``probes`` (worker, job it ran when asked, alive, busy):
        dead ones leave the pool and their job is reported lost. Returns whether any left, and the lost
        jobs with the reason. Called with the lock held.

        A job sent over a kept connection that the worker had closed is lost without an error (upstream
        connects anew for each job): a live worker that is not running the job it was sent, at two checks a
        ``ping_interval`` apart, lost it; the job is reported lost and the worker is free again.
        """
        removed, crashed = False, {}
        for worker, asked_about, alive, busy in probes:
            name = worker.name
            if self.worker_pool.get(name) is not worker:
                continue  # removed meanwhile
            job_id = worker.runs_job
            if not alive:
                self.logger.info("DISPATCHER: removing dead worker, %s", name)
                if job_id is not None and name in self._frozen:
                    crashed[job_id] = (
                        f"Worker {name} stopped answering (frozen: no reply in {WORKER_CALL_TIMEOUT:g} s)."
                    )
                elif job_id is not None:
                    crashed[job_id] = "Worker died unexpectedly."  # upstream's words
                self._frozen.discard(name)
                del self.worker_pool[name]
                self.idle_workers.discard(name)
                self._not_running.pop(name, None)
                removed = True
                continue
            if job_id != asked_about:
                continue  # it finished or got a job while we asked: judge it at the next check
            if job_id is None and not busy:
                self.idle_workers.add(name)
            elif job_id is not None and not busy:
                if self._not_running.get(name) == job_id:
                    logger.warning("job %s never reached %s; reporting it lost", job_id, name)
                    crashed[job_id] = f"The job never reached worker {name}."
                self._not_running[name] = job_id
                continue
            self._not_running.pop(name, None)
        return removed, crashed

    def submit_job(self, id: Any, **kwargs: Any) -> None:
        # Which start of the run the job belongs to: a worker that read another start's spec exits.
        if self._run_description.get("started") is not None:
            kwargs.setdefault("run_started", self._run_description["started"])
        with self.runner_cond:
            job = Job(id, **kwargs)
            job.time_it("submitted")
            self.waiting_jobs.put(job)
            if self.idle_workers:
                self.runner_cond.notify()

    def _start_waiting_jobs(self) -> None:
        """Pair waiting jobs with idle workers. Call with the dispatcher's lock held."""
        while not self.waiting_jobs.empty() and self.idle_workers:
            job = self.waiting_jobs.get()
            name = self.idle_workers.pop()
            if not self._start(job, name):
                self._put_back(job)

    def _start(self, job: Job, name: str) -> bool:
        worker = self.worker_pool[name]
        job.time_it("started")
        worker.runs_job = job.id
        job.worker_name = name
        self.running_jobs[job.id] = job
        attempts = self._attempts.setdefault(job.id, JobAttempts())
        attempts.count += 1
        try:
            worker.proxy.start_computation(self, job.id, **job.kwargs)
        except Pyro4.errors.PyroError as error:
            # The worker is gone or unreachable: it stays out of the idle set until discovery sees it again.
            logger.warning("could not send job %s to %s (%s); it goes back to the queue", job.id, name, error)
            attempts.count -= 1  # it never ran
            worker.runs_job = None
            del self.running_jobs[job.id]
            worker.proxy._pyroRelease()
            return False
        return True

    def _put_back(self, job: Job) -> None:
        """First in line again (the queue's own lock guards its deque)."""
        job.timestamps.pop("started", None)
        with self.waiting_jobs.mutex:
            self.waiting_jobs.queue.appendleft(job)
