"""The live status block on a terminal (rich): a progress bar of jobs and one status line, with new
incumbents and problems printed as lines above it.

It follows the run directory, like any other reader of the result log: ``results.json`` for finished jobs
(:class:`ResultsFeed`) and the master's ``progress.json`` for planned, running and queued jobs
(:class:`CountsFeed`), polled on one thread (:class:`Poller`). ``launch.local`` and the master alone
(:func:`live_console`) both use it, on a TTY only; elsewhere their output stays plain log lines.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Protocol

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from hpo_service import run_files
from hpo_service.follow import AppendedLines
from hpo_service.progress import LiveCounts, Outcome, ProgressState, format_duration, outcome_of_line

logger = logging.getLogger(__name__)

POLL_INTERVAL = 0.25
LOG_DIRECTORY = run_files.LOGS


class LiveStatus:
    """The status block; :meth:`print_line` writes a line above it. Inert until :meth:`start`."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.state = ProgressState()
        self.counts: LiveCounts | None = None
        self.started = time.monotonic()
        # When the speed behind the time left started to count (the first job that finished while we looked).
        self.clock: float | None = None
        self._live: Live | None = None

    def start(self) -> None:
        self.started = time.monotonic()
        self._live = Live(
            console=self.console, get_renderable=self.render, refresh_per_second=2,
            redirect_stdout=False, redirect_stderr=False,
        )  # fmt: skip
        self._live.start()

    def start_clock(self) -> None:
        """Jobs finished from now on measure the speed: the start-up (loading data, workers connecting)
        does not, nor results of the run before a resume."""
        self.state.start_clock()
        self.clock = time.monotonic()

    def stop(self) -> None:
        """Leaves the last state of the block on the screen."""
        if self._live is not None:
            self._live.stop()
            self._live = None

    def print_line(self, text: str) -> None:
        self.console.print(Text(text), soft_wrap=True)

    def render(self) -> RenderableType:
        """Three lines that fit 80 columns: the bar with jobs and times, the counts, the incumbent."""
        state = self.state
        bar = Table.grid(padding=(0, 1))
        # Until the master says how many jobs are planned, an empty bar (a pulsing one redraws all the time).
        bar.add_row(
            ProgressBar(total=max(state.planned, 1), completed=state.finished, width=40),
            Text(self.jobs_line(time.monotonic())),
        )
        best = "best: -" if state.best is None else f"best: {state.best.describe()}"
        return Group(bar, Text(self.counts_line()), Text(best))

    def jobs_line(self, now: float) -> str:
        state = self.state
        remaining = None
        if self.clock is not None and state.finished < state.planned:
            remaining = state.remaining_seconds(now - self.clock)
        left = "" if remaining is None else f", ~{format_duration(remaining)} left"
        return f"{state.finished}/{state.planned or '?'} jobs  {format_duration(now - self.started)}{left}"

    def counts_line(self) -> str:
        state, counts = self.state, self.counts
        parts = [] if state.iteration is None else [f"iteration {state.iteration + 1}"]
        if counts is None:
            parts.append("waiting for the master")
        elif counts.workers == 0 and state.finished == 0:
            parts.append("waiting for workers")
        else:
            parts.append(f"running {counts.running}, queued {counts.queued}")
            parts.append(f"workers {min(counts.running, counts.workers)}/{counts.workers} busy")
        parts.append(f"failures {state.failures}")
        return " | ".join(parts)


def incumbent_line(state: ProgressState) -> str:
    best = state.best
    assert best is not None
    test = "" if best.test_error is None else f" (test error {best.test_error:.4f})"
    return f"new best {best.loss:.4f}{test} at budget {best.budget:g}: {best.config_id}, job {state.finished}"


def failure_line(outcome: Outcome) -> str:
    reason = f": {outcome.reason}" if outcome.reason else ""
    return f"job {outcome.config_id} budget {outcome.budget:g} {outcome.status}{reason}"


class Feed(Protocol):
    def poll(self) -> None: ...


class ResultsFeed:
    """Finished jobs from ``results.json`` into the status; a new incumbent or a failed job is a line.

    The first poll takes the results already there (a resumed run) silently: they are counted, but they are
    no news. The first job that finishes after it starts the clock of the time-left estimate."""

    def __init__(self, run_dir: Path, status: LiveStatus) -> None:
        self.lines = AppendedLines(run_dir / run_files.RESULTS)
        self.status = status
        self.first_poll = True

    def poll(self) -> None:
        for line in self.lines.read():
            outcome = outcome_of_line(line)
            if outcome is None:
                continue
            if self.status.state.record(outcome) and not self.first_poll:
                self.status.print_line(incumbent_line(self.status.state))
            if outcome.status != "ok" and not self.first_poll:
                self.status.print_line(failure_line(outcome))
            if self.status.clock is None and not self.first_poll:
                self.status.start_clock()
        self.first_poll = False


class CountsFeed:
    """The master's ``progress.json``: planned, running and queued jobs, workers."""

    def __init__(self, run_dir: Path, status: LiveStatus) -> None:
        self.run_dir = run_dir
        self.status = status

    def poll(self) -> None:
        counts = LiveCounts.read(self.run_dir)
        if counts is not None:
            self.status.counts = counts
            self.status.state.planned = counts.planned


class Poller:
    """Polls each feed every ``interval`` seconds on a daemon thread; :meth:`stop` polls a last time so that
    nothing written before it is missed."""

    def __init__(self, feeds: Sequence[Feed], interval: float = POLL_INTERVAL) -> None:
        self.feeds = list(feeds)
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="terminal-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.poll()

    def poll(self) -> None:
        for feed in self.feeds:
            try:
                feed.poll()
            except Exception:  # a display problem must never stop the search
                logger.debug("terminal feed %s failed", type(feed).__name__, exc_info=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()


class ConsoleHandler(logging.Handler):
    """Log records as lines above the status block: the message alone for information, with its level
    and logger for warnings and errors (the full records are in the log files)."""

    def __init__(self, write: Callable[[str], None], level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.write = write
        self.setFormatter(ShortFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.write(self.format(record).splitlines()[0])
        except Exception:
            self.handleError(record)


class ShortFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        return message if record.levelno <= logging.INFO else f"{record.levelname} {record.name}: {message}"


def short_log_lines() -> None:
    """The root logger's handlers write :class:`ShortFormatter` lines (an entry point on a terminal, whose
    processes' full records are in files)."""
    for handler in logging.getLogger().handlers:
        handler.setFormatter(ShortFormatter())


@contextlib.contextmanager
def swapped_log_handlers(handlers: list[logging.Handler]) -> Iterator[None]:
    """The root logger writes to ``handlers`` in this block. They get the filters of the handler it had, and
    its format unless they have their own."""
    root = logging.getLogger()
    previous = list(root.handlers)
    if previous:
        for handler in handlers:
            if handler.formatter is None:
                handler.setFormatter(previous[0].formatter)
            for log_filter in previous[0].filters:
                handler.addFilter(log_filter)
    root.handlers[:] = handlers
    try:
        yield
    finally:
        root.handlers[:] = previous
        for handler in handlers:
            handler.close()


@contextlib.contextmanager
def live_console(run_dir: Path, enabled: bool) -> Iterator[None]:
    """The master run alone: on a terminal (``enabled``), the status block, its log in
    ``RUN_DIR/logs/master.log`` and its warnings and errors as lines above the block; otherwise nothing
    changes."""
    if not enabled:
        yield
        return
    (run_dir / LOG_DIRECTORY).mkdir(parents=True, exist_ok=True)
    status = LiveStatus(Console(stderr=True))
    poller = Poller([ResultsFeed(run_dir, status), CountsFeed(run_dir, status)])
    log_file = logging.FileHandler(run_dir / LOG_DIRECTORY / "master.log")
    with swapped_log_handlers([log_file, ConsoleHandler(status.print_line, logging.WARNING)]):
        status.start()
        poller.start()
        try:
            yield
        finally:
            poller.stop()
            status.stop()
