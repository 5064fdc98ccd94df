"""Do small budgets rank configurations as large ones do? Spearman rank correlation between budgets.

Multi-fidelity optimizers (Hyperband, BOHB) promote the best configurations of a small budget to the
next; that only helps when the ranking on the small budget predicts the ranking on the large one. For
each pair of budgets, the configurations with a finite loss on both are ranked on each and correlated
(Spearman's rho, ties averaged). Below :data:`WEAK_CORRELATION` the small budget says little about the
large one: random search on the largest budget may then do as well.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from analysis.data import ConfigId, RunData

WEAK_CORRELATION = 0.2
# Fewer common configurations than this give no correlation; fewer than MIN_WARN give no warning (rho
# over three or four configurations swings between -1 and 1 by chance).
MIN_PAIRS = 3
MIN_WARN = 5


@dataclass(frozen=True)
class BudgetPair:
    smaller: float
    larger: float
    # Configurations with a finite loss on both budgets, and Spearman's rho of their losses.
    configs: int
    correlation: float | None

    @property
    def weak(self) -> bool:
        return (
            self.configs >= MIN_WARN and self.correlation is not None and self.correlation < WEAK_CORRELATION
        )


@dataclass(frozen=True)
class BudgetCorrelations:
    budgets: tuple[float, ...]
    pairs: tuple[BudgetPair, ...]

    def matrix(self) -> np.ndarray:
        """Budgets x budgets rho (1 on the diagonal, NaN where there is none)."""
        size = len(self.budgets)
        table = np.full((size, size), np.nan)
        np.fill_diagonal(table, 1.0)
        position = {budget: index for index, budget in enumerate(self.budgets)}
        for pair in self.pairs:
            value = math.nan if pair.correlation is None else pair.correlation
            table[position[pair.smaller], position[pair.larger]] = value
            table[position[pair.larger], position[pair.smaller]] = value
        return table

    @property
    def weak_pairs(self) -> tuple[BudgetPair, ...]:
        return tuple(pair for pair in self.pairs if pair.weak)


def spearman(first: np.ndarray, second: np.ndarray) -> float | None:
    """Spearman's rho (Pearson correlation of average ranks); ``None`` when either side is constant."""
    from scipy.stats import rankdata  # here: scipy.stats takes seconds to import, --help must not wait

    first_ranks, second_ranks = rankdata(first), rankdata(second)
    if np.ptp(first_ranks) == 0 or np.ptp(second_ranks) == 0:
        return None
    return float(np.corrcoef(first_ranks, second_ranks)[0, 1])


def budget_correlations(run: RunData) -> BudgetCorrelations:
    losses: dict[float, dict[ConfigId, float]] = {}
    for job in run.jobs:
        if job.loss is not None:
            losses.setdefault(job.budget, {})[job.config_id] = job.loss
    budgets = tuple(sorted(losses))
    pairs = []
    for smaller, larger in combinations(budgets, 2):
        common = sorted(losses[smaller].keys() & losses[larger].keys())
        correlation = None
        if len(common) >= MIN_PAIRS:
            correlation = spearman(
                np.array([losses[smaller][config_id] for config_id in common]),
                np.array([losses[larger][config_id] for config_id in common]),
            )
        pairs.append(BudgetPair(smaller, larger, len(common), correlation))
    return BudgetCorrelations(budgets, tuple(pairs))


def format_correlations(correlations: BudgetCorrelations) -> str:
    lines = [f"{'budgets':>15}  {'configs':>7}  {'spearman':>8}"]
    for pair in correlations.pairs:
        rho = "-" if pair.correlation is None else f"{pair.correlation:+.3f}"
        mark = "  <- weak" if pair.weak else ""
        lines.append(f"{pair.smaller:>6g} vs {pair.larger:<5g}  {pair.configs:>7d}  {rho:>8}{mark}")
    if not correlations.pairs:
        lines.append("  (fewer than two budgets with results: nothing to correlate)")
    for pair in correlations.weak_pairs:
        lines.append(
            f"WARNING: budget {pair.smaller:g} ranks configurations unlike budget {pair.larger:g} "
            f"(spearman {pair.correlation:+.2f} < {WEAK_CORRELATION}): multi-fidelity does not help there; "
            "consider a larger min budget, or random search on the largest budget"
        )
    return "\n".join(lines)
