"""The compose nameserver ends with the run: when the master deregisters, or when it stops answering."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import Pyro4
import pytest

from hpo_service.pyro_setup import configure_pyro
from launch.nameserver_role import ended_name, serve_until_run_ends

POLL = 0.2


@Pyro4.expose
class StandIn:
    """A dispatcher or worker as the nameserver sees it: a Pyro object, here with a shutdown call."""

    def __init__(self) -> None:
        self.shut_down = threading.Event()

    def shutdown(self) -> None:
        self.shut_down.set()


class Served:
    def __init__(self) -> None:
        configure_pyro()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.code: list[int] = []
        self.thread = threading.Thread(
            target=lambda: self.code.append(serve_until_run_ends(self.port, "r", "127.0.0.1", POLL, 1.0)),
            daemon=True,
        )
        self.thread.start()
        self.daemon = Pyro4.Daemon(host="127.0.0.1")
        threading.Thread(target=self.daemon.requestLoop, daemon=True).start()

    def registry(self) -> Pyro4.Proxy:
        return Pyro4.locateNS(host="127.0.0.1", port=self.port)

    def register(self, name: str, target: StandIn) -> str:
        uri = str(self.daemon.register(target))
        with self.registry() as registry:
            registry.register(name, uri)
        return uri


@pytest.fixture
def served() -> Iterator[Served]:
    server = Served()
    for _ in range(50):
        try:
            with server.registry() as registry:
                registry.ping()
            break
        except Pyro4.errors.NamingError:
            threading.Event().wait(0.1)
    yield server
    server.daemon.shutdown()


def test_keeps_serving_before_and_during_the_run(served: Served) -> None:
    served.thread.join(timeout=5 * POLL)
    assert served.thread.is_alive()  # no dispatcher yet: a run that has not started has not ended
    served.register("hpbandster.run_r.dispatcher", StandIn())
    served.thread.join(timeout=5 * POLL)
    assert served.thread.is_alive()


def test_ends_when_the_master_deregisters_and_stops_leftover_workers(served: Served) -> None:
    worker = StandIn()
    served.register("hpbandster.run_r.dispatcher", StandIn())
    served.register("hpbandster.run_r.worker.host.1", worker)
    served.thread.join(timeout=3 * POLL)
    with served.registry() as registry:
        registry.remove("hpbandster.run_r.dispatcher")
    served.thread.join(timeout=30)
    assert not served.thread.is_alive()
    assert served.code == [0]
    assert worker.shut_down.is_set()


def test_ends_when_the_master_stops_answering(served: Served) -> None:
    master_daemon = Pyro4.Daemon(host="127.0.0.1")
    uri = str(master_daemon.register(StandIn()))
    with served.registry() as registry:
        registry.register("hpbandster.run_r.dispatcher", uri)
    served.thread.join(timeout=3 * POLL)
    assert served.thread.is_alive()
    master_daemon.close()  # the master died without deregistering
    served.thread.join(timeout=30)
    assert not served.thread.is_alive()


def test_ends_when_the_master_container_says_the_master_exited(served: Served) -> None:
    # The master failed before its dispatcher ever registered (bad settings): the run still ends.
    with served.registry() as registry:
        registry.register(ended_name("r"), "PYRO:exit_code_2@localhost:1")
    served.thread.join(timeout=2 * POLL)
    slow_starter = StandIn()  # a worker that registers only after the run has ended
    served.register("hpbandster.run_r.worker.host.2", slow_starter)
    served.thread.join(timeout=30)
    assert not served.thread.is_alive()
    assert slow_starter.shut_down.is_set()
