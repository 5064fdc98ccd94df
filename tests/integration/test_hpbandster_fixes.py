"""Each fix in hpo_service.hpbandster, shown against the upstream failure it prevents; the dispatcher
deadlocks (fix 4, a shutdown with a dead worker, among them) are in
``tests/integration/test_deadlocks.py``."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import Pyro4
import pytest
from hpbandster.core.result import json_result_logger, logged_results_to_HBS_result
from hpbandster.core.worker import Worker
from hpbandster.optimizers import HyperBand

from hpo_service.hpbandster.fixed_master import STOP_POLL_SECONDS, FixedMaster, StoppableCondition, never
from hpo_service.hpbandster.optimizers import FixedBOHB
from hpo_service.hpbandster.result_log import JsonResultLogger
from hpo_service.hpbandster.worker import ServiceWorker
from hpo_service.nameserver import LocalNameserver, NameserverAddress
from hpo_service.signals import deferred_stop
from hpo_service.space import default_space
from tests.conftest import REPO, wait_for


def numpy_job() -> Any:
    return SimpleNamespace(
        id=(np.int64(0), 0, 1),
        kwargs={
            "config": {"kernel_size": np.int64(5), "optimizer": np.str_("adam")},
            "budget": np.float64(3.0),
        },
        timestamps={"submitted": 1.0, "started": 1.5, "finished": np.float64(2.0)},
        result={"loss": np.float64(0.25), "info": {"epochs": np.int64(3), "loss_curve": [np.float64("nan")]}},
        exception=None,
    )


def test_stock_json_logger_fails_on_numpy_integers(tmp_path: Path) -> None:
    logger = json_result_logger(str(tmp_path))
    with pytest.raises(TypeError, match="not JSON serializable"):
        logger.new_config((0, 0, 1), {"kernel_size": np.int64(5)}, {})


def test_fixed_json_logger_writes_strict_json_that_hpbandster_reads_back(tmp_path: Path) -> None:
    logger = JsonResultLogger(str(tmp_path))
    job = numpy_job()
    logger.new_config(job.id, job.kwargs["config"], {"model_based_pick": np.bool_(False)})
    logger(job)
    config_line = json.loads((tmp_path / "configs.json").read_text())
    assert config_line == [[0, 0, 1], {"kernel_size": 5, "optimizer": "adam"}, {"model_based_pick": False}]
    result_line = json.loads((tmp_path / "results.json").read_text(), parse_constant=pytest.fail)
    assert result_line[3] == {"loss": 0.25, "info": {"epochs": 3, "loss_curve": [None]}}
    result = logged_results_to_HBS_result(str(tmp_path))
    assert result.get_incumbent_id() == (0, 0, 1)


@pytest.fixture
def nameserver() -> Iterator[NameserverAddress]:
    with LocalNameserver("127.0.0.1", 0) as address:
        yield address


class StockBroken(HyperBand):
    def get_next_iteration(self, iteration: int, iteration_kwargs: Any = None) -> Any:
        raise RuntimeError("boom")


class FixedBroken(StockBroken, FixedMaster):
    pass


def small_optimizer(optimizer_class: type, nameserver: NameserverAddress, **options: Any) -> Any:
    """One Hyperband bracket over budgets 1 and 3, its dispatcher on ``nameserver``."""
    return optimizer_class(
        configspace=default_space(),
        nameserver=nameserver.host,
        nameserver_port=nameserver.port,
        min_budget=1,
        max_budget=3,
        eta=3,
        **options,
    )


def lock_is_free_for_another_thread(lock: Any) -> bool:
    outcome: list[bool] = []

    def probe() -> None:
        acquired = lock.acquire(timeout=0.5)
        outcome.append(acquired)
        if acquired:
            lock.release()

    thread = threading.Thread(target=probe)
    thread.start()
    thread.join()
    return outcome[0]


@pytest.mark.parametrize(("optimizer_class", "lock_left_free"), [(StockBroken, False), (FixedBroken, True)])
def test_an_exception_in_run_releases_the_master_lock(
    nameserver: NameserverAddress, optimizer_class: type, lock_left_free: bool
) -> None:
    optimizer = small_optimizer(
        optimizer_class, nameserver, run_id="lock", job_queue_sizes=(0, 1), dynamic_queue_size=False
    )
    try:
        with pytest.raises(RuntimeError, match="boom"):
            optimizer.run(n_iterations=1, min_n_workers=0)
        # Stock: the lock stays held and every later result callback would block forever.
        assert lock_is_free_for_another_thread(optimizer.thread_cond) is lock_left_free
    finally:
        if not lock_left_free:
            optimizer.thread_cond.release()
        optimizer.shutdown()


def signal_another_thread_while_main_waits_for(lock: Any, hold: float) -> threading.Thread:
    """Hold ``lock`` long enough for the main thread to block on it, and take a SIGINT in this thread
    meanwhile, as the kernel may give a terminal's Ctrl-C to any thread of the process. The main thread runs
    the Python handler at its next chance: right after it got the lock, inside ``Condition.__enter__``."""

    def hold_and_signal() -> None:
        with lock:
            time.sleep(hold)
            signal.pthread_kill(threading.get_ident(), signal.SIGINT)
            time.sleep(0.05)

    return start_in_background(hold_and_signal)


def start_in_background(action: Any) -> threading.Thread:
    thread = threading.Thread(target=action, daemon=True)
    thread.start()
    return thread


@pytest.mark.usefixtures("stop_handlers")
@pytest.mark.parametrize("deferred", [False, True], ids=["raised-at-once", "deferred"])
def test_a_ctrl_c_never_leaves_the_dispatchers_lock_held(
    nameserver: NameserverAddress, deferred: bool
) -> None:
    """Fix 11. Upstream's dispatcher shares one plain lock (``discover_cond``, ``runner_cond``) with the
    master's loop, which takes it to count workers. A KeyboardInterrupt raised as the signal arrives can
    fire just after that acquire, where no ``with`` releases it; ``shutdown()`` then waits for the lock
    forever (a chaos-test master hung so after Ctrl-C). Held back by ``deferred_stop`` to the loop's next
    wait, the interrupt leaves the lock free and the shutdown finishes."""
    outcome: dict[str, bool] = {}
    deferral = deferred_stop() if deferred else contextlib.nullcontext()
    with pytest.raises(KeyboardInterrupt), deferral as stop:
        optimizer = small_optimizer(
            FixedBOHB, nameserver, run_id="ctrl-c", stop_requested=never if stop is None else stop.requested
        )
        lock = optimizer.dispatcher.discover_cond
        holder = signal_another_thread_while_main_waits_for(lock, hold=2.5)
        try:
            optimizer.run(n_iterations=1, min_n_workers=1)  # no worker comes: it waits, counting workers
        finally:
            holder.join()
            outcome["lock free"] = lock_is_free_for_another_thread(lock)
            shutdown = start_in_background(optimizer.shutdown)
            shutdown.join(3)
            outcome["shut down"] = not shutdown.is_alive()
            if not outcome["lock free"]:
                lock.release()  # the test's own cleanup: the waiting shutdown goes on
            shutdown.join(30)
            assert not shutdown.is_alive()
    # Raised at once: the main thread kept the lock, and the shutdown waited for it.
    assert outcome == {"lock free": deferred, "shut down": deferred}


def test_the_masters_wait_never_sleeps_through_a_notification() -> None:
    """Fix 11 waits in slices. A slice that times out while a notifier holds the lock still takes that
    notification (CPython removes the waiter either way); a wait that slept on would miss it, and the
    master's loop, as upstream writes it, would never look again: a chaos-test master so never submitted
    its last job. The wait returns instead, and the loop sees the new state."""
    given_up = threading.Event()
    condition = StoppableCondition(given_up.is_set)
    waiting, woke = threading.Event(), threading.Event()
    state = {"job finished": False}

    def master_loop() -> None:
        with condition, contextlib.suppress(KeyboardInterrupt):
            waiting.set()
            while not state["job finished"]:
                condition.wait()
            woke.set()

    loop = start_in_background(master_loop)
    assert waiting.wait(5)
    with condition:  # taken once the loop waits; held past the end of its slice
        time.sleep(3 * STOP_POLL_SECONDS)
        state["job finished"] = True
        condition.notify()
    try:
        assert woke.wait(1 + STOP_POLL_SECONDS), "the loop slept through the notification"
    finally:
        given_up.set()
        loop.join(5)


def run_probe(variant: str, timeout: float) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(
            [sys.executable, str(REPO / "tests" / "support" / "hang_probe.py"), variant],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={"PYTHONPATH": str(REPO), "PATH": ""},
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None


@pytest.mark.slow
def test_stock_bohb_hangs_on_numpy_configs_and_the_fixed_one_finishes() -> None:
    assert run_probe("stock", timeout=8) is None, "stock HpBandSter finished: the upstream hang is gone?"
    finished = run_probe("fixed", timeout=60)
    assert finished is not None and finished.returncode == 0, finished
    assert finished.stdout.strip() == "4"  # one bracket: 3 configurations at budget 1, the best at 3


def test_workers_on_one_host_name_and_pid_get_their_own_names() -> None:
    # Upstream: the name is host name + pid, so two containers on the host network (both pid 7) collide
    # and the second registration silently replaces the first in the nameserver.
    quiet = logging.getLogger("stock-worker")  # without one, upstream calls logging.basicConfig(DEBUG)
    assert Worker("r", logger=quiet).worker_id == Worker("r", logger=quiet).worker_id
    first, second = ServiceWorker("r"), ServiceWorker("r")
    assert first.worker_id != second.worker_id
    assert first.worker_id.startswith(f"hpbandster.run_r.worker.{socket.gethostname()}.{os.getpid()}.")


@Pyro4.expose
class RecordingDispatcher:
    """Stands in for the dispatcher: at each discovery request, notes whether the worker is registered."""

    def __init__(self, nameserver: NameserverAddress, worker_prefix: str) -> None:
        self.nameserver = nameserver
        self.worker_prefix = worker_prefix
        self.registered_at_trigger: list[bool] = []

    def trigger_discover_worker(self) -> None:
        with Pyro4.locateNS(self.nameserver.host, port=self.nameserver.port) as registry:
            self.registered_at_trigger.append(bool(registry.list(prefix=self.worker_prefix)))


class StockJoin(ServiceWorker):
    _run = Worker._run


@pytest.mark.parametrize("worker_class", [StockJoin, ServiceWorker], ids=["stock-join", "fixed-join"])
def test_a_joining_worker_asks_for_discovery_once_it_is_registered(
    nameserver: NameserverAddress, worker_class: type[ServiceWorker]
) -> None:
    # Upstream asks the dispatcher to discover workers before registering itself, so that discovery
    # round cannot find it and the worker idles until the next ping interval.
    daemon = Pyro4.Daemon(host="127.0.0.1")
    threading.Thread(target=daemon.requestLoop, daemon=True).start()
    worker = worker_class(
        "join", nameserver=nameserver.host, nameserver_port=nameserver.port, host="127.0.0.1"
    )
    dispatcher = RecordingDispatcher(nameserver, worker.worker_id)
    with Pyro4.locateNS(nameserver.host, port=nameserver.port) as registry:
        registry.register("hpbandster.run_join.dispatcher", daemon.register(dispatcher))
    worker.run(background=True)
    try:
        assert wait_for(lambda: len(dispatcher.registered_at_trigger) >= 1, timeout=10)
        assert dispatcher.registered_at_trigger[0] is False  # the upstream order, kept by both
        if worker_class is StockJoin:
            time.sleep(1.0)
            assert dispatcher.registered_at_trigger == [False]  # never asked again: the upstream failure
        else:
            assert wait_for(lambda: True in dispatcher.registered_at_trigger, timeout=10)
    finally:
        worker.shutdown()
        daemon.shutdown()
