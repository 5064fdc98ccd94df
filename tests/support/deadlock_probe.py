"""Probe: one small search with one injected fault, on stock HpBandSter 0.7.4 or with our layer.

``python tests/support/deadlock_probe.py SCENARIO stock|fixed [--no-fault]`` runs the search and exits 0 when
it finished correctly (every planned result there, no result lost, the process able to exit), printing one
summary line; 1 on a wrong result; 3 when non-daemon threads would keep the process alive. A stock run that
deadlocks never exits: the caller runs the probe under a timeout, in its own session, and kills the group
(``tests/integration/test_deadlocks.py``). ``SIGUSR1`` makes the probe dump every thread's stack to stderr
first.

The search: Hyperband (BOHB for the warm start) over two floats, budgets 1..9, eta 3, one iteration
(13 jobs), workers in this process (threads) or spawned from this script (``worker`` sub-command) where
the fault needs a process to stop or kill. ``stock`` = HpBandSter's optimizer and ``hpbandster.core.worker
.Worker`` subclasses, with one wire fix so that stock runs at all on numpy 2 (budgets and configurations
sent as builtins, see ``StockOnBuiltins``); ``fixed`` =
``hpo_service.hpbandster.optimizers.create_optimizer`` and
:class:`hpo_service.hpbandster.worker.ServiceWorker` subclasses. ``--no-fault`` runs the same search without
the fault: stock finishes it, so stock fails only because of the fault under test.

Scenarios (line numbers: HpBandSter 0.7.4, ``hpbandster/core/``):

``idle-worker-death``
    Worker A (a thread) and worker B (a process with HpBandSter's idle ``timeout`` of 0.5 s). A's first job
    waits until B's process has exited, so B dies while idle (its own idle-timeout shutdown) and still in
    the dispatcher's pool. Then the master submits two jobs for two workers; the job runner sends one to
    B: ``worker.proxy.start_computation`` (dispatcher.py:296) raises ``CommunicationError`` and the
    ``job_runner`` thread dies holding the dispatcher's lock (taken with ``acquire()`` at :274). A's result
    callback (``register_result``, :318) blocks forever: deadlock. Ours must lose no job (none crashed).
``nameserver-outage``
    The nameserver (a child process on a fixed port) is killed after two results and restarted on the
    same port 2.5 s later. The discovery round in the outage raises ``NamingError`` at ``locateNS``
    (dispatcher.py:201) with the lock held (``acquire()`` at :194): no result is registered any more, and
    ``shutdown()`` would block on the lock too (:181). Ours logs and retries at the next round; the workers
    already in the pool keep working.
``frozen-worker``
    Two worker processes; one is SIGSTOPped after three results (and SIGKILLed when the probe ends). Pyro's
    ``COMMTIMEOUT`` is 0 and upstream releases a worker's connection after each result, so the next call
    to the frozen worker opens a connection (the kernel accepts it) and waits for Pyro's handshake, for
    ever, with the dispatcher's lock held: the job runner sending it its next job (dispatcher.py:296, most
    runs) or the discovery round checking it (``is_alive``, :221 -> :52). No result is registered any more.
    Ours needs a timeout on the calls to workers; the frozen worker's job is reported crashed (at most one
    crashed result is accepted) or run again.
``late-joiner``
    ``ping_interval`` 60 s, ``min_n_workers=0`` (with more, the master asks for discovery every second
    while it waits), no worker at the start. After the master's first discovery round, three worker
    processes join one after another, each when the one before is in the dispatcher's pool (or
    ``LATE_JOINER_LIMIT`` s passed). ``Worker._run`` asks for discovery (worker.py:139) before it registers
    (worker.py:156), so that round usually misses it (a race: about 1 join in 14 was found here) and it idles
    until the next round, 60 s later: the first joiner leaves the run without workers (a hang), a later
    one is reported (exit 1). Ours: each is in the pool within about a second of registering.
``shutdown-with-dead-worker``
    Two worker processes; after the run one is SIGKILLed, then ``shutdown(shutdown_workers=True)``:
    ``shutdown_all_workers`` (dispatcher.py:172) raises ``CommunicationError`` for the dead worker before
    the Pyro daemon is shut down (:182), so the exception leaves ``master.shutdown`` and the non-daemon
    dispatcher thread (master.py:125) keeps the process alive: it never exits.
``warm-start-over-crashed-run``
    A first BOHB run whose worker (HpBandSter's API, in both variants) raises on one job: a crashed run,
    result ``None``, in ``configs.json`` / ``results.json``. Then a second run from those logs. Stock:
    ``logged_results_to_HBS_result`` + ``previous_result=`` builds a ``WarmStartIteration`` (master.py:114)
    that feeds ``loss=None`` to BOHB's ``new_result``, ``np.isfinite(None)``: ``TypeError`` (upstream #32,
    #95), a crash, not a hang. Ours: ``hpo_service.resume`` as ``--resume`` uses it (``load_run``,
    ``restore``) continues the run to its second iteration; the crashed run stays crashed.

``control`` runs the plain search (two worker threads, no fault).
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import Pyro4
import Pyro4.errors
from hpbandster.core.worker import Worker

from hpo_service.nameserver import LocalNameserver, NameserverAddress, wait_for_nameserver
from hpo_service.pyro_setup import configure_pyro

if TYPE_CHECKING:
    import ConfigSpace as CS
    from hpbandster.core.master import Master
    from hpbandster.core.result import Result

REPO = Path(__file__).resolve().parents[2]

SCENARIOS = (
    "idle-worker-death",
    "nameserver-outage",
    "frozen-worker",
    "late-joiner",
    "shutdown-with-dead-worker",
    "warm-start-over-crashed-run",
)
RUN_ID = "deadlock-probe"
MIN_BUDGET, MAX_BUDGET, ETA = 1.0, 9.0, 3.0
JOBS_PER_ITERATION = 13  # Hyperband budgets 1, 3, 9 with eta 3: 9 + 3 + 1 jobs
LATE_JOINER_LIMIT = 5.0  # seconds from a late worker's registration to its discovery
LATE_JOINERS = 3  # joining one after another: stock finds one at once now and then (a race), not three

logger = logging.getLogger("deadlock-probe")


def search_space() -> CS.ConfigurationSpace:
    """Floats only: ConfigSpace hands them out as builtins, so stock needs no config fix."""
    import ConfigSpace as CS

    space = CS.ConfigurationSpace(seed=0)
    space.add([CS.Float("x", (0.0, 1.0)), CS.Float("y", (0.0, 1.0))])
    return space


def known_loss(config: dict[str, Any], budget: float) -> float:
    return float(config["x"]) + float(config["y"]) + 1.0 / float(budget)


def stock_optimizer_class(name: str) -> type[Master]:
    """HpBandSter's optimizer with the one fix stock needs to run at all on numpy 2: budgets (``np.float64``,
    which serpent writes as ``np.float64(1.0)``) and configurations go to the dispatcher as builtins.
    Nothing else changes. (Imported here: worker processes need none of this and start faster.)"""
    from hpbandster.optimizers import BOHB, HyperBand

    base = HyperBand if name == "hyperband" else BOHB

    class StockOnBuiltins(base):  # type: ignore[valid-type,misc]
        def _submit_job(self, config_id: Any, config: Any, budget: Any) -> None:
            config = {key: value.item() if hasattr(value, "item") else value for key, value in config.items()}
            super()._submit_job(tuple(int(part) for part in config_id), config, float(budget))

    return StockOnBuiltins


# Workers ---------------------------------------------------------------------------------------------


@dataclass
class Behaviour:
    """What a probe worker does with its jobs; shared by the stock and the fixed worker class."""

    name: str
    sleep: float = 0.02  # seconds per unit of budget
    hold_first: threading.Event | None = None  # the first job waits for this event
    crash_on: int | None = None  # this job (1-based count) raises
    jobs: int = 0
    stopped: threading.Event = field(default_factory=threading.Event)

    def loss(self, config: dict[str, Any], budget: float) -> float:
        self.jobs += 1
        if self.jobs == 1 and self.hold_first is not None:
            self.hold_first.wait(30)
        if self.jobs == self.crash_on:
            raise RuntimeError(f"probe: job {self.jobs} of {self.name} crashes")
        time.sleep(self.sleep * float(budget))
        return known_loss(config, budget)


class StockProbeWorker(Worker):
    def __init__(self, run_id: str, behaviour: Behaviour, **kwargs: Any) -> None:
        # Workers in one process need their own id (upstream names them by host name and pid).
        kwargs.setdefault("id", behaviour.name)
        super().__init__(run_id, logger=logging.getLogger(f"worker.{behaviour.name}"), **kwargs)
        self.behaviour = behaviour

    def compute(self, config_id: Any, config: Any, budget: Any, working_directory: Any) -> dict[str, Any]:
        return {"loss": self.behaviour.loss(config, budget), "info": {"worker": self.behaviour.name}}

    @Pyro4.expose
    @Pyro4.oneway
    def shutdown(self) -> None:
        super().shutdown()
        self.behaviour.stopped.set()


def fixed_worker_class() -> type[Worker]:
    from hpo_service.hpbandster.worker import ServiceWorker
    from hpo_service.records import EvaluationResult, JobRequest

    class FixedProbeWorker(ServiceWorker):
        def __init__(self, run_id: str, behaviour: Behaviour, **kwargs: Any) -> None:
            super().__init__(run_id, worker_logger=logging.getLogger(f"worker.{behaviour.name}"), **kwargs)
            self.behaviour = behaviour

        def evaluate(self, job: JobRequest) -> EvaluationResult:
            return EvaluationResult(
                loss=self.behaviour.loss(dict(job.config), job.budget), info={"worker": self.behaviour.name}
            )

        @Pyro4.expose
        @Pyro4.oneway
        def shutdown(self) -> None:
            super().shutdown()
            self.behaviour.stopped.set()

    return FixedProbeWorker


def make_worker(variant: str, address: NameserverAddress, behaviour: Behaviour, **kwargs: Any) -> Worker:
    worker_class = StockProbeWorker if variant == "stock" else fixed_worker_class()
    return worker_class(
        RUN_ID, behaviour, nameserver=address.host, nameserver_port=address.port, host="127.0.0.1", **kwargs
    )


def start_thread_worker(
    variant: str, address: NameserverAddress, behaviour: Behaviour, **kwargs: Any
) -> Worker:
    worker = make_worker(variant, address, behaviour, **kwargs)
    worker.run(background=True)
    return worker


class Children:
    """Processes this probe started (in its own process group): killed when the probe ends."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, *arguments: str, stdin: int | None = None) -> subprocess.Popen[bytes]:
        environment = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
        command = [sys.executable, __file__, *arguments]
        process = subprocess.Popen(command, cwd=REPO, env=environment, stdin=stdin)
        self.processes.append(process)
        return process

    def worker(
        self,
        variant: str,
        address: NameserverAddress,
        name: str,
        *,
        sleep: float,
        on_go: bool = False,
        idle_timeout: float | None = None,
    ) -> subprocess.Popen[bytes]:
        """A worker process; ``on_go``: it starts serving only when it reads a line from its stdin;
        ``idle_timeout``: HpBandSter's ``timeout`` (it exits that long after a job without another)."""
        arguments = ["worker", variant, str(address), "--name", name, "--sleep", str(sleep)]
        if idle_timeout is not None:
            arguments += ["--idle-timeout", str(idle_timeout)]
        if on_go:
            return self.start(*arguments, "--on-go", stdin=subprocess.PIPE)
        return self.start(*arguments)

    def kill_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                with suppress(ProcessLookupError):
                    process.send_signal(signal.SIGKILL)
            process.wait()


def wait_for_workers_registered(
    address: NameserverAddress, count: int, timeout: float = 30.0, interval: float = 0.1
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with suppress(Pyro4.errors.PyroError), Pyro4.locateNS(address.host, port=address.port) as nameserver:
            if len(nameserver.list(prefix=f"hpbandster.run_{RUN_ID}.worker.")) >= count:
                return
        time.sleep(interval)
    raise RuntimeError(f"{count} worker(s) did not register within {timeout:g} s")


def worker_main(args: argparse.Namespace) -> int:
    """The ``worker`` sub-command: serve jobs until the master shuts this worker down (or it times out)."""
    logging.basicConfig(
        level=logging.WARNING, format=f"worker {args.name} %(levelname)s %(name)s: %(message)s"
    )
    configure_pyro()
    address = NameserverAddress.parse(args.address)
    if args.on_go and not sys.stdin.readline():
        return 0  # the probe went away before it needed this worker
    behaviour = Behaviour(args.name, sleep=args.sleep)
    worker = make_worker(args.variant, address, behaviour, timeout=args.idle_timeout)
    try:
        worker.run(background=False)
    except Exception:
        if not worker.behaviour.stopped.is_set():  # type: ignore[attr-defined]
            raise
    return 0


def nameserver_main(port: int) -> int:
    """The ``nameserver`` sub-command: a nameserver on 127.0.0.1:PORT until killed."""
    configure_pyro()
    LocalNameserver("127.0.0.1", port).start()
    threading.Event().wait()
    return 0


# The master side ---------------------------------------------------------------------------------------


class Progress:
    """A result logger (HpBandSter's interface) that counts results, so a fault can wait for some."""

    def __init__(self) -> None:
        self.count = 0
        self.times: list[float] = []
        self.condition = threading.Condition()

    def new_config(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __call__(self, job: Any) -> None:
        with self.condition:
            self.count += 1
            self.times.append(time.monotonic())
            self.condition.notify_all()

    def stalls(self, longer_than: float = 1.0) -> str:
        """The waits between two results in a row longer than ``longer_than`` seconds."""
        gaps = [later - earlier for earlier, later in zip(self.times, self.times[1:], strict=False)]
        return ", ".join(f"{gap:.1f} s" for gap in gaps if gap > longer_than) or "none"

    def wait_for(self, count: int, timeout: float = 60.0) -> bool:
        with self.condition:
            return self.condition.wait_for(lambda: self.count >= count, timeout)


def make_master(
    variant: str, address: NameserverAddress, ping_interval: int, optimizer: str = "hyperband", **kwargs: Any
) -> Master:
    arguments = dict(
        run_id=RUN_ID, min_budget=MIN_BUDGET, max_budget=MAX_BUDGET, eta=ETA, nameserver=address.host,
        nameserver_port=address.port, host="127.0.0.1", ping_interval=ping_interval,
        logger=logging.getLogger("hpbandster"), **kwargs,
    )  # fmt: skip
    if variant == "stock":
        return stock_optimizer_class(optimizer)(configspace=search_space(), **arguments)
    from hpo_service.hpbandster.optimizers import create_optimizer

    return create_optimizer(optimizer, search_space(), **arguments)


def wait_for_dispatcher(master: Master, timeout: float = 10.0) -> None:
    """Until the dispatcher serves (registered in the nameserver) and its first discovery round ran."""
    deadline = time.monotonic() + timeout
    while not hasattr(master.dispatcher, "pyro_daemon"):
        if time.monotonic() > deadline:
            raise RuntimeError("the dispatcher did not start")
        time.sleep(0.05)
    time.sleep(0.5)


@dataclass
class Outcome:
    result: Result
    planned: int
    max_crashed: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def in_background(target: Callable[[], None], name: str) -> threading.Thread:
    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    return thread


def control_run(variant: str, workers: int = 2, ping_interval: int = 1) -> Outcome:
    with LocalNameserver("127.0.0.1", 0) as address:
        for index in range(workers):
            start_thread_worker(variant, address, Behaviour(f"w{index}"))
        master = make_master(variant, address, ping_interval)
        try:
            result = master.run(n_iterations=1, min_n_workers=workers)
        finally:
            master.shutdown(shutdown_workers=True)
    return Outcome(result, JOBS_PER_ITERATION)


def idle_worker_death(variant: str, fault: bool, children: Children) -> Outcome:
    b_gone = threading.Event()
    a = Behaviour("a", hold_first=b_gone if fault else None)
    with LocalNameserver("127.0.0.1", 0) as address:
        start_thread_worker(variant, address, a)
        # B, a process, exits after 0.5 s without a job (HpBandSter's own idle timeout). A's first job waits
        # until then, so B dies while idle and still in the dispatcher's pool.
        b = children.worker(variant, address, "b", sleep=0.02, idle_timeout=0.5 if fault else None)
        wait_for_workers_registered(address, 2)
        stopped: list[float] = []

        def watch() -> None:
            b.wait()
            stopped.append(time.monotonic())
            b_gone.set()

        if fault:
            in_background(watch, "watch-b")
        master = make_master(variant, address, ping_interval=1)
        try:
            result = master.run(n_iterations=1, min_n_workers=2)
        finally:
            master.shutdown(shutdown_workers=True)
        b.wait(timeout=30)
    outcome = Outcome(result, JOBS_PER_ITERATION)
    if fault and not stopped:
        outcome.problems.append("worker b never stopped: no fault injected")
    by_worker = [run.info.get("worker") for run in result.get_all_runs() if run.info]
    outcome.notes.append(f"results from a {by_worker.count('a')}, b {by_worker.count('b')}")
    return outcome


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def nameserver_outage(variant: str, fault: bool, children: Children) -> Outcome:
    port = free_port()
    address = NameserverAddress("127.0.0.1", port)
    nameserver = children.start("nameserver", str(port))
    wait_for_nameserver(address, timeout=30)
    progress = Progress()
    outage: dict[str, float] = {}

    def cut() -> None:
        nonlocal nameserver
        if not progress.wait_for(2):
            return
        nameserver.kill()
        nameserver.wait()
        outage["start"], outage["results before"] = time.monotonic(), progress.count
        logger.warning("nameserver killed after %d results", progress.count)
        time.sleep(2.5)
        nameserver = children.start("nameserver", str(port))
        wait_for_nameserver(address, timeout=30)
        outage["end"], outage["results after"] = time.monotonic(), progress.count
        logger.warning("nameserver back on port %d", port)

    for index in range(2):
        start_thread_worker(variant, address, Behaviour(f"w{index}", sleep=0.2))
    master = make_master(variant, address, ping_interval=1, result_logger=progress)
    if fault:
        cutter = in_background(cut, "outage")
    try:
        result = master.run(n_iterations=1, min_n_workers=2)
    finally:
        if fault:
            cutter.join()  # the dispatcher deregisters itself from the nameserver at shutdown
        master.shutdown(shutdown_workers=True)
    outcome = Outcome(result, JOBS_PER_ITERATION)
    if fault:
        if "end" not in outage:
            outcome.problems.append("the nameserver was not cut during the run")
        else:
            during = outage["results after"] - outage["results before"]
            outcome.notes.append(
                f"nameserver down {outage['end'] - outage['start']:.1f} s, {during:.0f} results meanwhile"
            )
    return outcome


def frozen_worker(variant: str, fault: bool, children: Children) -> Outcome:
    progress = Progress()
    with LocalNameserver("127.0.0.1", 0) as address:
        workers = [children.worker(variant, address, f"p{index}", sleep=0.1) for index in range(2)]
        wait_for_workers_registered(address, 2)
        master = make_master(variant, address, ping_interval=1, result_logger=progress)
        frozen: list[float] = []

        def freeze() -> None:
            if progress.wait_for(3):
                workers[0].send_signal(signal.SIGSTOP)
                frozen.append(time.monotonic())
                logger.warning("worker p0 (pid %d) stopped after %d results", workers[0].pid, progress.count)

        if fault:
            in_background(freeze, "freeze")
        try:
            result = master.run(n_iterations=1, min_n_workers=2)
        finally:
            if fault:
                workers[0].kill()  # left stopped until now
                workers[0].wait()
            master.shutdown(shutdown_workers=True)
        for worker in workers[1:] if fault else workers:
            worker.wait(timeout=30)
    outcome = Outcome(result, JOBS_PER_ITERATION, max_crashed=1)  # the frozen worker's job, if it had one
    outcome.notes.append(f"waits over 1 s between two results: {progress.stalls()}")
    if fault and not frozen:
        outcome.problems.append("no worker was stopped")
    if fault and variant == "fixed":
        # Re-dispatched jobs keep the reason in info["retried_after"]; a job given up, in its error log.
        runs = result.get_all_runs()
        reasons = [run.error_logs for run in runs if run.error_logs]
        reasons += [
            (run.info or {}).get("retried_after") for run in runs if (run.info or {}).get("retried_after")
        ]
        if any("died unexpectedly" in str(reason) for reason in reasons):
            outcome.problems.append(f"the frozen worker's job was recorded as dead: {reasons}")
    return outcome


def registered_worker(address: NameserverAddress, pid: int) -> str | None:
    """The nameserver name of the worker process ``pid`` (stock and our names hold the pid), if any."""
    with Pyro4.locateNS(address.host, port=address.port) as nameserver:
        names = nameserver.list(prefix=f"hpbandster.run_{RUN_ID}.worker.")
    return next((name for name in names if f".{pid}." in name), None)


def poll(predicate: Callable[[], Any], timeout: float, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def late_joiner(variant: str, fault: bool, children: Children) -> Outcome:
    count = LATE_JOINERS if fault else 1
    with LocalNameserver("127.0.0.1", 0) as address:
        # Started now, they serve only when told: the join itself then takes milliseconds.
        workers = [
            children.worker(variant, address, f"late{index}", sleep=0.05, on_go=True)
            for index in range(count)
        ]

        def go(worker: subprocess.Popen[bytes]) -> str:
            assert worker.stdin is not None
            worker.stdin.write(b"go\n")
            worker.stdin.flush()
            return str(poll(lambda: registered_worker(address, worker.pid), 30))

        if not fault:
            go(workers[0])  # registered before the master starts: its first discovery round finds it
        master = make_master(variant, address, ping_interval=60)
        delays: list[float | None] = []

        def join() -> None:
            for worker in workers:
                name = go(worker)
                registered = time.monotonic()
                found = poll(lambda name=name: name in master.dispatcher.worker_pool, LATE_JOINER_LIMIT)
                delays.append(time.monotonic() - registered if found else None)
                logger.warning("late worker %s registered; in the dispatcher's pool: %s", name, found)

        try:
            if fault:
                wait_for_dispatcher(master)  # its first discovery round is over
                joiner = in_background(join, "late-joiners")
            # min_n_workers 0: the run starts at once and nothing but the joining workers asks for discovery
            # (with min_n_workers > 0 the master asks for a round every second while it waits).
            result = master.run(n_iterations=1, min_n_workers=0)
            if fault:
                joiner.join(timeout=count * (LATE_JOINER_LIMIT + 30))
        finally:
            master.shutdown(shutdown_workers=True)
    outcome = Outcome(result, JOBS_PER_ITERATION)
    if fault:
        shown = ", ".join("-" if delay is None else f"{delay:.2f}" for delay in delays)
        outcome.notes.append(f"late workers in the dispatcher's pool {shown} s after they registered")
        if len(delays) < count or None in delays:
            outcome.problems.append(f"a late worker was not discovered within {LATE_JOINER_LIMIT:g} s")
    return outcome


def shutdown_with_dead_worker(variant: str, fault: bool, children: Children) -> Outcome:
    with LocalNameserver("127.0.0.1", 0) as address:
        workers = [children.worker(variant, address, f"p{index}", sleep=0.01) for index in range(2)]
        wait_for_workers_registered(address, 2)
        # ping_interval 60: no discovery round between the death and the shutdown removes the dead worker.
        master = make_master(variant, address, ping_interval=60)
        try:
            result = master.run(n_iterations=1, min_n_workers=2)
        except BaseException:
            master.shutdown()
            raise
        if fault:
            workers[0].kill()
            workers[0].wait()
            logger.warning("worker p0 killed after the run; shutting down with shutdown_workers=True")
        master.shutdown(shutdown_workers=True)  # stock raises here and its dispatcher thread lives on
        for worker in workers[1:] if fault else workers:
            worker.wait(timeout=30)
    return Outcome(result, JOBS_PER_ITERATION)


def warm_start_over_crashed_run(variant: str, fault: bool) -> Outcome:
    with tempfile.TemporaryDirectory(prefix="deadlock-probe-") as directory:
        return warm_start_in(Path(directory), variant, fault)


def warm_start_in(run_dir: Path, variant: str, fault: bool) -> Outcome:
    from hpbandster.core.result import json_result_logger, logged_results_to_HBS_result

    with LocalNameserver("127.0.0.1", 0) as address:
        # The first run: one job raises, HpBandSter records a crashed run (result None) in the logs.
        crasher = Behaviour("first", crash_on=2 if fault else None)
        worker = start_thread_worker("stock", address, crasher)
        if variant == "stock":
            first_log: Any = json_result_logger(str(run_dir), overwrite=True)
        else:
            from hpo_service.hpbandster.result_log import JsonResultLogger

            first_log = JsonResultLogger(str(run_dir), overwrite=True)
        master = make_master(variant, address, 1, optimizer="bohb", result_logger=first_log)
        try:
            master.run(n_iterations=1, min_n_workers=1)
        finally:
            master.shutdown()
        worker.shutdown()
        crashed = [line for line in _lines(run_dir / "results.json") if line[3] is None]
        if len(crashed) != (1 if fault else 0):
            raise RuntimeError(f"the first run logged {len(crashed)} crashed runs")

        # The second run continues from those logs.
        start_thread_worker(variant, address, Behaviour("second"))
        if variant == "stock":
            previous = logged_results_to_HBS_result(str(run_dir))
            master = make_master(variant, address, 1, optimizer="bohb", previous_result=previous)
            try:
                result = master.run(n_iterations=1, min_n_workers=1)
            finally:
                master.shutdown(shutdown_workers=True)
        else:
            result = resumed_run(address, run_dir)
    # Stock: a new run of one iteration next to the old results; ours: the run continued to its second
    # iteration (Hyperband's next bracket: 3 + 1 jobs), the old iteration kept.
    planned = 2 * JOBS_PER_ITERATION if variant == "stock" else JOBS_PER_ITERATION + 4
    return Outcome(result, planned, max_crashed=1 if fault else 0)


def resumed_run(address: NameserverAddress, run_dir: Path) -> Result:
    """What ``--resume`` does with the run's logs (``hpo_service.master.run_master``), in this process."""
    from hpo_service import resume
    from hpo_service.hpbandster.result_log import JsonResultLogger
    from hpo_service.space import write_space

    description = {"run_id": RUN_ID, "optimizer": "bohb", "min_budget": MIN_BUDGET, "max_budget": MAX_BUDGET,
                   "eta": ETA, "n_iterations": 2}  # fmt: skip
    (run_dir / "run.json").write_text(json.dumps(description))
    write_space(search_space(), run_dir / "configspace.json")
    logged = resume.load_run(run_dir)
    result_log = resume.appending_logger(JsonResultLogger, run_dir, logged.config_ids())
    master = make_master("fixed", address, 1, optimizer="bohb", result_logger=result_log)
    try:
        restored = resume.restore(master, logged, result_log, None)
        result = master.run(n_iterations=2 - restored.iterations, min_n_workers=1)
    finally:
        master.shutdown(shutdown_workers=True)
    result_log.close()
    return result


def _lines(path: Path) -> list[Any]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# Checks ------------------------------------------------------------------------------------------------


def check(outcome: Outcome) -> list[str]:
    runs = outcome.result.get_all_runs()
    crashed = [run for run in runs if run.loss is None]
    problems = list(outcome.problems)
    if len(runs) != outcome.planned:
        problems.append(f"{len(runs)} results, {outcome.planned} planned")
    if len(crashed) > outcome.max_crashed:
        problems.append(f"{len(crashed)} crashed results (at most {outcome.max_crashed} expected)")
    keys = [(tuple(run.config_id), run.budget) for run in runs]
    if len(set(keys)) != len(keys):
        problems.append("a (config, budget) result appears twice")
    outcome.notes.insert(0, f"{len(runs)} results, {len(crashed)} crashed")
    return problems


def live_threads() -> list[str]:
    """Non-daemon threads besides this one: they would keep the process from exiting."""
    return [
        thread.name
        for thread in threading.enumerate()
        if not thread.daemon and thread is not threading.current_thread()
    ]


def run_scenario(scenario: str, variant: str, fault: bool) -> int:
    started = time.monotonic()
    children = Children()
    try:
        if scenario == "control":
            outcome = control_run(variant)
        elif scenario == "idle-worker-death":
            outcome = idle_worker_death(variant, fault, children)
        elif scenario == "nameserver-outage":
            outcome = nameserver_outage(variant, fault, children)
        elif scenario == "frozen-worker":
            outcome = frozen_worker(variant, fault, children)
        elif scenario == "late-joiner":
            outcome = late_joiner(variant, fault, children)
        elif scenario == "shutdown-with-dead-worker":
            outcome = shutdown_with_dead_worker(variant, fault, children)
        else:
            outcome = warm_start_over_crashed_run(variant, fault)
    finally:
        children.kill_all()
    problems = check(outcome)
    seconds = time.monotonic() - started
    fault_text = "" if fault else " (no fault)"
    print(f"{scenario} {variant}{fault_text}: {'; '.join(outcome.notes)}; {seconds:.1f} s", flush=True)
    for problem in problems:
        print(f"WRONG: {problem}", flush=True)
    threads = live_threads()
    if threads:
        print(f"WRONG: non-daemon threads keep the process alive: {threads}", flush=True)
        sys.stderr.flush()
        os._exit(3)
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("scenario", choices=("control", *SCENARIOS, "worker", "nameserver"))
    parser.add_argument("variant", help="stock|fixed (nameserver: the port)")
    parser.add_argument("address", nargs="?", help="worker: the nameserver's HOST:PORT")
    parser.add_argument("--no-fault", action="store_true", help="the same search without the fault")
    parser.add_argument("--verbose", action="store_true", help="log at INFO (HpBandSter's dispatcher too)")
    parser.add_argument("--name", default="w", help="worker: its name")
    parser.add_argument("--sleep", type=float, default=0.02, help="worker: seconds per unit of budget")
    parser.add_argument("--on-go", action="store_true", help="worker: start when a line arrives on stdin")
    parser.add_argument("--idle-timeout", type=float, help="worker: exit after this long without a job")
    args = parser.parse_args(argv)
    if args.scenario == "nameserver":
        return nameserver_main(int(args.variant))
    if args.variant not in ("stock", "fixed"):
        parser.error("variant: stock or fixed")
    if args.scenario == "worker":
        return worker_main(args)
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    warnings.filterwarnings("ignore", category=FutureWarning)  # statsmodels/pandas, under BOHB
    level = logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    configure_pyro()
    return run_scenario(args.scenario, args.variant, not args.no_fault)


if __name__ == "__main__":
    sys.exit(main())
