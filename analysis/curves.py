"""Learning curves: validation error per epoch of every job, and their mean per hyperparameter value.

The curves come from ``info["validation_error_per_epoch"]``, which our workers write; runs whose results
have none (plain HpBandSter workers) have no curves, and :class:`NoCurvesError` says so.

Grouping by a hyperparameter (the figure drawn by hand in the users' studies: validation error per epoch
for each learning rate) takes one curve per configuration, its longest (HpBandSter trains each budget
from scratch, so the shorter curves repeat the first epochs), and averages them per epoch within each
group. Groups are the values of a categorical or of a numeric parameter with few values, else
``bins`` quantile bins (on the log scale for log parameters); configurations where the parameter is
inactive form their own group.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from analysis.data import ConfigId, RunData, finite_or_none
from analysis.space import CATEGORICAL, Parameter

CURVE_KEY = "validation_error_per_epoch"
INACTIVE = "inactive"
# A numeric parameter with at most this many distinct values is grouped by value, not binned.
MAX_VALUES = 6


class NoCurvesError(ValueError):
    """No job of the run reports a validation error per epoch."""


@dataclass(frozen=True)
class Curve:
    config_id: ConfigId
    budget: float
    errors: tuple[float, ...]


@dataclass(frozen=True)
class GroupCurve:
    """Mean validation error per epoch over the configurations of one group.

    ``counts[i]`` configurations reached epoch ``i + 1``; ``errors[i]`` is their mean there.
    """

    label: str
    configs: int
    errors: tuple[float, ...]
    counts: tuple[int, ...]


@dataclass(frozen=True)
class CurvesByParameter:
    parameter: str
    groups: tuple[GroupCurve, ...]


def learning_curves(run: RunData) -> tuple[Curve, ...]:
    """One curve per job that reports one (non-finite epochs become NaN); raises :class:`NoCurvesError`."""
    curves = []
    for job in run.jobs:
        values = job.info.get(CURVE_KEY)
        if isinstance(values, list) and values:
            errors = tuple(math.nan if (v := finite_or_none(value)) is None else v for value in values)
            curves.append(Curve(job.config_id, job.budget, errors))
    if not curves:
        raise NoCurvesError(
            f"{run.run_dir}: no result reports {CURVE_KEY} (written by hpo-service workers), so there are "
            "no learning curves to draw"
        )
    return tuple(curves)


def longest_curves(curves: Sequence[Curve]) -> dict[ConfigId, Curve]:
    longest: dict[ConfigId, Curve] = {}
    for curve in curves:
        known = longest.get(curve.config_id)
        if known is None or len(curve.errors) > len(known.errors):
            longest[curve.config_id] = curve
    return longest


def curves_by_parameter(run: RunData, parameter: Parameter, bins: int = 4) -> CurvesByParameter:
    """The mean learning curve per value (or bin) of ``parameter`` (see the module text)."""
    longest = longest_curves(learning_curves(run))
    values = {config_id: run.configs.get(config_id, {}).get(parameter.name) for config_id in longest}
    labels = group_labels(parameter, values, bins)
    groups = []
    for label, members in labels:
        curves = [longest[config_id].errors for config_id in members]
        errors, counts = mean_per_epoch(curves)
        groups.append(GroupCurve(label, len(members), errors, counts))
    return CurvesByParameter(parameter.name, tuple(groups))


def group_labels(
    parameter: Parameter, values: dict[ConfigId, Any], bins: int
) -> list[tuple[str, list[ConfigId]]]:
    """``(label, config ids)`` per group, in the parameter's order, the inactive group last."""
    inactive = [config_id for config_id, value in values.items() if value is None]
    active = {config_id: value for config_id, value in values.items() if value is not None}
    distinct = sorted(set(active.values()), key=lambda value: (str(type(value)), value))
    if parameter.kind == CATEGORICAL or len(distinct) <= MAX_VALUES:
        order = list(parameter.choices) + [value for value in distinct if value not in parameter.choices]
        groups = [
            (format_value(value), [config_id for config_id, seen in active.items() if seen == value])
            for value in order
        ]
    else:
        groups = binned(parameter, active, bins)
    groups = [(label, members) for label, members in groups if members]
    if inactive:
        groups.append((INACTIVE, inactive))
    return groups


def binned(parameter: Parameter, active: dict[ConfigId, Any], bins: int) -> list[tuple[str, list[ConfigId]]]:
    """Quantile bins of equal counts on the search scale (log10 for log parameters)."""
    ids = list(active)
    raw = np.array([float(active[config_id]) for config_id in ids])
    scale = np.log10(raw) if parameter.log and np.all(raw > 0) else raw
    edges = np.unique(np.quantile(scale, np.linspace(0, 1, bins + 1)))
    # Bin i holds edges[i] <= x < edges[i + 1]; the largest value goes into the last bin.
    index = np.clip(np.searchsorted(edges, scale, side="right") - 1, 0, max(len(edges) - 2, 0))
    unscale = (lambda x: 10**x) if scale is not raw else (lambda x: x)
    groups = []
    for number in range(max(len(edges) - 1, 1)):
        members = [config_id for config_id, slot in zip(ids, index, strict=True) if slot == number]
        low, high = unscale(edges[number]), unscale(edges[min(number + 1, len(edges) - 1)])
        closing = "]" if number == len(edges) - 2 else ")"
        groups.append((f"[{format_value(low)}, {format_value(high)}{closing}", members))
    return groups


def mean_per_epoch(curves: Sequence[Sequence[float]]) -> tuple[tuple[float, ...], tuple[int, ...]]:
    """Mean over the curves that reach each epoch (NaN entries skipped), and how many reached it."""
    length = max((len(curve) for curve in curves), default=0)
    table = np.full((len(curves), length), np.nan)
    for row, curve in enumerate(curves):
        table[row, : len(curve)] = curve
    counts = np.sum(~np.isnan(table), axis=0)
    sums = np.nansum(table, axis=0)
    means = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return tuple(float(value) for value in means), tuple(int(count) for count in counts)


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)
