"""Our thin layer of fixes around HpBandSter 0.7.4 (unmaintained), in one place.

Each fix names the upstream failure it prevents; ``tests/test_hpbandster_fixes.py`` reproduces each
failure on stock HpBandSter and shows the fix.

1. Numpy values on the wire (numpy 2 / ConfigSpace 1.x): configurations become builtins as they leave
   the config generator (so the logs and the final ``Result`` hold them too), budgets in
   :meth:`FixedMaster._submit_job`, worker results in :meth:`ServiceWorker.compute`. Otherwise serpent
   raises inside the dispatcher's job-runner thread (or writes ``np.float64(1.0)`` that the worker cannot
   parse) and the run hangs silently.
2. ``json_result_logger`` cannot write numpy integers and loses lines on a crash:
   :class:`JsonResultLogger` converts, flushes and fsyncs every line.
3. ``Master.run`` holds its condition with ``acquire()``/``release()``; an exception (Ctrl-C) leaves it
   locked and every later result callback blocks: :meth:`FixedMaster.run` releases it.
4. ``shutdown(shutdown_workers=True)`` raises on a dead worker and leaves the non-daemon dispatcher
   thread running: :meth:`FixedMaster.shutdown` shuts workers down one by one, tolerating failures.
5. ``Worker.__init__`` calls ``logging.basicConfig(DEBUG)`` when given no logger: :class:`ServiceWorker`
   always passes one.
6. ``Worker._run`` asks the dispatcher to discover workers *before* registering itself in the nameserver,
   so a worker joining a running search idles until the next ping interval (10 s and more):
   :meth:`ServiceWorker._run` asks again once its name is registered.
7. Worker names are host name + pid: two containers on the host network (same host name, both pid 7)
   register under one name and one of them never gets a job: :class:`ServiceWorker` adds a random id.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from typing import Any

import Pyro4
import Pyro4.errors
from hpbandster.core.dispatcher import Job
from hpbandster.core.master import Master
from hpbandster.core.result import json_result_logger
from hpbandster.core.worker import Worker

from hpo_service.records import EvaluationResult, JobStatus
from hpo_service.wire import budget_to_builtin, json_safe, to_builtins

logger = logging.getLogger(__name__)

ResultListener = Callable[[Job], None]

# How long one worker may take to accept a shutdown call before we give up on it.
WORKER_SHUTDOWN_TIMEOUT = 5.0


class FixedMaster(Master):
    """Mixin placed before an HpBandSter optimizer: ``class Fixed(FixedMaster, BOHB)``."""

    def __init__(self, *args: Any, result_listener: ResultListener | None = None, **kwargs: Any) -> None:
        self.result_listener = result_listener
        super().__init__(*args, **kwargs)
        sample = self.config_generator.get_config

        def get_config(budget: Any) -> tuple[dict[str, Any], dict[str, Any]]:
            config, config_info = sample(budget)
            return to_builtins(config), to_builtins(config_info)

        self.config_generator.get_config = get_config

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
                    proxy._pyroTimeout = WORKER_SHUTDOWN_TIMEOUT
                    proxy.shutdown()
            except Pyro4.errors.PyroError as error:
                logger.warning("worker %s did not take the shutdown call: %s", worker.name, error)


class JsonResultLogger(json_result_logger):
    """HpBandSter's JSON log format, written with builtins only, each line flushed and fsynced."""

    def __init__(self, directory: str, overwrite: bool = False) -> None:
        super().__init__(directory, overwrite=overwrite)

    def new_config(self, config_id: Any, config: Any, config_info: Any) -> None:
        config_id = tuple(to_builtins(config_id))
        if config_id not in self.config_ids:
            self.config_ids.add(config_id)
            _append_line(self.config_fn, [config_id, config, config_info])

    def __call__(self, job: Job) -> None:
        job_id = tuple(to_builtins(job.id))
        if job_id not in self.config_ids:
            self.config_ids.add(job_id)
            _append_line(self.config_fn, [job_id, job.kwargs["config"], {}])
        line = [job_id, job.kwargs["budget"], job.timestamps, job.result, job.exception]
        _append_line(self.results_fn, line)


def _append_line(path: str, record: Any) -> None:
    text = json.dumps(json_safe(record)) + "\n"
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


class ServiceWorker(Worker):
    """HpBandSter worker whose results always cross the wire as builtins with a status.

    Subclasses implement :meth:`evaluate`; anything it raises becomes a recorded result with status
    ``error`` and the traceback as reason, so the master never waits on a dead callback.
    """

    def __init__(self, run_id: str, *, worker_logger: logging.Logger | None = None, **kwargs: Any) -> None:
        # Upstream names a worker by host name and pid only; containers on the host network share the host
        # name and often the pid, and a second worker with the same name silently replaces the first in the
        # nameserver. A random suffix keeps every worker's name its own.
        kwargs.setdefault("id", uuid.uuid4().hex[:8])
        super().__init__(run_id, logger=worker_logger or logging.getLogger("hpbandster.worker"), **kwargs)
        self.shutdown_requested = False

    def evaluate(self, config_id: tuple[int, ...], config: dict[str, Any], budget: float) -> EvaluationResult:
        raise NotImplementedError

    def compute(self, config_id: Any, config: Any, budget: Any, working_directory: Any) -> dict[str, Any]:
        try:
            result = self.evaluate(tuple(config_id), dict(config), float(budget))
        except Exception as error:  # any fault must still produce a result for the master
            self.logger.exception("job %s raised", config_id)
            result = EvaluationResult.failure(
                f"{type(error).__name__}: {error}", JobStatus.ERROR, {"traceback": traceback.format_exc()}
            )
        return to_builtins(result.to_wire())

    @Pyro4.expose
    @Pyro4.oneway
    def shutdown(self) -> None:
        self.shutdown_requested = True
        super().shutdown()

    def _run(self) -> None:
        announcer = threading.Thread(target=self._announce, name="announce", daemon=True)
        announcer.start()
        super()._run()

    def _announce(self, timeout: float = 30.0, interval: float = 0.25) -> None:
        """Once this worker is in the nameserver, ask the run's dispatcher to discover it now."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.shutdown_requested:
            try:
                with Pyro4.locateNS(self.nameserver, port=self.nameserver_port) as nameserver:
                    if self.worker_id in nameserver.list(prefix=self.worker_id):
                        dispatchers = nameserver.list(prefix=f"hpbandster.run_{self.run_id}.dispatcher")
                        for uri in dispatchers.values():
                            with Pyro4.Proxy(uri) as dispatcher:
                                dispatcher._pyroTimeout = 5.0
                                dispatcher.trigger_discover_worker()
                        return
            except Pyro4.errors.PyroError as error:
                self.logger.debug("announcing to the dispatcher: %s", error)
            time.sleep(interval)
