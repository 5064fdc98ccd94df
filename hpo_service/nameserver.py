"""Pyro4 nameserver: start one for a run, or join one at host:port.

HpBandSter's ``NameServer`` writes its address as a pickle that every worker unpickles; we write
``nameserver.json`` instead (plain data) and never enable the UDP broadcast responder.
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import Pyro4
import Pyro4.errors
import Pyro4.naming

from hpo_service import run_files
from hpo_service.errors import NameserverError, SettingsError
from hpo_service.pyro_setup import configure_pyro

logger = logging.getLogger(__name__)

CREDENTIALS_FILE = run_files.NAMESERVER


@dataclass(frozen=True)
class NameserverAddress:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> NameserverAddress:
        """``HOST:PORT`` as given on a command line."""
        host, separator, port_text = text.rpartition(":")
        if not separator or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise SettingsError(f"nameserver address {text!r}: expected HOST:PORT, e.g. 127.0.0.1:9090")
        return cls(host, int(port_text))

    @classmethod
    def argument(cls, text: str) -> NameserverAddress:
        """:meth:`parse` as an argparse ``type``: its message, not argparse's "invalid parse value"."""
        try:
            return cls.parse(text)
        except SettingsError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


class LocalNameserver:
    """A nameserver served from a thread of this process; ``start`` binds, ``stop`` releases the port."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._daemon: Pyro4.naming.NameServerDaemon | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> NameserverAddress:
        configure_pyro()
        try:
            _, daemon, _ = Pyro4.naming.startNS(host=self.host, port=self.port, enableBroadcast=False)
        except OSError as error:
            raise NameserverError(f"cannot start a nameserver on {self.host}:{self.port}: {error}") from error
        self._daemon = daemon
        host, port = daemon.locationStr.rsplit(":", 1)
        self._thread = threading.Thread(target=daemon.requestLoop, name="pyro-nameserver", daemon=True)
        self._thread.start()
        address = NameserverAddress(host.strip("[]"), int(port))
        logger.info("nameserver listening on %s", address)
        return address

    def stop(self) -> None:
        if self._daemon is not None:
            self._daemon.shutdown()
            self._daemon.close()
            self._daemon = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> NameserverAddress:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def wait_for_nameserver(address: NameserverAddress, timeout: float, interval: float = 0.2) -> None:
    """Block until the nameserver answers, or raise :class:`NameserverError` after ``timeout`` seconds."""
    configure_pyro()
    deadline = time.monotonic() + timeout
    while True:
        try:
            with Pyro4.locateNS(host=address.host, port=address.port) as nameserver:
                nameserver.ping()
            return
        except Pyro4.errors.PyroError as error:
            if time.monotonic() >= deadline:
                cause = error.__cause__ or error
                # A TLS peer closes a connection whose credentials it does not accept.
                hint = (
                    "; it closed the connection: is this process given the run's --tls-dir?"
                    if isinstance(cause, Pyro4.errors.ConnectionClosedError) or "SSL" in str(cause)
                    else ""
                )
                detail = str(error) if cause is error else f"{error}: {cause}"
                raise NameserverError(
                    f"no nameserver answered at {address} within {timeout:g} s ({detail}){hint}"
                ) from error
            time.sleep(interval)


def write_credentials(run_dir: Path, address: NameserverAddress) -> Path:
    """Write ``nameserver.json`` atomically so a worker never reads half a file."""
    path = run_dir / CREDENTIALS_FILE
    run_files.write_json(path, {"host": address.host, "port": address.port})
    return path


def read_credentials(run_dir: Path, timeout: float, interval: float = 0.2) -> NameserverAddress:
    """Wait up to ``timeout`` seconds for the master to write ``nameserver.json`` into ``run_dir``."""
    path = run_dir / CREDENTIALS_FILE
    if not run_files.wait_for(path, timeout, interval):
        raise NameserverError(f"{path} did not appear within {timeout:g} s: is the master running?")
    try:
        data = json.loads(path.read_text())
        return NameserverAddress(str(data["host"]), int(data["port"]))
    except (ValueError, KeyError, TypeError) as error:
        raise NameserverError(f"{path} is not a valid nameserver file: {error}") from error


def current_credentials(run_dir: Path) -> NameserverAddress | None:
    """The address ``nameserver.json`` names now, or None while there is none (a resumed master writes a
    new one): workers follow it (:mod:`hpo_service.hpbandster.membership`)."""
    try:
        return read_credentials(run_dir, timeout=0)
    except NameserverError:
        return None


def remove_credentials(run_dir: Path) -> None:
    (run_dir / CREDENTIALS_FILE).unlink(missing_ok=True)
