"""How far a search is: the state behind the master's per-job lines and the live terminal status block.

Pure bookkeeping (no terminal, no threads): :class:`ProgressState` counts finished jobs and failures and keeps
the incumbent by the same rule as HpBandSter's ``Result.get_incumbent_id`` ("best loss at the largest budget
so far"). The master feeds it jobs as they finish; a terminal that follows ``RUN_DIR/results.json`` feeds
it the logged lines (:func:`outcome_of_line`). The master also writes ``RUN_DIR/progress.json``
(:class:`LiveCounts`): what only it knows, the planned job count and the jobs running and queued right now.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from hpo_service import run_files

logger = logging.getLogger(__name__)

PROGRESS_FILE = run_files.PROGRESS


@dataclass(frozen=True)
class Outcome:
    """One finished job as the progress needs it."""

    config_id: tuple[int, ...]
    budget: float
    loss: float | None
    status: str
    test_error: float | None = None
    reason: str | None = None

    @property
    def counts_for_incumbent(self) -> bool:
        return self.status == "ok" and self.loss is not None and math.isfinite(self.loss)


@dataclass(frozen=True)
class Incumbent:
    loss: float
    config_id: tuple[int, ...]
    budget: float
    test_error: float | None = None

    def describe(self) -> str:
        return f"{self.loss:.4f} {self.config_id} @ {self.budget:g}"


@dataclass
class ProgressState:
    """Finished jobs, failures, the iteration reached and the incumbent; ``record`` one outcome at a time."""

    planned: int = 0
    finished: int = 0
    failures: int = 0
    # Highest iteration (the first element of a config id, counted from 0) that has a finished job.
    iteration: int | None = None
    best: Incumbent | None = None
    # Jobs already finished when the clock started (a resumed run): they say nothing about the speed.
    finished_at_start: int = 0

    def record(self, outcome: Outcome) -> bool:
        """Count ``outcome``; True when it is the new incumbent (larger budget, or lower loss on the same)."""
        self.finished += 1
        if outcome.status != "ok":
            self.failures += 1
        if outcome.config_id:
            self.iteration = max(self.iteration or 0, outcome.config_id[0])
        if not outcome.counts_for_incumbent:
            return False
        assert outcome.loss is not None
        if self.best is not None and (outcome.budget, -outcome.loss) <= (self.best.budget, -self.best.loss):
            return False
        self.best = Incumbent(outcome.loss, outcome.config_id, outcome.budget, outcome.test_error)
        return True

    def start_clock(self) -> None:
        """From now on, jobs that finish count towards the speed behind :meth:`remaining_seconds`."""
        self.finished_at_start = self.finished

    def remaining_seconds(self, elapsed: float) -> float | None:
        """Time left at the speed so far: jobs finished in the ``elapsed`` seconds since the clock started;
        None until one finished.

        Jobs of a bracket's large budgets take longer than its small ones, so this is an estimate that
        tightens as brackets complete."""
        done = self.finished - self.finished_at_start
        if done <= 0 or self.planned <= 0 or elapsed <= 0:
            return None
        return max(0, self.planned - self.finished) * elapsed / done


def outcome_of_line(line: str) -> Outcome | None:
    """The outcome of one ``results.json`` line (``[config_id, budget, timestamps, result, exception]``);
    None for a line that is not one (cut short by a kill, or not JSON)."""
    try:
        config_id, budget, _, result, exception = json.loads(line)
        info = (result or {}).get("info") or {}
        loss = (result or {}).get("loss")
        status = info.get("status") or ("crashed" if exception or result is None else "ok")
        return Outcome(
            tuple(int(part) for part in config_id),
            float(budget),
            None if loss is None else float(loss),
            str(status),
            info.get("test_error"),
            info.get("reason"),
        )
    except (ValueError, TypeError, AttributeError):
        return None


@dataclass(frozen=True)
class LiveCounts:
    """What the master alone knows, in ``RUN_DIR/progress.json``: planned jobs, jobs on workers, jobs waiting
    for a free worker, workers connected, and when it wrote this."""

    planned: int
    running: int = 0
    queued: int = 0
    workers: int = 0
    updated: float = 0.0

    def write(self, run_dir: Path) -> None:
        """Atomically, so that a reader never sees half a file."""
        path = run_dir / PROGRESS_FILE
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(json.dumps(asdict(self)) + "\n")
        os.replace(temporary, path)

    @classmethod
    def read(cls, run_dir: Path) -> LiveCounts | None:
        """The master's last counts; None before it wrote any (or from a file that is not ours)."""
        try:
            fields: dict[str, Any] = json.loads((run_dir / PROGRESS_FILE).read_text())
            return cls(**{key: fields[key] for key in ("planned", "running", "queued", "workers", "updated")})
        except (OSError, ValueError, TypeError, KeyError):
            return None


def format_duration(seconds: float) -> str:
    """``1:02:03`` or ``2:03``."""
    minutes, second = divmod(round(seconds), 60)
    hours, minute = divmod(minutes, 60)
    return f"{hours}:{minute:02d}:{second:02d}" if hours else f"{minute}:{second:02d}"


class CountsPublisher:
    """Writes ``counts()`` to ``RUN_DIR/progress.json`` every ``interval`` seconds while the search runs (on a
    daemon thread, when they changed), so a terminal sees jobs start as well as finish."""

    def __init__(self, run_dir: Path, counts: Callable[[], LiveCounts], interval: float = 1.0) -> None:
        self.run_dir = run_dir
        self.counts = counts
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last: tuple[int, int, int, int] | None = None

    def start(self) -> None:
        self.publish()
        self._thread = threading.Thread(target=self._run, name="progress-counts", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.publish()

    def publish(self) -> None:
        counts = self.counts()
        key = (counts.planned, counts.running, counts.queued, counts.workers)
        if key == self._last:
            return
        self._last = key
        try:
            replace(counts, updated=time.time()).write(self.run_dir)
        except OSError:
            logger.debug("cannot write %s", self.run_dir / PROGRESS_FILE, exc_info=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.publish()
