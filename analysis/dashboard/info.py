"""Pure functions from run data to the JSON the dashboard's charts draw (no HTTP, no files).

Each reuses what :mod:`analysis` already computes (incumbent trajectories, learning curves, worker
timelines, budget correlations, importance, optimizer bands) and only reshapes it into plain lists and
dicts. Non-finite numbers become ``None`` (JSON has no NaN).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from analysis.budgets import budget_correlations
from analysis.curves import CURVE_KEY
from analysis.dashboard.plan import planned_jobs
from analysis.data import ConfigId, JobRecord, RunData
from analysis.groups import group_trajectories
from analysis.importance import best_configurations, parameter_importance
from analysis.incumbents import find_incumbent, incumbent_trajectory
from analysis.space import CATEGORICAL, run_parameters
from analysis.timeline import worker_timeline

# Parallel coordinates draw at most this many jobs (the best ones on the incumbent budget): in headless
# Chromium 2,000 lines took 1.6 s to draw, holding up the page; more than a few hundred lines are a blur.
PARALLEL_LIMIT = 500


def config_key(config_id: ConfigId) -> str:
    """``(0, 0, 1)`` as ``0_0_1``: the form config ids take in URLs and on the page."""
    return "_".join(str(part) for part in config_id)


def parse_config_key(text: str) -> ConfigId | None:
    parts = text.split("_")
    if len(parts) != 3 or not all(part.isdigit() for part in parts):
        return None
    return (int(parts[0]), int(parts[1]), int(parts[2]))


def number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def numbers(values: Sequence[Any]) -> list[float | None]:
    return [number(value) for value in values]


def run_state(run_id: str, run: RunData, version: int, rule: str, finished: bool) -> dict[str, Any]:
    """One line of the runs list: what the run is, how far it got, its incumbent."""
    incumbent = find_incumbent(run, rule)
    failures = sum(1 for job in run.jobs if job.loss is None or job.status != "ok")
    return {
        "id": run_id,
        "path": str(run.run_dir),
        "optimizer": run.optimizer,
        "dataset": run.metadata.dataset,
        "version": version,
        "jobs": len(run.jobs),
        "planned": planned_jobs(run.metadata),
        "failures": failures,
        "state": "finished" if finished else ("running" if run.jobs else "starting"),
        "elapsed": max((job.finished for job in run.jobs), default=0.0),
        "incumbent": None if incumbent is None else incumbent_summary(run, incumbent),
    }


def incumbent_summary(run: RunData, job: JobRecord) -> dict[str, Any]:
    return {
        "config_id": config_key(job.config_id),
        "loss": job.loss,
        "test_error": job.test_error,
        "budget": job.budget,
        "config": run.configs.get(job.config_id, {}),
    }


def job_row(index: int, run: RunData, job: JobRecord) -> dict[str, Any]:
    """One row of the jobs table (``index``: the job's line in ``results.json``)."""
    info = job.info
    return {
        "index": index,
        "config_id": config_key(job.config_id),
        "iteration": job.config_id[0],
        "budget": job.budget,
        "status": job.status,
        "reason": job.reason,
        "loss": job.loss,
        "test_error": job.test_error,
        "device": info.get("device") if isinstance(info.get("device"), str) else None,
        "epochs": number(info.get("epochs_trained")),
        "started": round(job.started, 3),
        "finished": round(job.finished, 3),
        "duration": round(job.finished - job.started, 3),
        "worker": info.get("worker") if isinstance(info.get("worker"), str) else None,
        "config": run.configs.get(job.config_id, {}),
    }


def epochs_of(job: JobRecord) -> float:
    """Epochs a job trained: ``info["epochs_trained"]`` when reported, else its budget."""
    reported = number(job.info.get("epochs_trained"))
    return job.budget if reported is None else reported


def incumbent_info(run: RunData, rule: str) -> dict[str, Any]:
    """The incumbent trajectory against wall time and against epochs trained by then (all jobs)."""
    trajectory = incumbent_trajectory(run, rule)
    epochs_at: dict[float, float] = {}
    total = 0.0
    for job in run.jobs:  # ordered by finish time
        total += epochs_of(job)
        epochs_at[job.finished] = total
    return {
        "rule": rule,
        "times": list(trajectory.times),
        "epochs": [epochs_at[time] for time in trajectory.times],
        "losses": list(trajectory.losses),
        "test_losses": numbers(trajectory.test_losses),
        "budgets": list(trajectory.budgets),
        "config_ids": [config_key(config_id) for config_id in trajectory.config_ids],
        "configs": [run.configs.get(config_id, {}) for config_id in trajectory.config_ids],
        "end_time": trajectory.end_time,
        "total_epochs": total,
    }


def curves_info(run: RunData, config_id: ConfigId) -> dict[str, Any]:
    """One configuration across its budgets: the loss per budget and, where the worker reported it, the
    validation error per epoch of each budget's job."""
    jobs = sorted((job for job in run.jobs if job.config_id == config_id), key=lambda job: job.budget)
    curves = []
    for job in jobs:
        values = job.info.get(CURVE_KEY)
        errors = numbers(values) if isinstance(values, list) else []
        curves.append({"budget": job.budget, "loss": job.loss, "status": job.status, "errors": errors})
    return {"config_id": config_key(config_id), "config": run.configs.get(config_id, {}), "jobs": curves}


def gantt_info(run: RunData) -> dict[str, Any]:
    """The worker timeline: one bar per finished job on its worker's row."""
    timeline = worker_timeline(run)
    intervals = timeline.intervals
    return {
        "workers": [usage.worker for usage in timeline.usage],
        "busy": [usage.busy_share for usage in timeline.usage],
        "inferred": timeline.inferred,
        "span": timeline.span,
        "worker": [interval.worker for interval in intervals],
        "started": [interval.started for interval in intervals],
        "duration": [interval.finished - interval.started for interval in intervals],
        "budget": [interval.budget for interval in intervals],
        "status": [interval.status for interval in intervals],
        "config_id": [config_key(interval.config_id) for interval in intervals],
    }


def budgets_info(run: RunData) -> dict[str, Any]:
    correlations = budget_correlations(run)
    return {
        "budgets": list(correlations.budgets),
        "matrix": [numbers(row) for row in correlations.matrix().tolist()],
        "pairs": [
            {"smaller": pair.smaller, "larger": pair.larger, "configs": pair.configs,
             "correlation": pair.correlation, "weak": pair.weak}
            for pair in correlations.pairs
        ],
    }  # fmt: skip


def parallel_info(run: RunData) -> dict[str, Any]:
    """Parallel coordinates of the jobs on the incumbent budget: each hyperparameter on its search scale
    (log10 for log parameters, choice index for categoricals, with the choices as tick labels)."""
    parameters = run_parameters(run)
    samples, order = best_configurations(run, PARALLEL_LIMIT, parameters)
    dimensions = []
    for column, parameter in enumerate(parameters):
        values = [number(value) for value in samples.features[order, column].tolist()]
        dimension: dict[str, Any] = {
            "label": f"log10 {parameter.name}" if parameter.log else parameter.name,
            "values": [None if value is None or value <= -1e5 else value for value in values],
        }
        if parameter.kind == CATEGORICAL:
            dimension["ticktext"] = [str(choice) for choice in parameter.choices]
            dimension["tickvals"] = list(range(len(parameter.choices)))
        dimensions.append(dimension)
    return {
        "budget": samples.budget,
        "dimensions": dimensions,
        "losses": [float(samples.losses[row]) for row in order],
        "config_ids": [config_key(samples.config_ids[row]) for row in order],
    }


def importance_info(run: RunData) -> dict[str, Any]:
    """Permutation importance on a random-forest surrogate; ``error`` says why there is none yet."""
    try:
        importance = parameter_importance(run)
    except ValueError as error:  # NotEnoughDataError among them: too few finite losses so far
        return {"error": str(error), "jobs": len(run.jobs)}
    return {
        "names": list(importance.names),
        "importances": list(importance.importances),
        "spreads": list(importance.spreads),
        "r2": importance.r2,
        "jobs": importance.jobs,
    }


def compare_info(runs: Mapping[str, RunData], rule: str) -> dict[str, Any]:
    """Every run's incumbent trajectory, and median and interquartile band per optimizer."""
    bands = group_trajectories(runs, rule) if runs else ()
    trajectories = {}
    for run_id, run in runs.items():
        trajectory = incumbent_trajectory(run, rule)
        trajectories[run_id] = {
            "optimizer": run.optimizer,
            "times": list(trajectory.times),
            "losses": list(trajectory.losses),
            "end_time": trajectory.end_time,
        }
    return {
        "rule": rule,
        "runs": trajectories,
        "bands": [
            {"optimizer": band.group, "runs": band.runs, "times": list(band.times),
             "median": numbers(band.median), "lower": numbers(band.lower), "upper": numbers(band.upper)}
            for band in bands
        ],
    }  # fmt: skip
