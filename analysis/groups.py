"""Several runs of one optimizer (seeds) as one band: median and interquartile range of the incumbent loss
over wall time, the figure that compares BOHB, Hyperband and random search.

Each run's trajectory is a step function of time, undefined before its first incumbent. On a common grid
of times (0 to the longest run's end) the statistics start once every run of the group has an incumbent
(before that, a median over the runs that have one would jump up when a slower run joins); a run that
has ended keeps its final incumbent. So the median and quartiles never increase.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from analysis.data import RunData
from analysis.incumbents import Trajectory, incumbent_trajectory

GRID_POINTS = 200


@dataclass(frozen=True)
class GroupTrajectory:
    """``median``, ``lower`` (25 %) and ``upper`` (75 %) loss at ``times`` over ``runs`` runs; NaN until
    every run has an incumbent; ``counts[i]`` runs have one at ``times[i]``."""

    group: str
    runs: int
    times: tuple[float, ...]
    median: tuple[float, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    counts: tuple[int, ...]


def value_at(trajectory: Trajectory, times: np.ndarray) -> np.ndarray:
    """The incumbent loss at each of ``times`` (NaN before the first incumbent)."""
    values = np.full(times.shape, np.nan)
    if not len(trajectory):
        return values
    index = np.searchsorted(np.array(trajectory.times), times, side="right") - 1
    losses = np.array(trajectory.losses)
    found = index >= 0
    values[found] = losses[index[found]]
    return values


def group_trajectories(
    runs: Mapping[str, RunData], rule: str, key: str = "optimizer", points: int = GRID_POINTS
) -> tuple[GroupTrajectory, ...]:
    """One band per group of ``runs`` (grouped by their ``key``: ``optimizer`` or ``dataset``)."""
    grouped: dict[str, list[Trajectory]] = {}
    for run in runs.values():
        name = getattr(run.metadata, key, None) or "unknown"
        grouped.setdefault(str(name), []).append(incumbent_trajectory(run, rule))
    end = max((trajectory.end_time for group in grouped.values() for trajectory in group), default=0.0)
    times = np.linspace(0.0, end, points) if end > 0 else np.zeros(1)
    bands = []
    for name, trajectories in sorted(grouped.items()):
        table = np.vstack([value_at(trajectory, times) for trajectory in trajectories])
        counts = np.sum(~np.isnan(table), axis=0)
        median, lower, upper = (np.full(times.shape, np.nan) for _ in range(3))
        have = counts == len(trajectories)
        if np.any(have):
            quartiles = np.percentile(table[:, have], [50, 25, 75], axis=0)
            median[have], lower[have], upper[have] = quartiles
        bands.append(
            GroupTrajectory(
                group=name,
                runs=len(trajectories),
                times=tuple(times.tolist()),
                median=tuple(median.tolist()),
                lower=tuple(lower.tolist()),
                upper=tuple(upper.tolist()),
                counts=tuple(int(count) for count in counts),
            )
        )
    return tuple(bands)
