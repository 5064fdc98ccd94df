"""Helpers for the dashboard tests: a served dashboard in this process, JSON requests to it, and a run dir
with hostile text (a configuration value and a run dir name that are HTML)."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from analysis.dashboard.feed import Feed
from analysis.dashboard.registry import RunRegistry, check_root
from analysis.dashboard.server import DashboardServer, ServeSettings
from tests.support.analysis_runs import T0

HOSTILE_VALUE = "<script>alert(1)</script>"
HOSTILE_NAME = "<b>run<img src=x onerror=alert(2)>"  # no "/": it names one directory


@contextmanager
def served(paths: Sequence[Path]) -> Iterator[DashboardServer]:
    """A dashboard on a free loopback port for ``paths``, stopped afterwards."""
    registry = RunRegistry([check_root(path) for path in paths])
    server = DashboardServer(ServeSettings(port=0), Feed(registry))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def request(
    server: DashboardServer, path: str, method: str = "GET", host: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one request (``path`` sent as is: no normalisation of ``../``)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=30)
    try:
        headers = {"Host": host} if host else {}
        connection.request(method, path, headers=headers)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def get_json(server: DashboardServer, path: str) -> Any:
    status, _, body = request(server, path)
    assert status == 200, body
    return json.loads(body)


def result_line(index: int, loss: float, budget: float = 1.0, config_id: Sequence[int] | None = None) -> str:
    stamps = {"submitted": T0 + index, "started": T0 + index, "finished": T0 + index + 0.5}
    info = {"status": "ok", "validation_error_per_epoch": [loss + 0.1, loss], "worker": "w:1"}
    identifier = list(config_id) if config_id is not None else [0, 0, index]
    return json.dumps([identifier, budget, stamps, {"loss": loss, "info": info}, None]) + "\n"


def write_hostile_run(directory: Path, jobs: int = 3) -> Path:
    """A small run whose categorical value and whose directory name are HTML."""
    directory.mkdir(parents=True)
    with open(directory / "configs.json", "w") as handle:
        for index in range(jobs):
            config = {"learning_rate": 10 ** (-1 - index), "activation": HOSTILE_VALUE}
            handle.write(json.dumps([[0, 0, index], config, {}]) + "\n")
    with open(directory / "results.json", "w") as handle:
        for index in range(jobs):
            handle.write(result_line(index, 0.5 - index / 10))
    return directory
