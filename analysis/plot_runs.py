"""Figures of how the optimisation went: grouped incumbents, learning curves, budget correlations."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.collections import LineCollection
from matplotlib.colors import BoundaryNorm, ListedColormap

from analysis.budgets import WEAK_CORRELATION, BudgetCorrelations
from analysis.curves import Curve, CurvesByParameter
from analysis.groups import GroupTrajectory
from analysis.plots import MAX_DRAWN, drawn_subset, figure_format, new_figure, plain_numbers, save_figure


def plot_group_trajectories(
    bands: Sequence[GroupTrajectory], path: Path, *, rule: str, log_scale: bool = True
) -> Path:
    """Median line and interquartile band of the incumbent loss per group (optimizer)."""
    figure_format(path)
    figure = new_figure()
    axes = figure.add_subplot()
    positive = True
    for index, band in enumerate(bands):
        color = f"C{index % 10}"
        times = np.array(band.times)
        axes.plot(times, band.median, color=color, label=f"{band.group} (median of {band.runs} runs)")
        axes.fill_between(times, band.lower, band.upper, color=color, alpha=0.25, linewidth=0)
        lower = np.array(band.lower)
        positive = positive and bool(np.all(lower[~np.isnan(lower)] > 0))
    if log_scale and positive and bands:
        axes.set_yscale("log")
        plain_numbers(axes.yaxis)
    axes.set_title(f"incumbent ({rule}): median and interquartile range over runs")
    axes.set_xlabel("wall time since first submission [s]")
    axes.set_ylabel("validation loss")
    axes.grid(True, which="both", alpha=0.3)
    if bands:
        axes.legend()
    return save_figure(figure, path)


def budget_colors(budgets: Sequence[float]) -> tuple[ListedColormap, BoundaryNorm]:
    """One discrete colour per budget, small budgets light."""
    from matplotlib import colormaps

    count = max(len(budgets), 1)
    colors = colormaps["viridis"](np.linspace(0.85, 0.1, count))
    return ListedColormap(colors), BoundaryNorm(np.arange(count + 1) - 0.5, count)


def plot_learning_curves(curves: Sequence[Curve], path: Path, *, title: str = "learning curves") -> Path:
    """Validation error per epoch of every job, coloured by budget; at most
    :data:`~analysis.plots.MAX_DRAWN` curves, drawn at random (the title says so)."""
    figure_format(path)
    if len(curves) > MAX_DRAWN:
        title = f"{title} ({MAX_DRAWN} of {len(curves)} drawn at random)"
        curves = [curves[index] for index in drawn_subset(len(curves))]
    budgets = sorted({curve.budget for curve in curves})
    colormap, norm = budget_colors(budgets)
    position = {budget: index for index, budget in enumerate(budgets)}
    figure = new_figure()
    axes = figure.add_subplot()
    # One LineCollection for all curves: fast enough for runs of many thousand jobs.
    segments = [np.column_stack([np.arange(1, len(curve.errors) + 1), curve.errors]) for curve in curves]
    lines = LineCollection(segments, cmap=colormap, norm=norm, linewidths=0.8, alpha=0.6)
    lines.set_array(np.array([position[curve.budget] for curve in curves]))
    axes.add_collection(lines)
    # A dot at each curve's last epoch: one-epoch curves (the smallest budget) are no line at all.
    axes.scatter(
        [len(curve.errors) for curve in curves],
        [curve.errors[-1] for curve in curves],
        c=[position[curve.budget] for curve in curves],
        cmap=colormap,
        norm=norm,
        s=10,
        alpha=0.7,
    )
    axes.autoscale_view()
    bar = figure.colorbar(ScalarMappable(norm=norm, cmap=colormap), ax=axes, ticks=range(len(budgets)))
    bar.ax.set_yticklabels([f"{budget:g}" for budget in budgets])
    bar.set_label("budget [epochs]")
    axes.set_title(title)
    axes.set_xlabel("epoch")
    axes.set_ylabel("validation error")
    axes.grid(True, alpha=0.3)
    return save_figure(figure, path)


def plot_curves_by_parameter(data: CurvesByParameter, path: Path) -> Path:
    """Mean validation error per epoch, one line per value (or bin) of the parameter."""
    figure_format(path)
    figure = new_figure()
    axes = figure.add_subplot()
    for index, group in enumerate(data.groups):
        epochs = np.arange(1, len(group.errors) + 1)
        axes.plot(
            epochs,
            group.errors,
            marker="o",
            markersize=3,
            color=f"C{index % 10}",
            # The mean shifts where shorter curves end: say how many configurations reach the last epoch.
            label=f"{group.label} ({group.configs} configs, {group.counts[-1] if group.counts else 0} "
            f"to epoch {len(group.errors)})",
        )
    axes.set_title(f"validation error per epoch by {data.parameter} (mean over configurations)")
    axes.set_xlabel("epoch")
    axes.set_ylabel("validation error")
    axes.grid(True, alpha=0.3)
    axes.legend(title=data.parameter)
    return save_figure(figure, path)


def plot_budget_correlations(correlations: BudgetCorrelations, path: Path) -> Path:
    """Heat map of Spearman's rho between budgets, each cell labelled with rho and the number of configs."""
    figure_format(path)
    matrix = correlations.matrix()
    labels = [f"{budget:g}" for budget in correlations.budgets]
    size = max(len(labels), 1)
    figure = new_figure(1.2 * size + 2.5, 1.0 * size + 1.8)
    axes = figure.add_subplot()
    image = axes.imshow(matrix, cmap="RdYlGn", vmin=-1, vmax=1)
    counts = {(pair.smaller, pair.larger): pair.configs for pair in correlations.pairs}
    for row, first in enumerate(correlations.budgets):
        for column, second in enumerate(correlations.budgets):
            if row == column:
                continue
            key = (min(first, second), max(first, second))
            value = matrix[row, column]
            text = "-" if np.isnan(value) else f"{value:.2f}"
            weight = "bold" if not np.isnan(value) and value < WEAK_CORRELATION else "normal"
            axes.text(column, row, f"{text}\nn={counts[key]}", ha="center", va="center", weight=weight)
    axes.set_xticks(range(len(labels)), labels)
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("budget")
    axes.set_ylabel("budget")
    axes.set_title("Spearman rank correlation of losses")
    figure.colorbar(image, ax=axes)
    return save_figure(figure, path)
