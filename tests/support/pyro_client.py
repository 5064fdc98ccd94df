"""A Pyro4 client of a running search, as an insider (the run's certificates) or as a stranger, for
``tests/integration/test_security.py``. Its own process: Pyro4 keeps one TLS configuration per process.

    python tests/support/pyro_client.py --mode tls --tls-dir DIR --nameserver HOST:PORT list
    python tests/support/pyro_client.py --mode plain --nameserver HOST:PORT attack --run-id ID --dispatcher
    URI ...

``list`` prints the nameserver's entries as JSON and binds to every dispatcher and worker (a handshake,
no state change). ``attack`` tries each thing a stranger must not be able to do and prints, as JSON, what
happened to each: ``"done"`` or ``"refused: ExceptionType: message"``.

Modes: ``plain`` (stock Pyro4, no TLS), ``no-cert`` (TLS that trusts the run's CA but presents no
certificate), ``tls`` (the certificates in ``--tls-dir``: the run's own, or one from another CA).
"""

from __future__ import annotations

import argparse
import json
import ssl
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import Pyro4
import Pyro4.errors
import Pyro4.socketutil

from hpo_service.pyro_setup import configure_pyro
from hpo_service.tls import TlsFiles

NAMESERVER_URI = "PYRO:Pyro.NameServer@{}"
TIMEOUT = 5.0


def configure(mode: str, tls_dir: Path | None) -> None:
    configure_pyro(tls_dir if mode == "tls" else None)
    if mode == "no-cert":
        assert tls_dir is not None
        context = ssl.create_default_context(cafile=str(TlsFiles(tls_dir).ca))
        context.check_hostname = False
        Pyro4.config.SSL = True
        setattr(Pyro4.socketutil, "__ssl_client_context", context)  # noqa: B010


def proxy(uri: str) -> Pyro4.Proxy:
    connection = Pyro4.Proxy(uri)
    connection._pyroTimeout = TIMEOUT
    return connection


def outcome(action: Callable[[], Any]) -> str:
    try:
        action()
    except Exception as error:  # the refusal is what is recorded
        return f"refused: {type(error).__name__}: {error}"
    return "done"


def list_entries(nameserver: str) -> int:
    with proxy(NAMESERVER_URI.format(nameserver)) as registry:
        entries = registry.list()
    for name, uri in entries.items():
        if ".dispatcher" in name or ".worker." in name:
            with proxy(uri) as target:
                target._pyroBind()
    print(json.dumps(entries))
    return 0


def attack(nameserver: str, run_id: str, dispatcher: str, workers: list[str]) -> int:
    registry_uri = NAMESERVER_URI.format(nameserver)

    def call(uri: str, method: str, *arguments: Any) -> Callable[[], Any]:
        def action() -> Any:
            with proxy(uri) as target:
                return getattr(target, method)(*arguments)

        return action

    rogue = f"hpbandster.run_{run_id}.worker.rogue.1"
    outcomes = {
        "register": outcome(call(registry_uri, "register", rogue, "PYRO:rogue@127.0.0.1:9")),
        "list": outcome(call(registry_uri, "list")),
        "remove": outcome(call(registry_uri, "remove", f"hpbandster.run_{run_id}.dispatcher")),
        "discover": outcome(call(dispatcher, "trigger_discover_worker")),
        "register_result": outcome(
            call(dispatcher, "register_result", [0, 0, 0], {"loss": -1e9, "info": {"worker": "rogue"}})
        ),
    }
    for index, worker in enumerate(workers):
        outcomes[f"shutdown_{index}"] = outcome(call(worker, "shutdown"))
    print(json.dumps(outcomes))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=("plain", "no-cert", "tls"), required=True)
    parser.add_argument("--tls-dir", type=Path, default=None)
    parser.add_argument("--nameserver", required=True, metavar="HOST:PORT")
    parser.add_argument("action", choices=("list", "attack"))
    parser.add_argument("--run-id", default="")
    parser.add_argument("--dispatcher", default="")
    parser.add_argument("--worker", action="append", default=[])
    args = parser.parse_args(argv)
    configure(args.mode, args.tls_dir)
    if args.action == "list":
        return list_entries(args.nameserver)
    return attack(args.nameserver, args.run_id, args.dispatcher, args.worker)


if __name__ == "__main__":
    sys.exit(main())
