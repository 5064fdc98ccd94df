"""Hyperband's plan as HpBandSter 0.7.4 computes it: the jobs per rung of each successive-halving bracket,
and how many jobs a run dispatches.

Standard library only: the master, ``analysis``'s dashboard (its progress denominator) and the benchmarks
share this one copy of the arithmetic.
"""

from __future__ import annotations

import math


def rung_count(min_budget: float, max_budget: float, eta: float) -> int:
    """Budgets from ``min_budget`` to ``max_budget`` in steps of ``eta``: the largest bracket's rungs."""
    return -int(math.log(min_budget / max_budget) / math.log(eta)) + 1


def bracket_sizes(min_budget: float, max_budget: float, eta: float) -> list[list[int]]:
    """Configurations per rung of each Hyperband bracket, largest bracket first."""
    rungs = rung_count(min_budget, max_budget, eta)
    brackets = []
    for iteration in range(rungs):
        s = rungs - 1 - iteration
        # HpBandSter floors before multiplying by eta**s (the paper floors after): 3/1, not 4/1, for 1..9.
        first = int(math.floor(rungs / (s + 1)) * eta**s)
        brackets.append([max(int(first * eta ** (-index)), 1) for index in range(s + 1)])
    return brackets


def planned_jobs(name: str, min_budget: float, max_budget: float, eta: float, n_iterations: int) -> int:
    """How many jobs a run of ``bohb``, ``hyperband`` or ``randomsearch`` dispatches (when none fail and
    need resampling)."""
    if name == "randomsearch":
        # Random search spends each iteration's Hyperband budget on max-budget jobs.
        rungs = rung_count(min_budget, max_budget, eta)
        budgets = [max_budget * eta ** (-(rungs - 1 - index)) for index in range(rungs)]
        per_iteration = sum(budget * eta**index for index, budget in enumerate(budgets[::-1]))
        return int(per_iteration // max_budget) * n_iterations
    brackets = bracket_sizes(min_budget, max_budget, eta)
    return sum(sum(brackets[iteration % len(brackets)]) for iteration in range(n_iterations))
