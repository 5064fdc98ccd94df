"""Follow a run directory's JSON logs incrementally: each refresh reads only the bytes appended since the
last one (a byte offset per file), and keeps a partial last line until its newline arrives.

The master appends one JSON line per configuration (``configs.json``) and per finished job
(``results.json``) and flushes each; a reader can see a line cut short while it is being written, so only
complete lines (ending in a newline) are parsed. A file that shrank (rewritten, e.g. a fresh run in the
same directory) is read again from the start.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from analysis.data import ConfigId, JobRecord, RunData, RunMetadata
from analysis.load import (
    CONFIGS_FILE,
    DESCRIPTION_FILE,
    RESULTS_FILE,
    RawJob,
    RunDirError,
    job_record,
    job_times,
    parse_config_line,
    parse_result_line,
    read_metadata,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class LineFollower(Generic[T]):
    """The parsed records of one JSON-lines file, extended by :meth:`refresh` with what was appended."""

    path: Path
    parse: Callable[[Any], T]
    records: list[T] = field(default_factory=list)
    offset: int = 0
    pending: bytes = b""
    # Lines that did not parse (not the partial last one, which waits for its end).
    skipped: int = 0

    def refresh(self) -> bool:
        """Read what was appended; ``True`` when new records arrived (or the file restarted)."""
        try:
            size = self.path.stat().st_size
        except OSError:
            return False
        restarted = size < self.offset
        if restarted:
            self.records, self.offset, self.pending, self.skipped = [], 0, b"", 0
        if size == self.offset:
            return restarted
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            chunk = handle.read(size - self.offset)
        self.offset += len(chunk)
        data = self.pending + chunk
        complete, _, self.pending = data.rpartition(b"\n")
        before = len(self.records)
        if complete:
            self.parse_lines(complete.split(b"\n"))
        return restarted or len(self.records) > before

    def parse_lines(self, lines: list[bytes]) -> None:
        import json

        for line in lines:
            if not line.strip():
                continue
            try:
                self.records.append(self.parse(json.loads(line)))
            except (ValueError, UnicodeDecodeError) as error:
                self.skipped += 1
                logger.warning("%s: ignoring a malformed line (%s)", self.path, error)


class RunFollower:
    """One run directory followed live; :meth:`snapshot` gives the run as :class:`RunData` and a version
    number that changes exactly when something new was read. Thread-safe."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.configs = LineFollower(run_dir / CONFIGS_FILE, parse_config_line)
        self.results: LineFollower[RawJob] = LineFollower(run_dir / RESULTS_FILE, parse_result_line)
        self.version = 0
        self.description_stamp: tuple[int, int] | None = None
        self.lock = threading.Lock()
        self.cached: RunData | None = None
        # The normalised jobs in file order, their time origin, and raw jobs skipped (no time stamps).
        self.records: list[JobRecord] = []
        self.origin: float | None = None
        self.untimed = 0

    def refresh(self) -> int:
        """Read what was appended to the logs (and a changed ``run.json``); the version afterwards."""
        with self.lock:
            changed = self.configs.refresh()
            changed = self.results.refresh() or changed
            stamp = file_stamp(self.run_dir / DESCRIPTION_FILE)
            if changed or stamp != self.description_stamp:
                self.description_stamp = stamp
                self.version += 1
                self.cached = None
            return self.version

    def snapshot(self) -> tuple[int, RunData]:
        """The current version and the run as read so far (built once per version)."""
        with self.lock:
            if self.cached is None:
                self.cached = self.build()
            return self.version, self.cached

    def file_order_jobs(self) -> list[JobRecord]:
        """The jobs in ``results.json`` order (the same records as the snapshot's), up to its version."""
        with self.lock:
            if self.cached is None:
                self.cached = self.build()
            return self.records

    def build(self) -> RunData:
        configs: dict[ConfigId, dict[str, Any]] = {}
        config_info: dict[ConfigId, dict[str, Any]] = {}
        for config_id, config, info in self.configs.records:
            configs[config_id], config_info[config_id] = config, info
        try:
            metadata = read_metadata(self.run_dir / DESCRIPTION_FILE)
        except RunDirError as error:  # being rewritten, or broken: the page still shows the jobs
            logger.warning("%s", error)
            metadata = RunMetadata()
        self.update_records()
        jobs = sorted(self.records, key=lambda job: (job.finished, job.submitted, job.config_id, job.budget))
        return RunData(
            run_dir=self.run_dir,
            source=f"{CONFIGS_FILE} + {RESULTS_FILE}",
            metadata=metadata,
            jobs=tuple(jobs),
            configs=configs,
            config_info=config_info,
            time_origin=self.origin,
        )

    def update_records(self) -> None:
        """Normalise the raw jobs not yet normalised, as :func:`analysis.load.normalise_jobs` does (times
        since the first submission); all of them again when a job submitted earlier moved the origin, or
        when the file started over."""
        raw = self.results.records
        if len(self.records) + self.untimed > len(raw):
            self.records, self.untimed, self.origin = [], 0, None
        new = raw[len(self.records) + self.untimed :]
        times = []
        for job in new:
            try:
                times.append((job, job_times(job)))
            except RunDirError as error:
                self.untimed += 1
                logger.warning("%s: %s", self.run_dir, error)
        earliest = min((submitted for _, (submitted, _, _) in times), default=None)
        if earliest is not None and self.origin is not None and earliest < self.origin:
            self.records, self.untimed, self.origin = [], 0, None
            self.update_records()
            return
        if self.origin is None:
            self.origin = earliest
        base = self.origin or 0.0
        for job, (submitted, started, finished) in times:
            self.records.append(job_record(job, submitted - base, started - base, finished - base))


def file_stamp(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


def is_run_dir(path: Path) -> bool:
    """Whether ``path`` is a run directory the dashboard can follow: it holds a run's JSON logs or
    ``run.json`` (a pickle alone is not enough: the dashboard never opens pickles)."""
    names = (CONFIGS_FILE, RESULTS_FILE, DESCRIPTION_FILE)
    return path.is_dir() and any((path / name).is_file() for name in names)
