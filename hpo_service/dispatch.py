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

Ours (:class:`ServiceDispatcher`, installed by :class:`hpo_service.hpbandster_fixes.FixedMaster`):

- the master keeps ``PREFETCH_JOBS`` jobs sampled and waiting in the dispatcher (HpBandSter's own
  ``job_queue_sizes``), and ``register_result`` sends a waiting job to the worker that just reported, in
  the same thread, before it calls the master (no thread hand-off);
- the connection to each worker stays open between jobs (a dead worker is still found by the discovery
  round, as upstream finds a worker that dies mid-job);
- a job that cannot be sent (the worker went away) goes back to the queue instead of killing the
  job-runner thread, which upstream leaves dead while holding the dispatcher's lock (a deadlock);
- discovery (see :meth:`ServiceDispatcher.discover_workers`) checks only new workers when one announces
  itself, loses no announcement, and never frees a worker that was just sent a job.

BOHB's sampling itself got ~30x cheaper in :mod:`hpo_service.bohb_generator`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import Pyro4
import Pyro4.errors
from hpbandster.core.dispatcher import Dispatcher, Job, Worker

logger = logging.getLogger(__name__)


class ServiceDispatcher(Dispatcher):
    """HpBandSter's ``Dispatcher`` with jobs started from the result thread (see the module text)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._discovery_requested = False
        # Worker name -> the job it was sent but did not run at the last check (see _check_workers).
        self._not_running: dict[str, Any] = {}

    @classmethod
    def like(cls, stock: Dispatcher) -> ServiceDispatcher:
        """Ours, built from the arguments a (not yet started) upstream dispatcher was given."""
        return cls(
            stock.new_result_callback,
            run_id=stock.run_id,
            ping_interval=stock.ping_interval,
            nameserver=stock.nameserver,
            nameserver_port=stock.nameserver_port,
            host=stock.host,
            logger=stock.logger,
            queue_callback=stock.queue_callback,
        )

    @Pyro4.expose
    @Pyro4.callback
    @Pyro4.oneway
    def register_result(self, id: Any = None, result: Any = None) -> None:
        with self.runner_cond:
            job: Job = self.running_jobs.pop(id)
            job.time_it("finished")
            job.result = result["result"]
            job.exception = result["exception"]
            worker = self.worker_pool.get(job.worker_name)
            if worker is not None:  # None: discovery already removed it as dead
                worker.runs_job = None
                self.idle_workers.add(job.worker_name)
                self._start_waiting_jobs()
        # Outside the lock, as upstream: the master's callback may submit the next job at once.
        self.new_result_callback(job)

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
                while not (self._discovery_requested or self.shutdown_all_threads):
                    remaining = next_sweep - time.monotonic()
                    if remaining <= 0:
                        break
                    self.discover_cond.wait(remaining)
            self.runner_cond.notify()
        logger.debug("discovery shutting down")

    def _discovery_round(self, sweep: bool) -> None:
        """Called and returns with the dispatcher's lock held; releases it to call the master."""
        changed = self._add_new_workers()
        crashed: dict[Any, str] = {}
        if sweep:
            removed, crashed = self._check_workers()
            changed = changed or removed
        if changed and self.queue_callback is not None:
            self.discover_cond.release()
            try:
                self.queue_callback(len(self.worker_pool))
            finally:
                self.discover_cond.acquire()
        if self.idle_workers:
            self.runner_cond.notify()
        for job_id, reason in crashed.items():
            self.discover_cond.release()
            try:
                self.register_result(job_id, {"result": None, "exception": reason})
            finally:
                self.discover_cond.acquire()

    def _add_new_workers(self) -> bool:
        try:
            with Pyro4.locateNS(host=self.nameserver, port=self.nameserver_port) as nameserver:
                names = nameserver.list(prefix=f"hpbandster.run_{self.run_id}.worker.")
        except Pyro4.errors.PyroError as error:
            # Upstream's thread dies here holding the lock; a nameserver back later is found next round.
            logger.warning("worker discovery: nameserver unreachable (%s)", error)
            return False
        added = False
        for name, uri in names.items():
            if name in self.worker_pool:
                continue
            worker = Worker(name, uri)
            try:
                if not worker.is_alive():
                    continue
                busy = worker.is_busy()
            except Pyro4.errors.PyroError as error:
                logger.debug("worker discovery: %s did not answer (%s)", name, error)
                continue
            self.logger.info("DISPATCHER: discovered new worker, %s", name)
            self.worker_pool[name] = worker
            if not busy:
                self.idle_workers.add(name)
            added = True
        return added

    def _check_workers(self) -> tuple[bool, dict[Any, str]]:
        """Upstream's check of every worker: dead ones leave the pool, their job is reported crashed.
        Returns whether any left, and the crashed jobs with the reason recorded as their exception.

        A job sent over a kept connection that the worker had closed is lost without an error (upstream
        connects anew for each job): a live worker that is not running the job it was sent, at two checks a
        ``ping_interval`` apart, lost it; the job is reported crashed and the worker is free again.
        """
        removed, crashed = False, {}
        for name, worker in list(self.worker_pool.items()):
            try:
                alive = worker.is_alive()
                busy = alive and worker.is_busy()
            except Pyro4.errors.PyroError:
                alive = busy = False
            job_id = worker.runs_job
            if not alive:
                self.logger.info("DISPATCHER: removing dead worker, %s", name)
                if job_id is not None:
                    crashed[job_id] = "Worker died unexpectedly."  # upstream's words
                del self.worker_pool[name]
                self.idle_workers.discard(name)
                removed = True
            elif job_id is None and not busy:
                self.idle_workers.add(name)
            elif job_id is not None and not busy:
                if self._not_running.get(name) == job_id:
                    logger.warning("job %s never reached %s; reporting it crashed", job_id, name)
                    crashed[job_id] = f"The job never reached worker {name}."
                self._not_running[name] = job_id
                continue
            self._not_running.pop(name, None)
        return removed, crashed

    def submit_job(self, id: Any, **kwargs: Any) -> None:
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
        try:
            worker.proxy.start_computation(self, job.id, **job.kwargs)
        except Pyro4.errors.PyroError as error:
            # The worker is gone or unreachable: it stays out of the idle set until discovery sees it again.
            logger.warning("could not send job %s to %s (%s); it goes back to the queue", job.id, name, error)
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
