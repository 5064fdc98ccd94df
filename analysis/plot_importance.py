"""Figures of which hyperparameters matter: importance bars with the marginal loss-vs-parameter scatter of
each, and parallel coordinates of the best configurations."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.ticker import NullFormatter

from analysis.data import RunData
from analysis.importance import INACTIVE_CODE, Importance, Samples
from analysis.plot_runs import budget_colors
from analysis.plots import drawn_subset, figure_format, new_figure, save_figure
from analysis.space import CATEGORICAL, Parameter, scaled

COLUMNS = 4


def plot_importance(
    run: RunData, importance: Importance, parameters: Sequence[Parameter], path: Path
) -> Path:
    """Bar chart of the importances, then one marginal panel per parameter (most important first): the
    loss of each job the surrogate learnt from against the parameter's value, coloured by budget (dark:
    large); at most :data:`~analysis.plots.MAX_DRAWN` jobs, drawn at random."""
    figure_format(path)
    by_name = {parameter.name: parameter for parameter in parameters}
    shown = [by_name[name] for name in importance.names if name in by_name]
    rows = 1 + math.ceil(len(shown) / COLUMNS)
    figure = new_figure(3.2 * COLUMNS, 2.8 * rows)
    grid = figure.add_gridspec(rows, COLUMNS)
    bars = figure.add_subplot(grid[0, :])
    bars.bar(importance.names, importance.importances, yerr=importance.spreads, color="C0")
    bars.set_ylabel("relative importance")
    where = "all budgets" if importance.budget is None else f"budget {importance.budget:g}"
    bars.set_title(
        f"permutation importance, random-forest surrogate ({where}, {importance.jobs} jobs, "
        f"held-out R^2 {importance.r2:.2f})"
    )
    bars.tick_params(axis="x", labelrotation=30)
    eligible = [
        job
        for job in run.jobs
        if job.loss is not None and (importance.budget is None or job.budget == importance.budget)
    ]
    jobs = [eligible[index] for index in drawn_subset(len(eligible))]
    losses = [float(job.loss) for job in jobs if job.loss is not None]
    budgets = sorted({job.budget for job in jobs})
    colormap, _ = budget_colors(budgets)
    shades = [colormap(budgets.index(job.budget)) for job in jobs]
    for index, parameter in enumerate(shown):
        axes = figure.add_subplot(grid[1 + index // COLUMNS, index % COLUMNS])
        values = [run.configs.get(job.config_id, {}).get(parameter.name) for job in jobs]
        active = [
            (value, loss, shade)
            for value, loss, shade in zip(values, losses, shades, strict=True)
            if value is not None
        ]
        if parameter.kind == CATEGORICAL:
            xs = [scaled(parameter, value) for value, _, _ in active]
            axes.set_xticks(range(len(parameter.choices)), [str(choice) for choice in parameter.choices])
        else:
            xs = [float(value) for value, _, _ in active]
            if parameter.log:
                axes.set_xscale("log")
                # Labels on the minor ticks of a log axis over one or two decades run into each other.
                axes.xaxis.set_minor_formatter(NullFormatter())
        axes.scatter(xs, [loss for _, loss, _ in active], s=8, alpha=0.6, c=[shade for _, _, shade in active])
        axes.set_title(parameter.name, fontsize="medium")
        axes.set_ylabel("loss" if index % COLUMNS == 0 else "")
        axes.grid(True, alpha=0.3)
    return save_figure(figure, path)


def plot_parallel_coordinates(
    samples: Samples, best: np.ndarray, parameters: Sequence[Parameter], path: Path
) -> Path:
    """One polyline per best configuration across the parameters, each scaled to [0, 1] over its search
    range (log parameters on the log scale, categoricals by choice index), coloured by loss (dark: best);
    an inactive parameter sits below 0."""
    figure_format(path)
    by_name = {parameter.name: parameter for parameter in parameters}
    names = [name for name in samples.names if name in by_name]
    columns = [samples.names.index(name) for name in names]
    features = samples.features[:, columns]
    active = features != INACTIVE_CODE
    low, high = search_range([by_name[name] for name in names], features, active)
    width = np.where(high > low, high - low, 1.0)
    scaled_features = np.where(active, (features - low) / width, -0.1)
    figure = new_figure(max(8.0, 1.1 * len(names)), 5.0)
    axes = figure.add_subplot()
    losses = samples.losses[best]
    from matplotlib import colormaps

    colormap = colormaps["viridis"]
    span = float(np.ptp(losses)) if len(losses) else 0.0
    for rank, row in enumerate(best):
        shade = (samples.losses[row] - losses.min()) / span if span > 0 else 0.0
        axes.plot(
            range(len(names)),
            scaled_features[row],
            color=colormap(shade),
            marker="o",
            linewidth=2.2 if rank == 0 else 1.0,
            label=f"loss {samples.losses[row]:.4f}" if rank < 3 else None,
        )
    axes.set_xticks(range(len(names)), names, rotation=30)
    axes.set_ylim(-0.15, 1.05)
    axes.set_ylabel("position in the sampled range (inactive: below 0)")
    where = "" if samples.budget is None else f" on budget {samples.budget:g}"
    axes.set_title(f"the {len(best)} best configurations{where}")
    axes.grid(True, axis="x", alpha=0.5)
    axes.legend(fontsize="small")
    return save_figure(figure, path)


def search_range(
    parameters: Sequence[Parameter], features: np.ndarray, active: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per column, the encoded bounds of the search range: declared bounds or choices where known, else
    the sampled values' range."""
    lows, highs = [], []
    for index, parameter in enumerate(parameters):
        column = features[active[:, index], index]
        if parameter.kind == CATEGORICAL and parameter.choices:
            low, high = 0.0, float(len(parameter.choices) - 1)
        elif parameter.lower is not None and parameter.upper is not None:
            low, high = scaled(parameter, parameter.lower), scaled(parameter, parameter.upper)
        else:
            low, high = math.nan, math.nan
        if not (math.isfinite(low) and math.isfinite(high)):
            low = float(column.min()) if column.size else 0.0
            high = float(column.max()) if column.size else 1.0
        lows.append(low)
        highs.append(high)
    return np.array(lows), np.array(highs)
