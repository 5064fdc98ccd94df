"""The master side of the layer: HpBandSter's ``Master`` with our dispatcher and sampler (fixes 1, 3, 4, 8,
9 and 11 of :mod:`hpo_service.hpbandster`)."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any

import Pyro4
import Pyro4.errors
from hpbandster.core.dispatcher import Job
from hpbandster.core.master import Master, WarmStartIteration

from hpo_service.hpbandster.dispatch import MAX_ATTEMPTS, WORKER_CALL_TIMEOUT, ServiceDispatcher
from hpo_service.wire import budget_to_builtin, to_builtins

logger = logging.getLogger(__name__)

ResultListener = Callable[[Job], None]

# Jobs sampled ahead and waiting in the dispatcher, so a worker that finishes gets its next job at once.
PREFETCH_JOBS = 1
# Longest a wait of the master's loop goes without asking whether a stop was requested (fix 11).
STOP_POLL_SECONDS = 0.25


def never() -> bool:
    return False


def queue_sizes(given: tuple[int, int] | None, prefetch_jobs: int) -> tuple[int, int]:
    """Relative to the number of workers: keep every worker busy and ``prefetch_jobs`` more sampled and
    waiting in the dispatcher (upstream: none waiting, see the module text)."""
    sizes = given or (prefetch_jobs - 1, prefetch_jobs)
    if sizes[0] >= sizes[1]:
        raise ValueError("The queue size range needs to be (min, max) with min<max!")
    return sizes


class StoppableCondition(threading.Condition):
    """The master's condition (upstream's ``thread_cond``): a wait lasts at most ``STOP_POLL_SECONDS`` and
    raises ``KeyboardInterrupt`` once ``stop_requested`` says so, holding only this condition's lock, which
    :meth:`FixedMaster.run` releases (fix 11: a stop signal held back until here, see
    :func:`hpo_service.signals.deferred_stop`). Only the master's loop waits on it; other threads notify.

    A wait may end early, as any ``Condition.wait`` may: upstream's loops check their state again. It must
    not wait again itself: a slice that times out while a notifier holds the lock still takes that
    notification (CPython removes the waiter either way), and the loop would then sleep through it.
    """

    def __init__(self, stop_requested: Callable[[], bool]) -> None:
        super().__init__()
        self.stop_requested = stop_requested

    def wait(self, timeout: float | None = None) -> bool:
        if self.stop_requested():
            raise KeyboardInterrupt("stop requested")
        slice_seconds = STOP_POLL_SECONDS if timeout is None else min(timeout, STOP_POLL_SECONDS)
        return super().wait(slice_seconds)


class FixedMaster(Master):
    """HpBandSter's ``Master`` with our dispatcher and sampler, built by its own constructor.

    Placed after an HpBandSter optimizer, ``class Fixed(BOHB, FixedMaster)``: the optimizer's
    ``super().__init__(config_generator=...)`` then reaches this constructor, which does what upstream's
    ``Master.__init__`` does (the same attributes, checks and warm start) but builds our
    :class:`~hpo_service.hpbandster.dispatch.ServiceDispatcher` and wraps the generator itself, before the
    dispatcher thread starts. It never calls upstream's constructor, so nothing depends on the order of its
    lines; the optimizers add only ``get_next_iteration``, so every method here overrides ``Master``'s.
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
        run_description: Mapping[str, Any] | None = None,
        stop_requested: Callable[[], bool] = never,
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
        self.job_queue_sizes = self.user_job_queue_sizes = queue_sizes(job_queue_sizes, prefetch_jobs)
        self.dynamic_queue_size = dynamic_queue_size
        self.warmstart_iteration = (
            [] if previous_result is None else [WarmStartIteration(previous_result, self.config_generator)]
        )
        # Condition that synchronises job_callback and the queue (upstream's name: its methods use it).
        self.thread_cond = StoppableCondition(stop_requested)
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
            run_description=run_description,
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
