"""``--warm-start RUN_DIR ...``: the results of earlier runs enter BOHB's model before its first sample.

The rules (docs/search-quality.md):

- **Which runs.** Any run dir the master wrote (a search, a sweep or a grid): its ``configspace.json`` must
  have the new space's hyperparameter names, each of the same type; the first difference refuses the run.
  Its logs are read as ``--resume`` reads them (:func:`hpo_service.resume.load_run`), and at least one
  result must have a finite loss.
- **Which results.** Each logged result, crashed ones as crashed (``result=None``, as ``--resume`` feeds
  them). A configuration the new space does not allow (a value out of range, an unknown choice, a value of a
  hyperparameter the new conditions make inactive, a forbidden combination) is skipped and counted by
  reason. A study's ``seed`` key (not a hyperparameter) is dropped.
- **Budgets.** A result on a budget the new run has keeps it. Another budget maps to the new run's nearest
  budget in log space when it is at most half a successive-halving rung away (a factor of sqrt(eta));
  farther ones (beyond the new run's budget range) are skipped. The mapping is recorded.
- **Not this run's jobs.** The results only reach the config generator (``new_result``, the model fitted
  once at the end); they are not logged in the new run's ``results.json``/``configs.json``. ``run.json``
  records the runs, the results used, those skipped with their reasons and the budget mapping.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ConfigSpace as CS
import numpy as np
from ConfigSpace.exceptions import (
    ActiveHyperparameterNotSetError,
    ForbiddenValueError,
    IllegalValueError,
    InactiveHyperparameterSetError,
)

from hpo_service import run_files
from hpo_service.errors import HpoServiceError, SettingsError
from hpo_service.resume import LoggedRun, load_run, logged_job
from hpo_service.sweeps.plan import SEED_KEY

OPTION = "--warm-start"


@dataclass
class WarmStartSource:
    """What one earlier run gave: its results used, those skipped by reason, its budgets' mapping."""

    run_dir: str
    results: int
    used: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    # Earlier budget -> the new run's budget it counts for (None: skipped).
    budgets: dict[str, float | None] = field(default_factory=dict)


@dataclass
class WarmStart:
    """The jobs to feed BOHB's config generator, and where they came from (for ``run.json``)."""

    sources: list[WarmStartSource]
    jobs: list[Any]

    def record(self) -> dict[str, Any]:
        return {
            "runs": [source.__dict__ for source in self.sources],
            "used": sum(source.used for source in self.sources),
            "skipped": sum(sum(source.skipped.values()) for source in self.sources),
        }

    def summary(self) -> str:
        """One line for the master's log."""
        parts = []
        for source in self.sources:
            skipped = ", ".join(f"{count} {reason}" for reason, count in sorted(source.skipped.items()))
            mapped = ", ".join(
                f"{old} -> {'skipped' if new is None else f'{new:g}'}"
                for old, new in source.budgets.items()
                if new is None or not math.isclose(float(old), new)
            )
            parts.append(
                f"{source.run_dir}: {source.used} of {source.results} results"
                + (f" (skipped: {skipped})" if skipped else "")
                + (f" (budgets {mapped})" if mapped else "")
            )
        return f"warm start of BOHB's model from {len(self.sources)} run(s): " + "; ".join(parts)


def run_budgets(min_budget: float, max_budget: float, eta: float) -> list[float]:
    """The budgets of a Hyperband/BOHB run, computed exactly as HpBandSter computes them."""
    rungs = -int(np.log(min_budget / max_budget) / np.log(eta)) + 1
    return [float(budget) for budget in max_budget * np.power(eta, -np.linspace(rungs - 1, 0, rungs))]


def map_budget(budget: float, budgets: Sequence[float], eta: float) -> float | None:
    """The nearest of ``budgets`` in log space, if at most half a rung (a factor sqrt(eta)) away."""
    nearest = min(budgets, key=lambda candidate: abs(math.log(candidate / budget)))
    if abs(math.log(nearest / budget)) <= math.log(eta) / 2 + 1e-9:
        return nearest
    return None


def space_difference(earlier: CS.ConfigurationSpace, space: CS.ConfigurationSpace) -> str | None:
    """The first difference in hyperparameter names and types, or None when the spaces are compatible."""
    for name, hyperparameter in earlier.items():
        if name not in space:
            return f"its hyperparameter {name!r} is not in this run's space"
        kind, new_kind = type(hyperparameter).__name__, type(space[name]).__name__
        if kind != new_kind:
            return f"its hyperparameter {name!r} is a {kind}, in this run's space a {new_kind}"
    for name in space:
        if name not in earlier:
            return f"this run's hyperparameter {name!r} is not in its space"
    return None


def outside_reason(config: dict[str, Any], space: CS.ConfigurationSpace) -> str | None:
    """Why ``config`` is not a configuration of ``space`` (None when it is)."""
    for name, value in config.items():
        if name not in space:
            return "unknown hyperparameter"
        hyperparameter = space[name]
        if not hyperparameter.legal_value(value):
            categorical = isinstance(hyperparameter, CS.CategoricalHyperparameter)
            return "unknown choice" if categorical else "out of range"
    try:
        CS.Configuration(space, values=config).check_valid_configuration()
    except InactiveHyperparameterSetError:
        return "inactive by the new conditions"
    except ActiveHyperparameterNotSetError:
        return "unset but active by the new conditions"
    except ForbiddenValueError:
        return "forbidden"
    except (IllegalValueError, ValueError, TypeError):
        return "out of range"
    return None


def prepare(
    run_dirs: Sequence[Path], space: CS.ConfigurationSpace, budgets: Sequence[float], eta: float
) -> WarmStart:
    """The jobs of ``run_dirs`` to feed a BOHB run of ``space`` and ``budgets``; SettingsError (one line,
    naming the run) for a run that cannot warm-start it."""
    sources: list[WarmStartSource] = []
    jobs: list[Any] = []
    for run_dir in run_dirs:
        try:
            run = load_run(run_dir, option=OPTION)
        except HpoServiceError as error:
            raise SettingsError(str(error)) from None
        source, run_jobs = _jobs_of(run, space, budgets, eta)
        sources.append(source)
        jobs += run_jobs
    return WarmStart(sources, jobs)


def _jobs_of(
    run: LoggedRun, space: CS.ConfigurationSpace, budgets: Sequence[float], eta: float
) -> tuple[WarmStartSource, list[Any]]:
    earlier = load_earlier_space(run.run_dir)
    difference = space_difference(earlier, space)
    if difference is not None:
        raise SettingsError(f"{OPTION} {run.run_dir}: another search space: {difference}")
    if not any(_finite_loss(line[3]) for line in run.results):
        raise SettingsError(f"{OPTION} {run.run_dir}: no result with a finite loss to learn from")
    configs = {tuple(line[0]): line[1] for line in run.configs}
    source = WarmStartSource(str(run.run_dir.resolve()), results=len(run.results))
    skipped: Counter[str] = Counter()
    jobs = []
    for line in run.results:
        budget = float(line[1])
        key = f"{budget:g}"
        if key not in source.budgets:
            source.budgets[key] = map_budget(budget, budgets, eta)
        new_budget = source.budgets[key]
        # A study's seed travels in its configurations; it is not a hyperparameter.
        config = {
            name: value
            for name, value in configs[tuple(line[0])].items()
            if name in space or name != SEED_KEY
        }
        reason = outside_reason(config, space)
        if new_budget is None:
            skipped[f"budget {key} beyond this run's budgets"] += 1
        elif reason is not None:
            skipped[reason] += 1
        else:
            jobs.append(logged_job(line, config, new_budget))
    source.used = len(jobs)
    source.skipped = dict(skipped)
    return source, jobs


def load_earlier_space(run_dir: Path) -> CS.ConfigurationSpace:
    try:
        return CS.ConfigurationSpace.from_json(run_dir / run_files.SPACE)
    except (ValueError, KeyError, TypeError) as error:
        raise SettingsError(f"{OPTION} {run_dir}: configspace.json is not valid ({error!r})") from None


def _finite_loss(result: Any) -> bool:
    loss = result.get("loss") if isinstance(result, dict) else None
    return isinstance(loss, int | float) and not isinstance(loss, bool) and math.isfinite(loss)


def feed(generator: Any, warm_start: WarmStart) -> None:
    """Give ``generator`` the warm start's results without fitting (a resumed run's own results may follow);
    :func:`fit_models` fits afterwards."""
    for job in warm_start.jobs:
        generator.new_result(job, update_model=False)


def fit_models(generator: Any) -> None:
    """Fit the model of every budget with enough results, smallest first. HpBandSter's ``previous_result``
    fits only the budget of the last result fed; a warm start's results may end on any budget."""
    for budget in sorted(generator.configs):
        generator.fit_model(budget)


def check(settings: Any) -> None:
    """Validation before anything starts (``MasterSettings``): BOHB's settings against the space, and every
    warm-start run; SettingsError (one line) otherwise."""
    from hpo_service.space import load_space

    options = settings.bohb
    if options.min_points_in_model is None and not options.warm_start:
        return
    space = load_space(settings.space, dataset=settings.dataset)
    floor = len(space) + 1
    if options.min_points_in_model is not None and options.min_points_in_model < floor:
        raise SettingsError(
            f"--min-points-in-model must be at least {floor} for this space ({len(space)} hyperparameters "
            f"+ 1, the fewest a model needs), got {options.min_points_in_model}"
        )
    budgets = run_budgets(settings.min_budget, settings.max_budget, settings.eta)
    prepare(options.warm_start, space, budgets, settings.eta)
