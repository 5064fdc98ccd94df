"""The dashboard's HTTP server: standard library only, read-only, loopback by default.

Only GET is served (any other method: 405). The static page and its scripts come from a fixed table of
files of this package (no path from a request touches the file system); data comes as JSON from
:class:`~analysis.dashboard.feed.Feed`, which finds runs by id in the registry only. Every answer carries
a Content-Security-Policy that allows scripts from this server alone, and ``nosniff``; the page writes
every run id, path and configuration value as text (never as HTML). Requests whose ``Host`` header is
not this server's address are refused (a web page elsewhere cannot reach the server by DNS rebinding).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import socket
import sys
import threading
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from analysis.dashboard.feed import Feed, NotFound
from analysis.incumbents import MAX_BUDGET, RULES

logger = logging.getLogger(__name__)

DEFAULT_PORT = 8050
# How often the page polls for new data, in milliseconds (the benchmark measures the idle cost).
POLL_MILLISECONDS = 500

STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/dashboard.js": ("dashboard.js", "text/javascript; charset=utf-8"),
    "/static/dashboard.css": ("dashboard.css", "text/css; charset=utf-8"),
}
PLOTLY_PATH = "/static/plotly.min.js"
# Scripts only from this server, never inline ones, so text from a run can never become a script even if
# it reached the page as HTML. 'unsafe-eval' is there because Plotly's parallel coordinates draw with
# regl, which compiles its WebGL commands with ``new Function``.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; "
        "connect-src 'self'; font-src 'self' data:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True)
class ServeSettings:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    allow_remote: bool = False
    rule: str = MAX_BUDGET

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"--port {self.port} is not a port number (0 to 65535; 0 picks a free one)")
        if self.rule not in RULES:
            raise ValueError(f"unknown incumbent rule {self.rule!r}")
        if not self.allow_remote and not is_loopback(self.host):
            raise ValueError(
                f"--host {self.host} is not a loopback address: the dashboard has no login, so serving "
                "other machines needs --allow-remote"
            )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def plotly_script() -> bytes:
    """Plotly's JavaScript bundle as shipped in the ``plotly`` Python package (no CDN)."""
    import plotly

    return (Path(plotly.__file__).parent / "package_data" / "plotly.min.js").read_bytes()


def finite_only(value: Any) -> Any:
    """``value`` with every non-finite float replaced by ``None``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite_only(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite_only(item) for item in value]
    return value


class DashboardServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, settings: ServeSettings, feed: Feed) -> None:
        self.address_family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
        super().__init__((settings.host, settings.port), DashboardHandler)
        self.settings = settings
        self.feed = feed
        self.files: dict[str, bytes] = {}
        self.files_lock = threading.Lock()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A page closed mid-answer is normal (debug log); anything else is one line, not a traceback."""
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError):
            logger.debug("%s went away: %s", client_address[0], error)
            return
        logger.error("request from %s failed: %s", client_address[0], error)

    @property
    def url(self) -> str:
        host = self.settings.host
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self.server_address[1]}/"

    def static_file(self, path: str) -> bytes:
        """A file of the page, read once."""
        with self.files_lock:
            if path not in self.files:
                if path == PLOTLY_PATH:
                    self.files[path] = plotly_script()
                else:
                    name = STATIC[path][0]
                    self.files[path] = (resources.files(__package__) / "static" / name).read_bytes()
            return self.files[path]


class DashboardHandler(BaseHTTPRequestHandler):
    server: DashboardServer
    server_version = "hpo-dashboard"
    sys_version = ""

    def do_GET(self) -> None:
        if not self.host_allowed():
            self.send_error_json(HTTPStatus.FORBIDDEN, "unexpected Host header")
            return
        url = urlsplit(self.path)
        if url.path in STATIC or url.path == PLOTLY_PATH:
            content_type = STATIC[url.path][1] if url.path in STATIC else "text/javascript; charset=utf-8"
            self.send_body(HTTPStatus.OK, self.server.static_file(url.path), content_type)
            return
        query = {name: values[-1] for name, values in parse_qs(url.query).items()}
        try:
            answer = self.answer(url.path, query)
        except NotFound as error:
            self.send_error_json(HTTPStatus.NOT_FOUND, str(error))
            return
        except ValueError as error:
            self.send_error_json(HTTPStatus.BAD_REQUEST, str(error))
            return
        except Exception as error:  # a bug or an unreadable run must not take the server down
            logger.error("%s failed: %s", url.path, error, exc_info=logger.isEnabledFor(logging.DEBUG))
            self.send_error_json(HTTPStatus.INTERNAL_SERVER_ERROR, f"{type(error).__name__}: {error}")
            return
        if answer is None:
            self.send_error_json(HTTPStatus.NOT_FOUND, "no such page")
            return
        self.send_json(answer)

    def answer(self, path: str, query: dict[str, str]) -> dict[str, Any] | None:
        """The JSON for an API path, or ``None`` for an unknown path."""
        feed = self.server.feed
        rule = query.get("rule", self.server.settings.rule)
        if rule not in RULES:
            raise ValueError(f"unknown rule {rule!r}")
        if path == "/api/config":
            return {"poll_milliseconds": POLL_MILLISECONDS, "rule": self.server.settings.rule,
                    "rules": list(RULES)}  # fmt: skip
        if path == "/api/runs":
            return feed.runs(rule)
        if path == "/api/compare":
            return feed.compare(rule)
        run_id = query.get("run", "")
        if path == "/api/jobs":
            origin = query.get("origin")
            return feed.jobs(run_id, int(query.get("cursor", "0")), float(origin) if origin else None)
        if path == "/api/charts":
            return feed.charts(run_id, rule)
        if path == "/api/curves":
            return feed.curves(run_id, query.get("config", ""))
        if path == "/api/importance":
            return feed.importance(run_id)
        return None

    def host_allowed(self) -> bool:
        """Whether the Host header names this server (any host when --allow-remote)."""
        if self.server.settings.allow_remote:
            return True
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]")
        return is_loopback(host)

    # Everything but GET is refused: the dashboard never writes.
    def refuse(self) -> None:
        self.send_error_json(HTTPStatus.METHOD_NOT_ALLOWED, "the dashboard is read-only")

    do_POST = do_PUT = do_DELETE = do_PATCH = refuse

    def do_HEAD(self) -> None:
        self.refuse()

    def send_json(self, answer: dict[str, Any]) -> None:
        try:
            text = json.dumps(answer, allow_nan=False, default=str)
        except ValueError:  # a NaN or infinity in a configuration or info value: JSON has none
            text = json.dumps(finite_only(answer), default=str)
        body = text.encode("utf-8")
        self.send_body(HTTPStatus.OK, body, "application/json")

    def send_error_json(self, status: HTTPStatus, message: str) -> None:
        body = json.dumps({"error": message}).encode("utf-8")
        self.send_body(status, body, "application/json")

    def send_body(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if status == HTTPStatus.METHOD_NOT_ALLOWED:
            self.send_header("Allow", "GET")
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        logger.debug("%s " + format, self.address_string(), *args)
