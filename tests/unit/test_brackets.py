"""Hyperband's plan (``hpo_service.brackets``) and the dashboard's progress denominator built on it.

The counts here are HpBandSter 0.7.4's; the integration tests check them against whole runs (every
planned result arrives, no more).
"""

from __future__ import annotations

import pytest

from analysis.dashboard.plan import planned_jobs as dashboard_plan
from analysis.data import RunMetadata
from hpo_service.brackets import bracket_sizes, planned_jobs


def test_brackets_floor_before_multiplying_as_hpbandster_does() -> None:
    # The paper's n = floor((s_max + 1) / (s + 1) * eta^s) would give 4/1 here and 12/4/1 below;
    # 6/2 is the same either way.
    assert bracket_sizes(1, 9, 3) == [[9, 3, 1], [3, 1], [3]]
    assert bracket_sizes(1, 27, 3) == [[27, 9, 3, 1], [9, 3, 1], [6, 2], [4]]
    assert bracket_sizes(3, 27, 3) == [[9, 3, 1], [3, 1], [3]]
    assert bracket_sizes(1, 1, 3) == [[1]]


@pytest.mark.parametrize(
    ("run", "jobs"),
    [
        (("bohb", 1, 9, 3, 3), 13 + 4 + 3),
        (("hyperband", 1, 9, 3, 4), 13 + 4 + 3 + 13),
        (("hyperband", 1, 27, 3, 5), 40 + 13 + 8 + 4 + 40),
        # Each iteration spends Hyperband's budget (9 + 3*3 + 9*1 = 27 epochs) on max-budget jobs: 3 of 9.
        (("randomsearch", 1, 9, 3, 2), 2 * 3),
        (("bohb", 2, 50, 2, 1), 16 + 8 + 4 + 2 + 1),
    ],
)
def test_planned_jobs_counts_each_iterations_bracket(
    run: tuple[str, float, float, float, int], jobs: int
) -> None:
    optimizer, low, high, eta, iterations = run
    assert planned_jobs(optimizer, low, high, eta, iterations) == jobs
    assert dashboard_plan(RunMetadata(optimizer, None, low, high, eta, iterations)) == jobs


@pytest.mark.parametrize(
    "metadata",
    [
        RunMetadata("sweep", None, 1, 9, 3, 3),  # a sweep's plan is its own, not Hyperband's
        RunMetadata("unknown", None, 1, 9, 3, 3),
        RunMetadata("bohb", None, None, 9, 3, 3),  # run.json written before it said the budgets
        RunMetadata("bohb", None, 1, 9, 3, None),
        RunMetadata("bohb", None, 0, 9, 3, 3),
        RunMetadata("bohb", None, 1, 9, 1, 3),
    ],
)
def test_the_dashboard_plans_nothing_it_cannot_count(metadata: RunMetadata) -> None:
    assert dashboard_plan(metadata) is None
