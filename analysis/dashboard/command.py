"""``python -m analysis serve RUN_DIR [RUN_DIR ...]``: arguments, start-up checks, serving until a signal.

The first line on stdout is ``dashboard: http://HOST:PORT/`` (flushed; ``launch.local --dashboard``
reads it), printed once the port is bound; SIGINT or SIGTERM stop the server with exit code 0.
"""

from __future__ import annotations

import argparse
import errno
import signal
import sys
import threading

from analysis.dashboard.feed import Feed
from analysis.dashboard.registry import RunRegistry, check_root
from analysis.dashboard.server import DEFAULT_PORT, DashboardServer, ServeSettings, is_loopback
from analysis.incumbents import MAX_BUDGET, RULES


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default: {DEFAULT_PORT}; 0 picks a free one)"
    )
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a --host other than a loopback address (anyone who reaches it sees the runs)",
    )
    parser.add_argument(
        "--rule", choices=RULES, default=MAX_BUDGET, help="which jobs can be incumbent (default: max-budget)"
    )


def run_serve(options: argparse.Namespace) -> int:
    settings = ServeSettings(options.host, options.port, options.allow_remote, options.rule)
    roots = [check_root(path) for path in options.run_dirs]
    registry = RunRegistry(roots)
    registry.discover()
    # Before the address is printed: whoever reads it may signal us at once.
    stop = threading.Event()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signal_number, lambda *_: stop.set())
    server = bind(settings, Feed(registry))
    if not is_loopback(settings.host):
        print(
            f"warning: serving {settings.host} without a login: anyone who reaches it can read these runs",
            file=sys.stderr,
        )
    print(f"dashboard: {server.url}", flush=True)
    serve_until(stop, server)
    return 0


def bind(settings: ServeSettings, feed: Feed) -> DashboardServer:
    try:
        return DashboardServer(settings, feed)
    except OSError as error:
        reason = "the port is in use" if error.errno == errno.EADDRINUSE else (error.strerror or str(error))
        raise OSError(f"cannot listen on {settings.host} port {settings.port}: {reason}") from None


def serve_until(stop: threading.Event, server: DashboardServer) -> None:
    """Serve on a thread until ``stop`` is set (by SIGINT or SIGTERM), then close the socket."""
    thread = threading.Thread(target=server.serve_forever, name="dashboard", daemon=True)
    thread.start()
    while not stop.wait(1.0):
        pass
    server.shutdown()
    server.server_close()
