"""A worker's membership in its run: registered in the nameserver, known to the run's dispatcher.

Upstream's worker registers once, at start. It then never notices a nameserver that restarted (its entry
is gone, so a new master cannot find it), nor a new master (a resumed run), and a worker given a wrong
run id, or whose master never comes, waits forever. :class:`Membership` runs on a thread of the worker:
every ``interval`` seconds it makes sure the worker's entry is in the current nameserver (re-read from
the run dir, where a resumed master writes a new one), asks every dispatcher of the run it has not met
yet to discover it (a worker joining a running search gets a job at once, not at the next ping interval),
and gives up, with a reason, when no master of the run appeared, or no nameserver answered, for
``patience`` seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import Pyro4
import Pyro4.errors

from hpo_service.nameserver import NameserverAddress

logger = logging.getLogger(__name__)

NameserverSource = Callable[[], "NameserverAddress | None"]

# Seconds one call to the nameserver or a dispatcher may take.
CALL_TIMEOUT = 5.0


class Membership:
    """Keeps ``worker`` (a :class:`~hpo_service.hpbandster.worker.ServiceWorker`) in its run (see above)."""

    def __init__(
        self,
        worker: Any,
        source: NameserverSource | None,
        *,
        patience: float,
        interval: float = 1.0,
    ) -> None:
        self.worker = worker
        self.source = source
        self.patience = patience
        self.interval = interval
        self.dispatchers_met: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="membership", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        started = time.monotonic()
        master_seen_at: float | None = None
        nameserver_seen_at = started
        while not self._stop.is_set() and not self.worker.shutdown_requested:
            now = time.monotonic()
            try:
                if self.round():
                    master_seen_at = now
                nameserver_seen_at = now
            except Pyro4.errors.PyroError as error:
                logger.debug("membership round: %s", error)
            if master_seen_at is None and now - started > self.patience:
                self.give_up(self.no_master_reason())
                return
            if now - nameserver_seen_at > self.patience:
                self.give_up(
                    f"the nameserver at {self.worker.nameserver}:{self.worker.nameserver_port} has not "
                    f"answered for {self.patience:g} s"
                )
                return
            self._stop.wait(self.interval)

    def round(self) -> bool:
        """One check: re-register if needed, greet new dispatchers. Returns whether the run has a master."""
        self._follow_source()
        uri = self._own_uri()
        with Pyro4.locateNS(self.worker.nameserver, port=self.worker.nameserver_port) as nameserver:
            nameserver._pyroTimeout = CALL_TIMEOUT
            name = self.worker.worker_id
            if uri is not None and nameserver.list(prefix=name).get(name) != uri:
                nameserver.register(name, uri)
                logger.info(
                    "registered with the nameserver at %s:%s",
                    self.worker.nameserver, self.worker.nameserver_port,
                )  # fmt: skip
            dispatchers = nameserver.list(prefix=f"hpbandster.run_{self.worker.run_id}.dispatcher")
        if uri is not None:
            for dispatcher_uri in dispatchers.values():
                if dispatcher_uri not in self.dispatchers_met and self._greet(dispatcher_uri):
                    self.dispatchers_met.add(dispatcher_uri)
        return bool(dispatchers)

    def _follow_source(self) -> None:
        """Switch to the nameserver the run dir names now (a resumed master starts a new one)."""
        address = self.source() if self.source is not None else None
        if address is not None and (address.host, address.port) != (
            self.worker.nameserver,
            self.worker.nameserver_port,
        ):
            logger.info("the run's nameserver is now %s", address)
            self.worker.nameserver, self.worker.nameserver_port = address.host, address.port

    def _own_uri(self) -> str | None:
        """This worker's URI once upstream's ``_run`` has registered it with its Pyro daemon."""
        daemon = getattr(self.worker, "pyro_daemon", None)
        if daemon is None or self.worker.worker_id not in daemon.objectsById:
            return None
        return str(daemon.uriFor(self.worker.worker_id))

    def _greet(self, uri: str) -> bool:
        try:
            with Pyro4.Proxy(uri) as dispatcher:
                dispatcher._pyroTimeout = CALL_TIMEOUT
                dispatcher.trigger_discover_worker()
        except Pyro4.errors.PyroError as error:
            logger.debug("dispatcher %s did not answer: %s", uri, error)
            return False
        logger.info("asked the run's dispatcher to discover this worker")
        return True

    def no_master_reason(self) -> str:
        return no_master_reason(
            NameserverAddress(self.worker.nameserver, self.worker.nameserver_port), self.worker.run_id,
            self.patience,
        )  # fmt: skip

    def give_up(self, reason: str) -> None:
        logger.error("%s; stopping", reason)
        self.worker.exit_error = reason
        self.worker.shutdown()


def run_description_from_master(address: NameserverAddress, run_id: str, timeout: float) -> dict[str, Any]:
    """The run's ``run.json`` record, asked of its master (a worker without the shared run dir): the
    master's dispatcher is looked up in the nameserver, waiting up to ``timeout`` seconds for it to appear.
    Raises TimeoutError naming the run when no master of ``run_id`` answered in time."""
    deadline = time.monotonic() + timeout
    last_error = "no master of the run registered"
    while True:
        try:
            with Pyro4.locateNS(address.host, port=address.port) as nameserver:
                nameserver._pyroTimeout = CALL_TIMEOUT
                dispatchers = nameserver.list(prefix=f"hpbandster.run_{run_id}.dispatcher")
            for uri in dispatchers.values():
                with Pyro4.Proxy(uri) as dispatcher:
                    dispatcher._pyroTimeout = CALL_TIMEOUT
                    description = dispatcher.run_description()
                if isinstance(description, dict) and description:
                    return description
        except Pyro4.errors.PyroError as error:
            last_error = str(error)
        if time.monotonic() >= deadline:
            logger.debug("no run description yet: %s", last_error)
            raise TimeoutError(no_master_reason(address, run_id, timeout))
        time.sleep(0.2)


def no_master_reason(address: NameserverAddress, run_id: str, waited: float) -> str:
    """Why a worker found no master of ``run_id``, naming the runs that have one at the nameserver."""
    runs: list[str] = []
    try:
        with Pyro4.locateNS(address.host, port=address.port) as nameserver:
            nameserver._pyroTimeout = CALL_TIMEOUT
            names = nameserver.list(prefix="hpbandster.run_")
        prefix, suffix = "hpbandster.run_", ".dispatcher"
        runs = sorted({name[len(prefix) : -len(suffix)] for name in names if name.endswith(suffix)})
    except Pyro4.errors.PyroError:
        pass
    found = f"runs with a master there: {', '.join(runs)}" if runs else "no run has a master there"
    return (
        f"no master for run id {run_id!r} appeared at the nameserver {address.host}:{address.port} "
        f"within {waited:g} s ({found})"
    )
