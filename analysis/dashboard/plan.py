"""How many jobs a run plans, from ``run.json``: the denominator of the dashboard's progress.

The same arithmetic as ``hpo_service.hpbandster.optimizers.planned_jobs`` (HpBandSter's successive-halving
brackets), written again here because ``analysis`` must not import ``hpo_service`` (it imports
HpBandSter and Pyro4); ``tests/integration/test_dashboard.py`` checks that both agree.
"""

from __future__ import annotations

import math

from analysis.data import RunMetadata

ITERATING = ("bohb", "hyperband", "randomsearch")


def bracket_sizes(min_budget: float, max_budget: float, eta: float) -> list[list[int]]:
    """Jobs per rung of each successive-halving bracket, largest bracket first."""
    rungs = -int(math.log(min_budget / max_budget) / math.log(eta)) + 1
    brackets = []
    for iteration in range(rungs):
        s = rungs - 1 - iteration
        first = int(math.floor(rungs / (s + 1)) * eta**s)
        brackets.append([max(int(first * eta ** (-index)), 1) for index in range(s + 1)])
    return brackets


def planned_jobs(metadata: RunMetadata) -> int | None:
    """The planned job count, or ``None`` when ``run.json`` does not say enough (or the optimizer is not
    one of Hyperband's family, e.g. a sweep)."""
    low, high, eta, iterations = (
        metadata.min_budget, metadata.max_budget, metadata.eta, metadata.n_iterations,
    )  # fmt: skip
    if low is None or high is None or eta is None or iterations is None or low <= 0 or eta <= 1:
        return None
    if metadata.optimizer == "randomsearch":
        rungs = -int(math.log(low / high) / math.log(eta)) + 1
        budgets = [high * eta ** (-(rungs - 1 - index)) for index in range(rungs)]
        per_iteration = sum(budget * eta**index for index, budget in enumerate(budgets[::-1]))
        return int(per_iteration // high) * iterations
    if metadata.optimizer not in ITERATING:
        return None
    brackets = bracket_sizes(low, high, eta)
    return sum(sum(brackets[iteration % len(brackets)]) for iteration in range(iterations))
