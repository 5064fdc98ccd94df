"""Where a run's configurations came from: BOHB's model or random sampling.

HpBandSter's BOHB writes ``config_info["model_based_pick"]`` for every configuration it samples (in
``configs.json`` and the pickle). From it :func:`model_provenance` computes how many configurations the
model proposed, when its first pick came (how many results, epochs and seconds into the run), and the
loss distributions of model-based and random picks on each budget, the numbers behind HpBandSter's
``hpbandster.visualization.performance_histogram_model_vs_random``: a configuration counts on every
budget it ran on, so a model-based pick promoted to the largest budget counts there too.

Random search, Hyperband, sweeps and grids record no such flag; their provenance says so
(``recorded`` is False) instead of calling every configuration random.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from analysis.data import OK, ConfigId, RunData

MODEL_BASED = "model_based_pick"


@dataclass(frozen=True)
class LossDistribution:
    """The finite losses of a group of jobs: how many, their quartiles and the best (None when empty)."""

    count: int
    best: float | None = None
    lower_quartile: float | None = None
    median: float | None = None
    upper_quartile: float | None = None

    @classmethod
    def of(cls, losses: Sequence[float]) -> LossDistribution:
        if not losses:
            return cls(0)
        lower, median, upper = (float(value) for value in np.percentile(losses, [25, 50, 75]))
        return cls(len(losses), float(min(losses)), lower, median, upper)


@dataclass(frozen=True)
class BudgetComparison:
    """Model-based against random picks on one budget; the raw losses are kept for the histogram."""

    budget: float
    model_based: LossDistribution
    random: LossDistribution
    model_based_losses: tuple[float, ...]
    random_losses: tuple[float, ...]


@dataclass(frozen=True)
class FirstModelPick:
    """The model's first configuration, and how far the run was when it was dispatched: the results
    finished by then (the model was built from some of them), the epochs they trained and the time."""

    config_id: ConfigId
    results_before: int
    epochs_before: int
    seconds: float


@dataclass(frozen=True)
class Provenance:
    """Who proposed the configurations of one run. ``recorded`` is False when no configuration carries
    ``model_based_pick`` (random search, Hyperband, sweeps, runs of other tools); the rest is then empty."""

    recorded: bool
    configurations: int
    model_based: int
    first_pick: FirstModelPick | None
    budgets: tuple[BudgetComparison, ...]
    results: int
    epochs: int

    @property
    def random(self) -> int:
        return self.configurations - self.model_based


def model_provenance(run: RunData) -> Provenance:
    """The provenance of ``run``'s configurations (see the module docstring)."""
    picks = {
        config_id: bool(info[MODEL_BASED])
        for config_id, info in run.config_info.items()
        if isinstance(info, dict) and MODEL_BASED in info
    }
    epochs = sum(epochs_trained(job.info) for job in run.jobs)
    if not picks:
        return Provenance(False, 0, 0, None, (), len(run.jobs), epochs)
    return Provenance(
        recorded=True,
        configurations=len(picks),
        model_based=sum(picks.values()),
        first_pick=first_model_pick(run, picks),
        budgets=tuple(compare_budget(run, picks, budget) for budget in run.budgets),
        results=len(run.jobs),
        epochs=epochs,
    )


def first_model_pick(run: RunData, picks: dict[ConfigId, bool]) -> FirstModelPick | None:
    """The model-based configuration dispatched first (None when none ran)."""
    submitted = [(job.submitted, job.config_id) for job in run.jobs if picks.get(job.config_id)]
    if not submitted:
        return None
    seconds, config_id = min(submitted)
    finished = [job for job in run.jobs if job.finished <= seconds]
    return FirstModelPick(
        config_id=config_id,
        results_before=len(finished),
        epochs_before=sum(epochs_trained(job.info) for job in finished),
        seconds=seconds,
    )


def compare_budget(run: RunData, picks: dict[ConfigId, bool], budget: float) -> BudgetComparison:
    model_based: list[float] = []
    random: list[float] = []
    for job in run.jobs:
        if job.budget != budget or job.loss is None or job.status != OK or job.config_id not in picks:
            continue
        (model_based if picks[job.config_id] else random).append(job.loss)
    return BudgetComparison(
        budget=budget,
        model_based=LossDistribution.of(model_based),
        random=LossDistribution.of(random),
        model_based_losses=tuple(model_based),
        random_losses=tuple(random),
    )


def epochs_trained(info: object) -> int:
    """``info["epochs_trained"]`` when the worker reported it (plain HpBandSter workers do not), else 0."""
    value = info.get("epochs_trained") if isinstance(info, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def format_provenance(provenance: Provenance) -> str:
    """Plain-text lines: the counts, the first pick, and a table of losses per budget and origin."""
    if not provenance.recorded:
        return "model       no model-based picks recorded (random search, Hyperband, a sweep or an older run)"
    lines = [
        f"model       proposed {provenance.model_based} of {provenance.configurations} configurations "
        f"({provenance.random} random)",
        "first pick  " + format_first_pick(provenance),
    ]
    if provenance.budgets:
        columns = "".join(f"{name:>10}" for name in ("best", "q25", "median", "q75"))
        lines.append(f"{'budget':>10}  {'picked by':<11}{'count':>6}{columns}")
    for comparison in provenance.budgets:
        for origin, losses in (("model", comparison.model_based), ("random", comparison.random)):
            values = [losses.best, losses.lower_quartile, losses.median, losses.upper_quartile]
            cells = "".join("-".rjust(10) if value is None else f"{value:>10.4f}" for value in values)
            lines.append(f"{comparison.budget:>10g}  {origin:<11}{losses.count:>6d}{cells}")
    return "\n".join(lines)


def format_first_pick(provenance: Provenance) -> str:
    first = provenance.first_pick
    if first is None:
        return "none: the model never proposed a configuration that ran"
    config_id = "(" + ", ".join(str(part) for part in first.config_id) + ")"
    epochs = f", {first.epochs_before} of {provenance.epochs} epochs" if provenance.epochs else ""
    return (
        f"{config_id} after {first.results_before} of {provenance.results} results{epochs}, "
        f"at {first.seconds:.1f} s"
    )
