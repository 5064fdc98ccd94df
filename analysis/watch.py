"""Follow a run while it is going: re-read the JSON logs, redraw the incumbent and worker plots, report a
status line.

Only the JSON logs are read (never the pickle, which appears at the end), with plain file reads: the
master is never waited on or locked out, and a last line it is still writing is skipped until it is
complete. Figures are replaced atomically (:func:`analysis.plots.save_figure`), so a viewer never shows
a half-written one. The loop ends when ``run.json`` records ``finished``, or when ``stop`` is set.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from analysis.data import RunData
from analysis.incumbents import find_incumbent, incumbent_trajectory
from analysis.load import CONFIGS_FILE, DESCRIPTION_FILE, RESULTS_FILE, load_run
from analysis.summary import format_config_id
from analysis.timeline import worker_timeline

logger = logging.getLogger(__name__)

INCUMBENT_PLOT = "incumbents.png"
WORKERS_PLOT = "workers.png"


@dataclass(frozen=True)
class WatchSettings:
    run_dir: Path
    interval: float = 5.0
    once: bool = False
    rule: str = "max-budget"


def run_finished(run_dir: Path) -> bool:
    """Whether ``run.json`` records the end of the run (a plain HpBandSter run has none: never)."""
    try:
        description = json.loads((run_dir / DESCRIPTION_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(description, dict) and description.get("finished") is not None


MISSING = ((-1, -1), (-1, -1))


def log_state(run_dir: Path) -> tuple[tuple[int, int], ...]:
    """Size and modification time of the logs: a change means there is something new to read."""
    state = []
    for name in (CONFIGS_FILE, RESULTS_FILE):
        try:
            stat = (run_dir / name).stat()
            state.append((stat.st_size, stat.st_mtime_ns))
        except OSError:
            state.append((-1, -1))
    return tuple(state)


def status_line(run: RunData, rule: str, finished: bool) -> str:
    """One line: iteration, jobs done and not ok, configurations waiting, best so far, workers busy."""
    jobs = run.jobs
    not_ok = sum(job.status != "ok" for job in jobs)
    evaluated = {job.config_id for job in jobs}
    # A sampled configuration without any result is running or queued (HpBandSter logs it when sampled).
    waiting = len(set(run.configs) - evaluated)
    iteration = max((config_id[0] for config_id in run.configs), default=None)
    best = find_incumbent(run, rule)
    best_text = (
        "-"
        if best is None or best.loss is None
        else f"{best.loss:.4f} on budget {best.budget:g} {format_config_id(best.config_id)}"
    )
    timeline = worker_timeline(run)
    share = "-" if timeline.busy_share is None else f"{timeline.busy_share:.0%}"
    parts = [
        time.strftime("%H:%M:%S"),
        run.optimizer,
        "finished" if finished else f"iteration {iteration if iteration is not None else '-'}",
        f"{len(jobs)} jobs done ({not_ok} not ok), {waiting} running or queued",
        f"best ({rule}) {best_text}",
        f"{len(timeline.usage)} workers, busy {share}",
    ]
    return " | ".join(parts)


def refresh(settings: WatchSettings) -> str:
    """Read the logs once, redraw both plots, and return the status line."""
    from analysis.plot_resources import plot_workers
    from analysis.plots import plot_incumbents

    finished = run_finished(settings.run_dir)
    if log_state(settings.run_dir) == MISSING:
        return (
            f"{time.strftime('%H:%M:%S')} | waiting for {CONFIGS_FILE} / {RESULTS_FILE} in {settings.run_dir}"
        )
    run = load_run(settings.run_dir, prefer="json", allow_pickle=False)
    if run.jobs:
        plot_incumbents(
            {run.run_dir.name or str(run.run_dir): incumbent_trajectory(run, settings.rule)},
            settings.run_dir / INCUMBENT_PLOT,
        )
        plot_workers(worker_timeline(run), settings.run_dir / WORKERS_PLOT)
    return status_line(run, settings.rule, finished)


def watch(settings: WatchSettings, report: Callable[[str], None], stop: threading.Event | None = None) -> int:
    """Refresh whenever the logs change, every ``interval`` seconds, until the run finishes (after a last
    refresh), ``stop`` is set, or after one refresh with ``once``. Returns the number of refreshes."""
    stop = stop or threading.Event()
    seen: tuple[tuple[int, int], ...] | None = None
    refreshes = 0
    while True:
        finished = run_finished(settings.run_dir)
        state = log_state(settings.run_dir)
        if state != seen or finished:
            seen = state
            report(refresh(settings))
            refreshes += 1
        if settings.once or finished or stop.wait(settings.interval):
            return refreshes
