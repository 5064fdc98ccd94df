"""What a model costs to train: training seconds per epoch against its number of parameters, per device.

Seconds per epoch (``train_seconds / epochs_trained``) rather than per job, so jobs on different budgets
compare. Jobs are grouped by how they trained: the device, and the precision and step mode where the
result names them (``cpu (2 threads), bf16, eager``). Per group with at least three jobs, a power law
``seconds = a * parameters ** b`` is fitted by least squares on log-log axes: ``b`` near 1 means the time
grows in proportion to the model.

Per group also the overhead of a job: its wall time from dispatch to result minus its training time
(building the model, capture, evaluation, checkpoints, the round trip): the median over all jobs, the
largest over the first job of each worker (which pays for what happens once per process) and the largest
over the other jobs. And the largest peak GPU memory of a job in the group (``info["peak_gpu_memory"]``,
absent on CPUs).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from analysis.data import ConfigId, RunData, finite_or_none
from analysis.summary import peak_bytes

UNKNOWN_DEVICE = "unknown device"


class NoCostDataError(ValueError):
    """No result reports both ``parameter_count`` and training time."""


@dataclass(frozen=True)
class CostPoint:
    config_id: ConfigId
    budget: float
    device: str
    parameters: int
    seconds_per_epoch: float
    samples_per_second: float | None


@dataclass(frozen=True)
class DeviceFit:
    """``seconds_per_epoch ~= factor * parameters ** exponent`` over ``points`` jobs on ``device``."""

    device: str
    points: int
    exponent: float
    factor: float
    median_seconds_per_epoch: float


@dataclass(frozen=True)
class Overhead:
    """Seconds of a job's wall time not spent training, over ``jobs`` jobs of ``device``."""

    device: str
    jobs: int
    median_seconds: float
    first_job_max_seconds: float
    workers: int
    # The largest overhead of a job that was not its worker's first; None when every job was a first.
    later_max_seconds: float | None = None
    # The largest peak GPU memory of a job in the group, in bytes; None where no job reports one (CPUs).
    peak_gpu_memory: int | None = None


@dataclass(frozen=True)
class TrainingCost:
    points: tuple[CostPoint, ...]
    fits: tuple[DeviceFit, ...]
    overheads: tuple[Overhead, ...] = ()

    @property
    def devices(self) -> tuple[str, ...]:
        return tuple(sorted({point.device for point in self.points}))


def training_cost(run: RunData) -> TrainingCost:
    points = []
    for job in run.jobs:
        parameters = finite_or_none(job.info.get("parameter_count"))
        seconds = finite_or_none(job.info.get("train_seconds"))
        epochs = finite_or_none(job.info.get("epochs_trained"))
        if parameters is None or seconds is None or not epochs or epochs <= 0 or seconds <= 0:
            continue
        points.append(
            CostPoint(
                job.config_id,
                job.budget,
                speed_group(job.info),
                int(parameters),
                seconds / epochs,
                finite_or_none(job.info.get("samples_per_second")),
            )
        )
    if not points:
        raise NoCostDataError(
            f"{run.run_dir}: no result reports parameter_count, train_seconds and epochs_trained "
            "(written by hpo-service workers)"
        )
    return TrainingCost(tuple(points), fits(points), overheads(run))


def overheads(run: RunData) -> tuple[Overhead, ...]:
    """Per speed group: job wall time minus training time, for every job and for each worker's first."""
    by_group: dict[str, list[tuple[float, float, Any]]] = {}
    peaks: dict[str, list[int]] = {}
    for job in run.jobs:
        seconds = finite_or_none(job.info.get("train_seconds"))
        if seconds is None or job.finished < job.started:
            continue
        overhead = max(0.0, job.finished - job.started - seconds)
        group = speed_group(job.info)
        by_group.setdefault(group, []).append((job.started, overhead, job.info.get("worker")))
        peak = peak_bytes(job.info.get("peak_gpu_memory"))
        if peak is not None:
            peaks.setdefault(group, []).append(peak)
    found = []
    for group, jobs in sorted(by_group.items()):
        first: dict[Any, float] = {}
        later: list[float] = []
        for _, overhead, worker in sorted(jobs, key=lambda entry: entry[0]):
            if worker in first:
                later.append(overhead)
            else:
                first[worker] = overhead
        median = float(np.median([overhead for _, overhead, _ in jobs]))
        found.append(
            Overhead(
                group,
                len(jobs),
                median,
                max(first.values()),
                len(first),
                later_max_seconds=max(later, default=None),
                peak_gpu_memory=max(peaks.get(group, []), default=None),
            )  # fmt: skip
        )
    return tuple(found)


def speed_group(info: Mapping[str, Any]) -> str:
    """How a job trained: its device, then its precision and step mode where the result names them."""
    device = info.get("device")
    parts = [device if isinstance(device, str) and device else UNKNOWN_DEVICE]
    parts += [info[key] for key in ("precision", "step_mode") if isinstance(info.get(key), str) and info[key]]
    return ", ".join(parts)


def fits(points: list[CostPoint]) -> tuple[DeviceFit, ...]:
    found = []
    for device in sorted({point.device for point in points}):
        chosen = [point for point in points if point.device == device and point.parameters > 0]
        seconds = np.array([point.seconds_per_epoch for point in chosen])
        parameters = np.array([point.parameters for point in chosen], dtype=float)
        if len(chosen) < 3 or np.ptp(np.log(parameters)) == 0:
            continue
        exponent, intercept = np.polyfit(np.log(parameters), np.log(seconds), 1)
        found.append(
            DeviceFit(
                device, len(chosen), float(exponent), float(np.exp(intercept)), float(np.median(seconds))
            )
        )
    return tuple(found)


def format_cost(cost: TrainingCost) -> str:
    lines = [f"{len(cost.points)} jobs on {len(cost.devices)} device(s)"]
    for fit in cost.fits:
        lines.append(
            f"  {fit.device}: {fit.points} jobs, median {fit.median_seconds_per_epoch:.3g} s/epoch, "
            f"seconds/epoch ~ {fit.factor:.3g} * parameters^{fit.exponent:.2f}"
        )
    for overhead in cost.overheads:
        parts = [
            f"overhead per job (wall minus training) median {overhead.median_seconds:.2f} s over "
            f"{overhead.jobs} jobs",
            f"first job of each of {overhead.workers} worker(s): at most "
            f"{overhead.first_job_max_seconds:.2f} s",
        ]
        if overhead.later_max_seconds is not None:
            parts.append(f"other jobs: at most {overhead.later_max_seconds:.2f} s")
        if overhead.peak_gpu_memory is not None:
            parts.append(f"peak GPU memory at most {overhead.peak_gpu_memory / 2**20:.0f} MiB")
        lines.append(f"  {overhead.device}: " + "; ".join(parts))
    return "\n".join(lines)
