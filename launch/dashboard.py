"""``launch.local --dashboard``: the live web dashboard (``python -m analysis serve``) as a child process
beside the search, its URL announced on the terminal, stopped with the rest."""

from __future__ import annotations

import contextlib
import logging
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

# The dashboard's first stdout line is exactly "dashboard: http://HOST:PORT/"; --port 0 picks a free port.
URL_PREFIX = "dashboard: "
STOP_GRACE = 5.0


def serve_command(run_dir: Path, host: str = "127.0.0.1") -> tuple[str, ...]:
    """The dashboard of ``run_dir``, on a free port of ``host`` (loopback: only this machine's users)."""
    return (sys.executable, "-m", "analysis", "serve", str(run_dir), "--port", "0", "--host", host)


class Dashboard:
    """The dashboard process: its stdout and stderr go to ``log``; the line with its URL goes to
    ``announce`` as soon as it is printed. Inert until :meth:`start`."""

    def __init__(self, command: Sequence[str], log: Path, announce: Callable[[str], None]) -> None:
        self.command = list(command)
        self.log = log
        self.announce = announce
        self.process: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._stopping = False

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            # Its own session, like the search's processes: Ctrl-C reaches only the launcher, which stops it.
            self.process = subprocess.Popen(
                self.command, stdout=subprocess.PIPE, stderr=log, start_new_session=True
            )
        self._reader = threading.Thread(target=self._read, name="dashboard-output", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        announced = False
        with open(self.log, "ab") as log:
            for raw in self.process.stdout:
                log.write(raw)
                log.flush()
                line = raw.decode("utf-8", errors="replace").strip()
                if not announced and line.startswith(URL_PREFIX):
                    announced = True
                    self.announce(line)
        if not announced and not self._stopping:
            code = self.process.wait()
            logger.warning("the dashboard exited (code %s) without serving; see %s", code, self.log)

    def stop(self) -> None:
        process = self.process
        if process is None:
            return
        self._stopping = True
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=STOP_GRACE)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._reader is not None:
            self._reader.join(timeout=STOP_GRACE)
        with contextlib.suppress(OSError):
            if process.stdout is not None:
                process.stdout.close()
