"""Who ran what when: job intervals per worker (a Gantt chart), busy share per worker, idle gaps.

Our workers write ``info["worker"]`` (host:pid). Results of plain HpBandSter workers name none; their jobs
are then packed into as few *slots* as run at once (interval partitioning, first free slot), so the
chart still shows how busy the run kept its workers; ``inferred`` says so.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from analysis.data import ConfigId, JobRecord, RunData

WORKER_KEY = "worker"


@dataclass(frozen=True)
class Interval:
    """One job on one worker: from ``started`` to ``finished`` (seconds since the first submission)."""

    worker: str
    config_id: ConfigId
    budget: float
    started: float
    finished: float
    status: str


@dataclass(frozen=True)
class WorkerUsage:
    """One worker over the run's span (0 to the last finished job): time busy, its share, gaps between
    its jobs (including before its first job), longest first."""

    worker: str
    jobs: int
    busy_seconds: float
    busy_share: float
    gaps: tuple[tuple[float, float], ...]

    @property
    def idle_seconds(self) -> float:
        return sum(end - start for start, end in self.gaps)


@dataclass(frozen=True)
class WorkerTimeline:
    intervals: tuple[Interval, ...]
    usage: tuple[WorkerUsage, ...]
    span: float
    inferred: bool

    @property
    def busy_share(self) -> float | None:
        """Busy time of all workers over (workers x span); ``None`` without jobs."""
        if not self.usage or self.span <= 0:
            return None
        return sum(entry.busy_seconds for entry in self.usage) / (len(self.usage) * self.span)


def worker_timeline(run: RunData) -> WorkerTimeline:
    """Intervals and usage per worker of ``run`` (see the module text for runs without worker names)."""
    jobs = sorted(run.jobs, key=lambda job: (job.started, job.finished))
    named = [job.info.get(WORKER_KEY) for job in jobs]
    inferred = not jobs or not all(isinstance(name, str) and name for name in named)
    names = assign_slots(jobs) if inferred else [str(name) for name in named]
    intervals = tuple(
        Interval(name, job.config_id, job.budget, job.started, max(job.finished, job.started), job.status)
        for name, job in zip(names, jobs, strict=True)
    )
    span = max((interval.finished for interval in intervals), default=0.0)
    workers = sorted({interval.worker for interval in intervals}, key=natural_key)
    usage = tuple(
        usage_of(worker, [interval for interval in intervals if interval.worker == worker], span)
        for worker in workers
    )
    return WorkerTimeline(intervals, usage, span, inferred and bool(jobs))


def assign_slots(jobs: list[JobRecord]) -> list[str]:
    """A slot name per job (sorted by start): the lowest-numbered slot free when the job starts."""
    free: list[int] = []
    busy: list[tuple[float, int]] = []  # (finished, slot)
    names = []
    for job in jobs:
        while busy and busy[0][0] <= job.started:
            heapq.heappush(free, heapq.heappop(busy)[1])
        slot = heapq.heappop(free) if free else len(busy) + len(free)
        # A new slot number is the count of slots so far: busy ones plus free ones.
        heapq.heappush(busy, (job.finished, slot))
        names.append(f"slot {slot + 1}")
    return names


def usage_of(worker: str, intervals: list[Interval], span: float) -> WorkerUsage:
    busy = 0.0
    gaps = []
    covered = 0.0  # the end of the time this worker is known busy up to
    for interval in sorted(intervals, key=lambda entry: entry.started):
        if interval.started > covered:
            gaps.append((covered, interval.started))
        # Overlapping intervals on one worker (clock skew) count once.
        busy += max(0.0, interval.finished - max(interval.started, covered))
        covered = max(covered, interval.finished)
    if span > covered:
        gaps.append((covered, span))
    gaps.sort(key=lambda gap: gap[0] - gap[1])
    share = busy / span if span > 0 else 0.0
    return WorkerUsage(worker, len(intervals), busy, share, tuple(gaps))


def natural_key(name: str) -> tuple[str, int]:
    """``slot 2`` before ``slot 10``; ``host:12`` before ``host:100``."""
    head = name.rstrip("0123456789")
    tail = name[len(head) :]
    return head, int(tail) if tail else -1
