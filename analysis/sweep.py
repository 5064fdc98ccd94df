"""Sensitivity studies (``--optimizer sweep`` or ``grid``): what each varied hyperparameter does.

Per varied hyperparameter (one panel each) and per value: the validation error per epoch, averaged over the
value's jobs (its repeats; for a grid, every combination it took part in) with a band from the lowest to the
highest of them, and the final validation error (the job's loss) with mean, spread and range. Which jobs
belong to which value comes from each configuration's ``config_info["sweep"]``, which the study's master
writes; ``sweep.json`` says what was varied. Crashed jobs (no result) are counted, not averaged; a failed
job (diverged) counts with its loss of 1.0 and its curve up to where it stopped.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from analysis.cost import TrainingCost
from analysis.curves import CURVE_KEY, format_value, mean_per_epoch
from analysis.data import JobRecord, RunData, finite_or_none
from analysis.space import CATEGORICAL, run_parameters
from hpo_service import run_files

PLAN_FILE = run_files.STUDY_PLAN
LOG, LINEAR = "log", "linear"


class NotAStudyError(ValueError):
    """The run is not a sweep or grid (no ``sweep.json``, or no job says which value it stands for)."""


@dataclass(frozen=True)
class ValueResult:
    """The jobs of one value of one varied hyperparameter.

    ``mean``, ``low`` and ``high`` are per epoch over the jobs' curves (``counts[i]`` of them reach epoch
    ``i + 1``); ``finals`` are the final validation errors of the jobs that have one.
    """

    value: Any
    jobs: int
    crashed: int
    failed: int
    seeds: tuple[int, ...]
    mean: tuple[float, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]
    counts: tuple[int, ...]
    finals: tuple[float, ...]

    @property
    def label(self) -> str:
        return format_value(self.value)

    @property
    def final_mean(self) -> float | None:
        return float(np.mean(self.finals)) if self.finals else None

    @property
    def final_std(self) -> float | None:
        """Sample standard deviation over the jobs (0 for a single job)."""
        if not self.finals:
            return None
        return float(np.std(self.finals, ddof=1)) if len(self.finals) > 1 else 0.0


@dataclass(frozen=True)
class SweepPanel:
    parameter: str
    scale: str  # LOG, LINEAR or CATEGORICAL
    values: tuple[ValueResult, ...]

    @property
    def best(self) -> ValueResult | None:
        scored = [value for value in self.values if value.final_mean is not None]
        return min(scored, key=lambda value: value.final_mean or 0.0) if scored else None


@dataclass(frozen=True)
class Study:
    kind: str
    budget: float | None
    seeds: tuple[int, ...]
    base: dict[str, Any]
    panels: tuple[SweepPanel, ...]
    jobs: int


def read_plan(run: RunData) -> dict[str, Any]:
    path = run.run_dir / PLAN_FILE
    if not path.is_file():
        raise NotAStudyError(
            f"{run.run_dir}: no {PLAN_FILE}; not a sweep or grid run (--optimizer sweep|grid)"
        )
    try:
        plan = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise NotAStudyError(f"{path}: unreadable ({error})") from error
    if not isinstance(plan, dict) or not isinstance(plan.get("varied"), dict):
        raise NotAStudyError(f"{path}: not a study plan (no 'varied' object)")
    return plan


def sweep_study(run: RunData) -> Study:
    """The study of ``run`` (see the module text); raises :class:`NotAStudyError`."""
    plan = read_plan(run)
    members: dict[tuple[str, str], list[JobRecord]] = {}
    for job in run.jobs:
        info = (run.config_info.get(job.config_id) or {}).get("sweep")
        if not isinstance(info, dict):
            continue
        for name in info.get("panels", []):
            members.setdefault((name, _key(info["values"][name])), []).append(job)
    if not members:
        raise NotAStudyError(f"{run.run_dir}: no finished job says which study value it stands for")
    scales = _scales(run)
    panels = []
    for name, values in plan["varied"].items():
        scale = scales.get(name, LINEAR if all(_is_number(value) for value in values) else CATEGORICAL)
        ordered = sorted(values) if scale != CATEGORICAL else list(values)
        results = [value_result(value, members.get((name, _key(value)), [])) for value in ordered]
        panels.append(SweepPanel(name, scale, tuple(results)))
    return Study(
        kind=str(plan.get("kind", "sweep")),
        budget=finite_or_none(plan.get("budget")),
        seeds=tuple(int(seed) for seed in plan.get("seeds", [])),
        base=dict(plan.get("base", {})),
        panels=tuple(panels),
        jobs=len(run.jobs),
    )


def value_result(value: Any, jobs: Sequence[JobRecord]) -> ValueResult:
    curves = [_curve(job) for job in jobs if job.info.get(CURVE_KEY)]
    mean, counts = mean_per_epoch(curves)
    low, high = _band(curves, len(mean))
    seeds = sorted({int(seed) for job in jobs if (seed := finite_or_none(job.info.get("seed"))) is not None})
    return ValueResult(
        value=value,
        jobs=len(jobs),
        crashed=sum(1 for job in jobs if job.status == "crashed"),
        failed=sum(1 for job in jobs if job.status not in ("ok", "crashed")),
        seeds=tuple(seeds),
        mean=mean,
        low=low,
        high=high,
        counts=counts,
        finals=tuple(job.loss for job in jobs if job.loss is not None),
    )


def _curve(job: JobRecord) -> list[float]:
    return [math.nan if (v := finite_or_none(value)) is None else v for value in job.info[CURVE_KEY]]


def _band(curves: Sequence[Sequence[float]], length: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Lowest and highest curve per epoch (NaN where no curve reaches it)."""
    table = np.full((max(len(curves), 1), length), np.nan)
    for row, curve in enumerate(curves):
        table[row, : len(curve)] = curve
    reached = ~np.all(np.isnan(table), axis=0)
    low = np.full(length, np.nan)
    high = np.full(length, np.nan)
    low[reached] = np.nanmin(table[:, reached], axis=0)
    high[reached] = np.nanmax(table[:, reached], axis=0)
    return tuple(float(v) for v in low), tuple(float(v) for v in high)


def _scales(run: RunData) -> dict[str, str]:
    return {
        parameter.name: CATEGORICAL if parameter.kind == CATEGORICAL else (LOG if parameter.log else LINEAR)
        for parameter in run_parameters(run)
    }


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _key(value: Any) -> str:
    return json.dumps(value)


def format_study(study: Study) -> str:
    """The final validation error per value of each varied hyperparameter, best marked."""
    seeds = ", ".join(map(str, study.seeds)) or "-"
    budget = "-" if study.budget is None else f"{study.budget:g}"
    lines = [f"{study.kind}: {study.jobs} jobs on {budget} epochs, seeds {seeds}"]
    for panel in study.panels:
        lines.append(f"{panel.parameter}: final validation error, mean +- sd over jobs [min, max]")
        best = panel.best
        for result in panel.values:
            if result.final_mean is None:
                lines.append(f"  {result.label:>10}: -  ({result.jobs} jobs, {result.crashed} crashed)")
                continue
            notes = [f"{len(result.finals)} jobs"]
            if result.failed:
                notes.append(f"{result.failed} failed")
            if result.crashed:
                notes.append(f"{result.crashed} crashed")
            lines.append(
                f"  {result.label:>10}: {result.final_mean:.4f} +- {result.final_std or 0.0:.4f} "
                f"[{min(result.finals):.4f}, {max(result.finals):.4f}]  {', '.join(notes)}"
                + ("  <- best" if result is best else "")
            )
    return "\n".join(lines)


def format_device_times(cost: TrainingCost) -> str:
    """Per device: jobs, median training seconds per epoch and the range of model sizes (a sweep over
    learning rates trains one size, where :func:`analysis.cost.format_cost` has no fit to show)."""
    lines = []
    for device in cost.devices:
        points = [point for point in cost.points if point.device == device]
        seconds = float(np.median([point.seconds_per_epoch for point in points]))
        sizes = sorted({point.parameters for point in points})
        size_text = f"{sizes[0]:,}" if len(sizes) == 1 else f"{sizes[0]:,}-{sizes[-1]:,}"
        lines.append(f"  {device}: {len(points)} jobs, median {seconds:.3g} s/epoch, {size_text} parameters")
    return "\n".join(lines)
