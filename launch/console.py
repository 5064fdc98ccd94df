"""What ``launch.local`` shows while its processes run, whose logs are files in ``RUN_DIR/logs``.

Three modes:

- ``live`` (stderr is a terminal): the status block of :mod:`hpo_service.console`; of the process logs only
  the first line of each warning or error (a worker that died, a job re-dispatched, an error) above it.
- ``plain`` (a pipe, a file, ``nohup``, CI): plain lines as before: every line of the master (one per
  finished job) and the workers' warnings and errors with their tracebacks.
- ``verbose`` (``--verbose``): every line of every process log.
"""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from rich.console import Console

from hpo_service.console import (
    LOG_DIRECTORY,
    ConsoleHandler,
    CountsFeed,
    Feed,
    LiveStatus,
    Poller,
    ResultsFeed,
    swapped_log_handlers,
)
from hpo_service.follow import AppendedLines
from launch.dashboard import URL_PREFIX

LIVE, PLAIN, VERBOSE = "live", "plain", "verbose"
# The start of a record as hpo_service.logging_setup formats it: "12:00:00 worker WARNING name: message".
RECORD_START = re.compile(r"^\d\d:\d\d:\d\d (?:\w+ )?(DEBUG|INFO|WARNING|ERROR|CRITICAL) ")
PROBLEM_LEVELS = ("WARNING", "ERROR", "CRITICAL")
MASTER_LOG = "master"


def log_path(run_dir: Path, process: str) -> Path:
    """``RUN_DIR/logs/PROCESS.log``: ``master``, ``worker-1`` ..., ``dashboard``."""
    return run_dir / LOG_DIRECTORY / f"{process}.log"


class LogForwarder:
    """Decides, line by line, which lines of one process log reach the terminal in ``mode``.

    A line that does not start a record (a traceback, a message over several lines) belongs to the record
    before it; raw output before any record (a crash before logging was set up) counts as a problem."""

    def __init__(self, mode: str, process: str) -> None:
        self.mode = mode
        self.process = process
        self.shown = mode != LIVE  # the decision of the current record, for its continuation lines

    def select(self, lines: list[str]) -> list[str]:
        return [line for line in lines if self.shows(line)]

    def shows(self, line: str) -> bool:
        if line.startswith(URL_PREFIX):
            return False  # the dashboard's address: launch.dashboard announces it once
        start = RECORD_START.match(line)
        if start is None:
            return self.shown and self.mode != LIVE
        problem = start.group(1) in PROBLEM_LEVELS
        if self.mode == VERBOSE:
            self.shown = True
        elif self.mode == PLAIN:
            self.shown = problem or (self.process == MASTER_LOG and start.group(1) != "DEBUG")
        else:
            self.shown = problem
        return self.shown


class LogFeed:
    """Lines appended to every ``*.log`` in the log directory (processes that start later too), through one
    :class:`LogForwarder` per file, to ``write``."""

    def __init__(self, log_dir: Path, mode: str, write: Callable[[str], None]) -> None:
        self.log_dir = log_dir
        self.mode = mode
        self.write = write
        self.files: dict[Path, tuple[AppendedLines, LogForwarder]] = {}

    def poll(self) -> None:
        for path in sorted(self.log_dir.glob("*.log")):
            if path not in self.files:
                self.files[path] = (AppendedLines(path), LogForwarder(self.mode, path.stem))
            lines, forwarder = self.files[path]
            for line in forwarder.select(lines.read()):
                self.write(line)


class LaunchTerminal:
    """The launcher's terminal while the search runs: :meth:`start` / :meth:`stop` around it; the
    launcher's own log records and :meth:`announce` lines appear above the status block in live mode."""

    def __init__(self, run_dir: Path, mode: str, stream: TextIO) -> None:
        self.run_dir = run_dir
        self.mode = mode
        self.stream = stream
        self.status: LiveStatus | None = None
        self.poller: Poller | None = None
        self._restore = contextlib.ExitStack()

    @classmethod
    def choose(cls, run_dir: Path, verbose: bool, stream: TextIO | None = None) -> LaunchTerminal:
        stream = stream or sys.stderr
        mode = VERBOSE if verbose else LIVE if stream.isatty() else PLAIN
        return cls(run_dir, mode, stream)

    def start(self) -> None:
        log_dir = self.run_dir / LOG_DIRECTORY
        log_dir.mkdir(parents=True, exist_ok=True)
        feeds: list[Feed] = []
        if self.mode == LIVE:
            self.status = LiveStatus(Console(file=self.stream))
            feeds += [ResultsFeed(self.run_dir, self.status), CountsFeed(self.run_dir, self.status)]
            self._restore.enter_context(swapped_log_handlers([ConsoleHandler(self.status.print_line)]))
            self.status.start()
        feeds.append(LogFeed(log_dir, self.mode, self.announce))
        self.poller = Poller(feeds)
        self.poller.start()

    def stop(self) -> None:
        """A last read of every log and result first, so the terminal misses nothing written before."""
        if self.poller is not None:
            self.poller.stop()
            self.poller = None
        if self.status is not None:
            self.status.stop()
            self.status = None
        self._restore.close()

    def announce(self, line: str) -> None:
        if self.status is not None:
            self.status.print_line(line)
        else:
            self.stream.write(line + "\n")
            self.stream.flush()
