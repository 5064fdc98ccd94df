"""Which hyperparameters matter: permutation importance on a random-forest surrogate of the loss.

A scikit-learn ``RandomForestRegressor`` learns the loss from the configuration. By default it learns
from every job with a finite loss, the budget (log) being one more input when the run used several: the
largest budget alone rarely has enough jobs for a surrogate that predicts held-out jobs (BOHB runs few
there), and the budget's own importance shows how much the budget explains. ``budget=`` restricts it to
the jobs of one budget. Each hyperparameter's importance is how much the surrogate's
held-out error grows when that column is shuffled (scikit-learn's ``permutation_importance``), averaged
over the folds of a K-fold split, and given relative to the sum over parameters. This is the method of
Breiman (2001) and of scikit-learn's user guide, chosen over fANOVA because it needs no extra library
and stays honest with correlated samples.

Encoding: numeric parameters on their search scale (log10 for log parameters), categoricals by their
choice index (a forest splits on it as on any ordinal); a conditional parameter that is inactive gets
:data:`INACTIVE_CODE`, below every real value, so the forest can separate it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from analysis.data import ConfigId, RunData
from analysis.incumbents import incumbent_budget
from analysis.space import Parameter, run_parameters, scaled

logger = logging.getLogger(__name__)

MIN_JOBS = 10
INACTIVE_CODE = -1e6
BUDGET_COLUMN = "budget"
# Random-forest surrogates need few trees to rank a handful of inputs; larger runs are subsampled.
TREES = 50
MAX_ROWS = 1000


class NotEnoughDataError(ValueError):
    """Too few finite losses to fit a surrogate."""


@dataclass(frozen=True)
class Importance:
    """Importances (relative, summing to 1 unless all are 0), most important first."""

    budget: float | None
    jobs: int
    names: tuple[str, ...]
    importances: tuple[float, ...]
    spreads: tuple[float, ...]
    # The surrogate's R^2 on held-out jobs: near 0 or below, the ranking means little.
    r2: float

    def rank(self, name: str) -> int:
        return self.names.index(name)


@dataclass(frozen=True)
class Samples:
    """The encoded configurations (rows), their losses, and the columns' names."""

    names: tuple[str, ...]
    features: np.ndarray
    losses: np.ndarray
    config_ids: tuple[ConfigId, ...]
    budget: float | None


def encode(run: RunData, parameters: Sequence[Parameter], budget: float | None) -> Samples:
    """One row per job with a finite loss (on ``budget``, or on all budgets plus a budget column when
    there are several)."""
    jobs = [job for job in run.jobs if job.loss is not None and (budget is None or job.budget == budget)]
    names = tuple(parameter.name for parameter in parameters)
    with_budget = budget is None and len({job.budget for job in jobs}) > 1
    rows = []
    for job in jobs:
        config = run.configs.get(job.config_id, {})
        row = [scaled(parameter, config.get(parameter.name)) for parameter in parameters]
        if with_budget:
            row.append(float(np.log(job.budget)) if job.budget > 0 else 0.0)
        rows.append(row)
    features = np.array(rows, dtype=float).reshape(len(rows), len(names) + with_budget)
    features[np.isnan(features)] = INACTIVE_CODE
    return Samples(
        names=names + ((BUDGET_COLUMN,) if with_budget else ()),
        features=features,
        losses=np.array([job.loss for job in jobs], dtype=float),
        config_ids=tuple(job.config_id for job in jobs),
        budget=budget,
    )


def parameter_importance(
    run: RunData,
    *,
    budget: float | None = None,
    seed: int = 0,
    folds: int = 3,
    repeats: int = 5,
    parameters: Sequence[Parameter] | None = None,
) -> Importance:
    """Relative permutation importance of each hyperparameter (see the module text); ``parameters``
    defaults to :func:`~analysis.space.run_parameters`."""
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.inspection import permutation_importance
    from sklearn.model_selection import KFold

    chosen = budget
    samples = encode(run, run_parameters(run) if parameters is None else parameters, chosen)
    if len(samples.losses) < max(MIN_JOBS, folds * 2):
        raise NotEnoughDataError(
            f"{run.run_dir}: {len(samples.losses)} finite losses"
            + (f" on budget {chosen:g}" if chosen is not None else "")
            + f"; importance needs at least {max(MIN_JOBS, folds * 2)}"
        )
    random = np.random.default_rng(seed)
    rows = np.arange(len(samples.losses))
    if len(rows) > MAX_ROWS:
        rows = np.sort(random.choice(rows, MAX_ROWS, replace=False))
    features, losses = samples.features[rows], samples.losses[rows]
    scores, r2s = [], []
    for train, test in KFold(folds, shuffle=True, random_state=seed).split(features):
        forest = RandomForestRegressor(n_estimators=TREES, min_samples_leaf=2, random_state=seed, n_jobs=1)
        forest.fit(features[train], losses[train])
        r2s.append(forest.score(features[test], losses[test]))
        result = permutation_importance(
            forest, features[test], losses[test], n_repeats=repeats, random_state=seed, n_jobs=1
        )
        scores.append(np.maximum(result.importances_mean, 0.0))
    table = np.array(scores)
    mean = table.mean(axis=0)
    total = mean.sum()
    relative = mean / total if total > 0 else mean
    spread = table.std(axis=0) / total if total > 0 else table.std(axis=0)
    order = np.argsort(-relative, kind="stable")
    return Importance(
        budget=chosen,
        jobs=len(losses),
        names=tuple(samples.names[index] for index in order),
        importances=tuple(float(relative[index]) for index in order),
        spreads=tuple(float(spread[index]) for index in order),
        r2=float(np.mean(r2s)),
    )


def best_configurations(
    run: RunData, count: int = 10, parameters: Sequence[Parameter] | None = None
) -> tuple[Samples, np.ndarray]:
    """The encoded jobs on the incumbent budget (the largest with a finite loss) and the row indices of
    their ``count`` lowest losses, for the parallel-coordinates plot."""
    parameters = run_parameters(run) if parameters is None else parameters
    samples = encode(run, parameters, incumbent_budget(run.jobs))
    order = np.argsort(samples.losses, kind="stable")
    return samples, order[:count]


def format_importance(importance: Importance) -> str:
    where = "all budgets" if importance.budget is None else f"budget {importance.budget:g}"
    lines = [
        f"random-forest surrogate on {importance.jobs} jobs ({where}), held-out R^2 {importance.r2:.2f}"
        + ("  (low: the ranking is unreliable)" if importance.r2 < 0.2 else "")
    ]
    width = max((len(name) for name in importance.names), default=0)
    for name, value, spread in zip(importance.names, importance.importances, importance.spreads, strict=True):
        lines.append(f"  {name:<{width}}  {value:6.1%}  (+- {spread:.1%})  {'#' * round(value * 40)}")
    return "\n".join(lines)
