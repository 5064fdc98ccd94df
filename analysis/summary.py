"""A run at a glance: jobs per budget, failures, wall time and the incumbent."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from analysis.data import OK, ConfigId, RunData
from analysis.incumbents import MAX_BUDGET, find_incumbent
from analysis.provenance import Provenance, format_provenance, model_provenance
from analysis.timeline import worker_timeline


@dataclass(frozen=True)
class BudgetSummary:
    budget: float
    runs: int
    # Jobs on this budget with a finite loss, and the lowest of those losses.
    finite: int
    best_loss: float | None


@dataclass(frozen=True)
class Incumbent:
    config_id: ConfigId
    budget: float
    loss: float
    test_error: float | None
    finished: float
    config: dict[str, Any]
    # Bytes of GPU memory its job's tensors used at most (``info["peak_gpu_memory"]``); None on the CPU.
    peak_gpu_memory: int | None = None


@dataclass(frozen=True)
class RunSummary:
    run_dir: str
    source: str
    optimizer: str
    dataset: str | None
    eta: float | None
    seed: int | None
    n_configs: int
    n_jobs: int
    budgets: tuple[BudgetSummary, ...]
    # Jobs per status other than "ok" (e.g. crashed, failed, error), by status name.
    failures: tuple[tuple[str, int], ...]
    # Seconds from the first submission to the last finished job.
    wall_time: float
    incumbent: Incumbent | None
    # Workers that ran jobs (slots that ran at once when results name no worker), and the share of
    # (workers x wall time) they spent on jobs; ``None`` without jobs.
    workers: int = 0
    busy_share: float | None = None
    workers_inferred: bool = False
    # Jobs the master sent again because their worker died or never got them (``info["attempts"]`` > 1).
    redispatched: int = 0
    # Model-based against random configurations (BOHB's ``config_info["model_based_pick"]``).
    provenance: Provenance | None = None

    @property
    def runs_per_budget(self) -> dict[float, int]:
        return {entry.budget: entry.runs for entry in self.budgets}


def summarize(run: RunData) -> RunSummary:
    """Counts and the incumbent of ``run``.

    The incumbent follows HpBandSter's rule: the configuration with the lowest finite loss among the jobs
    on the largest budget that has a finite result (:func:`analysis.incumbents.find_incumbent`).
    """
    budgets = []
    for budget in run.budgets:
        jobs = [job for job in run.jobs if job.budget == budget]
        losses = [job.loss for job in jobs if job.loss is not None]
        budgets.append(BudgetSummary(budget, len(jobs), len(losses), min(losses) if losses else None))
    failures = Counter(job.status for job in run.jobs if job.status != OK)
    best = find_incumbent(run, MAX_BUDGET)
    incumbent = None
    if best is not None and best.loss is not None:
        incumbent = Incumbent(
            config_id=best.config_id,
            budget=best.budget,
            loss=best.loss,
            test_error=best.test_error,
            finished=best.finished,
            config=dict(run.configs.get(best.config_id, {})),
            peak_gpu_memory=peak_bytes(best.info.get("peak_gpu_memory")),
        )
    timeline = worker_timeline(run)
    return RunSummary(
        run_dir=str(run.run_dir),
        source=run.source,
        optimizer=run.optimizer,
        dataset=run.metadata.dataset,
        eta=run.metadata.eta,
        seed=run.metadata.seed,
        n_configs=len(run.configs),
        n_jobs=len(run.jobs),
        budgets=tuple(budgets),
        failures=tuple(sorted(failures.items())),
        wall_time=max((job.finished for job in run.jobs), default=0.0),
        incumbent=incumbent,
        workers=len(timeline.usage),
        busy_share=timeline.busy_share,
        workers_inferred=timeline.inferred,
        redispatched=sum(1 for job in run.jobs if _attempts(job.info) > 1),
        provenance=model_provenance(run),
    )


def _attempts(info: Any) -> int:
    attempts = info.get("attempts", 1) if isinstance(info, dict) else 1
    return attempts if isinstance(attempts, int) else 1


def format_summary(summary: RunSummary) -> str:
    """A plain-text table of ``summary``."""
    details = [
        f"{name} {value:g}" if isinstance(value, float) else f"{name} {value}"
        for name, value in (("eta", summary.eta), ("seed", summary.seed), ("dataset", summary.dataset))
        if value is not None
    ]
    lines = [
        f"run dir     {summary.run_dir}",
        f"read from   {summary.source}",
        f"optimizer   {summary.optimizer}" + (f" ({', '.join(details)})" if details else ""),
        f"jobs        {summary.n_jobs} on {summary.n_configs} configurations, "
        f"wall time {format_duration(summary.wall_time)}",
        "workers     " + format_workers(summary),
        "failures    "
        + (", ".join(f"{status} {count}" for status, count in summary.failures) or "none")
        + (
            f"; {summary.redispatched} job(s) re-dispatched after their worker died"
            if summary.redispatched
            else ""
        ),
    ]
    if summary.budgets:
        lines.append(f"{'budget':>10}  {'runs':>6}  {'finite':>6}  {'best loss':>10}")
        for entry in summary.budgets:
            best = "-" if entry.best_loss is None else f"{entry.best_loss:.4f}"
            lines.append(f"{entry.budget:>10g}  {entry.runs:>6d}  {entry.finite:>6d}  {best:>10}")
    if summary.provenance is not None:
        lines.append(format_provenance(summary.provenance))
    incumbent = summary.incumbent
    if incumbent is None:
        lines.append("incumbent   none (no job has a finite loss)")
    else:
        test = "" if incumbent.test_error is None else f", test error {incumbent.test_error:.4f}"
        lines.append(
            f"incumbent   {format_config_id(incumbent.config_id)} on budget {incumbent.budget:g}: "
            f"validation loss {incumbent.loss:.4f}{test} (found after {format_duration(incumbent.finished)})"
            + format_peak_memory(incumbent.peak_gpu_memory)
        )
        width = max((len(name) for name in incumbent.config), default=0)
        lines.extend(f"  {name:<{width}} = {value!r}" for name, value in sorted(incumbent.config.items()))
    return "\n".join(lines)


def format_workers(summary: RunSummary) -> str:
    if summary.busy_share is None:
        return "none"
    kind = "at once (results name no worker)" if summary.workers_inferred else ""
    return f"{summary.workers} {kind}".rstrip() + f", busy {summary.busy_share:.0%} of the wall time"


def peak_bytes(value: Any) -> int | None:
    """``info["peak_gpu_memory"]`` as bytes; None when absent (CPU jobs, older runs) or not a number."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return int(value) if number and value >= 0 else None


def format_peak_memory(peak: int | None) -> str:
    return "" if peak is None else f", peak GPU memory {peak / 2**20:.0f} MiB"


def format_config_id(config_id: ConfigId) -> str:
    return "(" + ", ".join(str(part) for part in config_id) + ")"


def format_duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(seconds, 60)
    if minutes < 120:
        return f"{int(minutes)} min {rest:.0f} s"
    hours, minutes = divmod(minutes, 60)
    return f"{int(hours)} h {int(minutes)} min"
