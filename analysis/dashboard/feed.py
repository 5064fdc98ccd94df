"""What the page polls: the runs with their state, and the job rows appended since the page's cursor.

Every answer is computed once per run version (the follower's counter of new data) and cached, so a page
polling an unchanged run costs a few ``stat`` calls and a cached JSON body.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from analysis.dashboard import info
from analysis.dashboard.follow import RunFollower
from analysis.dashboard.registry import RunRegistry
from analysis.data import RunData
from analysis.watch import run_finished

# Importance (a random forest) is recomputed at most this often, and only when jobs were added.
IMPORTANCE_SECONDS = 20.0


class NotFound(LookupError):
    """An unknown run id or configuration: the server answers 404."""


@dataclass
class Cache:
    """Answers per (run id, kind, rule), each valid for one run version."""

    entries: dict[tuple[str, str, str], tuple[int, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, key: tuple[str, str, str], version: int) -> Any:
        with self.lock:
            found = self.entries.get(key)
        return found[1] if found is not None and found[0] == version else None

    def put(self, key: tuple[str, str, str], version: int, value: Any) -> Any:
        with self.lock:
            self.entries[key] = (version, value)
        return value


class Feed:
    """The dashboard's data, read through the registry only."""

    def __init__(self, registry: RunRegistry) -> None:
        self.registry = registry
        self.cache = Cache()
        self.importance_lock = threading.Lock()
        self.importance_times: dict[str, tuple[float, int]] = {}

    def follower(self, run_id: str) -> RunFollower:
        follower = self.registry.get(run_id)
        if follower is None:
            raise NotFound(f"no run {run_id!r} is served here")
        return follower

    def current(self, run_id: str) -> tuple[int, RunData]:
        follower = self.follower(run_id)
        follower.refresh()
        return follower.snapshot()

    def runs(self, rule: str) -> dict[str, Any]:
        states = []
        for run_id in self.registry.all():
            version, run = self.current(run_id)
            key = (run_id, "state", rule)
            state = self.cache.get(key, version)
            if state is None:
                state = info.run_state(run_id, run, version, rule, run_finished(run.run_dir))
                self.cache.put(key, version, state)
            states.append(state)
        return {"runs": states}

    def jobs(self, run_id: str, cursor: int, origin: float | None) -> dict[str, Any]:
        """Rows of the jobs from line ``cursor`` of ``results.json`` on; all of them (``reset``) when the
        page's time origin is not the run's any more (an earlier-submitted job arrived)."""
        follower = self.follower(run_id)
        follower.refresh()
        version, run = follower.snapshot()
        records = follower.file_order_jobs()[: len(run.jobs)]
        reset = origin != run.time_origin or cursor > len(records)
        start = 0 if reset else max(cursor, 0)
        rows = [info.job_row(index, run, job) for index, job in enumerate(records[start:], start=start)]
        return {"version": version, "origin": run.time_origin, "cursor": len(records), "reset": reset,
                "rows": rows}  # fmt: skip

    def charts(self, run_id: str, rule: str) -> dict[str, Any]:
        version, run = self.current(run_id)
        key = (run_id, "charts", rule)
        cached = self.cache.get(key, version)
        if cached is not None:
            return dict(cached)
        charts = {
            "version": version,
            "incumbent": info.incumbent_info(run, rule),
            "gantt": info.gantt_info(run),
            "budgets": info.budgets_info(run),
            "parallel": info.parallel_info(run),
        }
        return dict(self.cache.put(key, version, charts))

    def curves(self, run_id: str, config_text: str) -> dict[str, Any]:
        config_id = info.parse_config_key(config_text)
        _, run = self.current(run_id)
        if config_id is None or config_id not in {job.config_id for job in run.jobs}:
            raise NotFound(f"run {run_id!r} has no job of configuration {config_text!r}")
        return info.curves_info(run, config_id)

    def importance(self, run_id: str) -> dict[str, Any]:
        """The importance, recomputed when jobs were added and IMPORTANCE_SECONDS have passed."""
        version, run = self.current(run_id)
        key = (run_id, "importance", "")
        with self.importance_lock:
            when, jobs = self.importance_times.get(run_id, (-float("inf"), -1))
            previous = self.cache.entries.get(key)
            fresh = time.monotonic() - when < IMPORTANCE_SECONDS or jobs == len(run.jobs)
            if previous is not None and fresh:
                return dict(previous[1])
            answer = info.importance_info(run)
            self.importance_times[run_id] = (time.monotonic(), len(run.jobs))
            return dict(self.cache.put(key, version, answer))

    def compare(self, rule: str) -> dict[str, Any]:
        """Every run's trajectory and the bands per optimizer, recomputed when any run changed."""
        snapshots = {run_id: self.current(run_id) for run_id in self.registry.all()}
        versions = hash(tuple((run_id, version) for run_id, (version, _) in snapshots.items()))
        key = ("", "compare", rule)
        cached = self.cache.get(key, versions)
        if cached is not None:
            return dict(cached)
        runs = {run_id: run for run_id, (_, run) in snapshots.items()}
        return dict(self.cache.put(key, versions, info.compare_info(runs, rule)))
