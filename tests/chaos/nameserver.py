"""A bare Pyro4 nameserver in its own process, on a fixed port, for the nameserver-restart scenario.

Run as ``python tests/chaos/nameserver.py --port PORT``; it serves (serpent only, no broadcast) until it is
killed, and prints ``nameserver ready HOST:PORT`` once it listens. A restarted one starts empty.
"""

from __future__ import annotations

import argparse
import sys

import Pyro4.naming

from hpo_service.pyro_setup import configure_pyro


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    configure_pyro()
    _, daemon, _ = Pyro4.naming.startNS(host=args.host, port=args.port, enableBroadcast=False)
    print(f"nameserver ready {daemon.locationStr}", flush=True)
    try:
        daemon.requestLoop()
    finally:
        daemon.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
