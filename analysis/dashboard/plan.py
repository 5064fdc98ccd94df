"""How many jobs a run plans, from ``run.json``: the denominator of the dashboard's progress."""

from __future__ import annotations

from analysis.data import RunMetadata
from hpo_service import brackets

ITERATING = ("bohb", "hyperband", "randomsearch")


def planned_jobs(metadata: RunMetadata) -> int | None:
    """The planned job count, or ``None`` when ``run.json`` does not say enough (or the optimizer is not
    one of Hyperband's family, e.g. a sweep)."""
    low, high, eta, iterations = (
        metadata.min_budget, metadata.max_budget, metadata.eta, metadata.n_iterations,
    )  # fmt: skip
    if low is None or high is None or eta is None or iterations is None or low <= 0 or eta <= 1:
        return None
    if metadata.optimizer not in ITERATING:
        return None
    return brackets.planned_jobs(metadata.optimizer, low, high, eta, iterations)
