"""The nameserver container: serve the Pyro4 nameserver until the run it serves has ended.

Under compose the master's exit must end the run without ``--abort-on-container-exit`` (which would also
end it when one worker is killed, instead of letting the worker restart and rejoin). So the nameserver
watches its own registry: once the run's dispatcher has registered, its disappearance (the master
deregisters at the end) or its silence (the master died) ends the run: remaining workers are told to shut
down, then the nameserver exits and ``docker compose up`` returns. The master's container also registers
:func:`ended_name` when the master exits, so a master that fails before it registers ends the run too.
"""

from __future__ import annotations

import logging
import threading
import time

import Pyro4
import Pyro4.errors
import Pyro4.naming

from hpo_service.errors import SettingsError
from hpo_service.pyro_setup import tls_enabled
from hpo_service.tls import is_loopback

logger = logging.getLogger(__name__)

POLL_SECONDS = 2.0
# Consecutive polls with an unreachable dispatcher before the master counts as dead.
SILENT_POLLS = 3
CALL_TIMEOUT = 3.0
# Workers take seconds to load their data before they register; the nameserver outlives that.
MINIMUM_LIFETIME = 30.0


def dispatcher_answers(uri: str) -> bool:
    try:
        with Pyro4.Proxy(uri) as proxy:
            proxy._pyroTimeout = CALL_TIMEOUT
            proxy._pyroBind()
        return True
    except Pyro4.errors.PyroError:
        return False


def shut_down_workers(registry: Pyro4.naming.NameServer, run_id: str) -> int:
    """Ask every worker still registered for the run to stop; returns how many were asked."""
    workers = registry.list(prefix=f"hpbandster.run_{run_id}.worker.")
    for name, uri in workers.items():
        try:
            with Pyro4.Proxy(uri) as proxy:
                proxy._pyroTimeout = CALL_TIMEOUT
                proxy.shutdown()
        except Pyro4.errors.PyroError as error:
            logger.info("worker %s did not take the shutdown call: %s", name, error)
        registry.remove(name)
    return len(workers)


def ended_name(run_id: str) -> str:
    """Registered by the master's container when the master process has exited, however it exited."""
    return f"hpo.run_{run_id}.ended"


class RunWatch:
    """Decides, poll by poll, whether the run has ended; :meth:`poll` is called from a timer thread."""

    def __init__(self, registry: Pyro4.naming.NameServer, run_id: str) -> None:
        self.registry = registry
        self.run_id = run_id
        self.seen_dispatcher = False
        self.silent_polls = 0

    def ended(self) -> bool:
        if self.registry.list(prefix=ended_name(self.run_id)):
            return True
        dispatchers = self.registry.list(prefix=f"hpbandster.run_{self.run_id}.dispatcher")
        if not dispatchers:
            return self.seen_dispatcher
        self.seen_dispatcher = True
        if all(dispatcher_answers(uri) for uri in dispatchers.values()):
            self.silent_polls = 0
            return False
        self.silent_polls += 1
        if self.silent_polls >= SILENT_POLLS:
            logger.warning("the master of run %s stopped answering", self.run_id)
            for name in dispatchers:
                self.registry.remove(name)
            return True
        return False


def serve_until_run_ends(
    port: int,
    run_id: str,
    host: str = "0.0.0.0",
    poll_seconds: float = POLL_SECONDS,
    minimum_lifetime: float = MINIMUM_LIFETIME,
    *,
    allow_insecure: bool = False,
) -> int:
    """Serve on every interface by default: other containers and the published port reach it.

    Refused (SettingsError) on a non-loopback ``host`` unless Pyro4 is configured for TLS
    (:func:`hpo_service.pyro_setup.configure_pyro`) or ``allow_insecure``.
    """
    if not tls_enabled() and not allow_insecure and not is_loopback(host):
        raise SettingsError(
            f"the nameserver would listen on {host or 'every interface'} without TLS: anyone who reaches "
            "it could control the run; give the run's certificates or allow it explicitly (HPO_INSECURE)"
        )
    _, daemon, _ = Pyro4.naming.startNS(host=host, port=port, enableBroadcast=False)
    started = time.monotonic()
    watch = RunWatch(daemon.nameserver, run_id)
    stop = threading.Event()

    def watch_loop() -> None:
        while not stop.wait(poll_seconds):
            if watch.ended():
                break
        asked = 0
        # Workers still starting up register after the end (a master that failed at once): stop those
        # too, until none is left and the nameserver has lived long enough for slow starters.
        while True:
            newly_asked = shut_down_workers(daemon.nameserver, run_id)
            asked += newly_asked
            if newly_asked == 0 and time.monotonic() - started >= minimum_lifetime:
                break
            time.sleep(poll_seconds)
        logger.info("run %s ended (%d worker(s) told to stop); nameserver exits", run_id, asked)
        # Workers deregister on their way out; let those calls land before the port closes.
        time.sleep(poll_seconds)
        stop.set()

    threading.Thread(target=watch_loop, name="run-watch", daemon=True).start()
    logger.info("nameserver on %s:%d for run %s (serpent only, no broadcast)", host, port, run_id)
    try:
        daemon.requestLoop(loopCondition=lambda: not stop.is_set())
    finally:
        daemon.close()
    return 0
