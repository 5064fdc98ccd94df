"""The figure of a sweep or grid: per varied hyperparameter, the learning curves per value (mean and band
over repeats) above the final validation error against the value."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.ticker import MaxNLocator, NullLocator

from analysis.plots import figure_format, new_figure, save_figure
from analysis.space import CATEGORICAL
from analysis.sweep import LOG, Study, SweepPanel

PANEL_WIDTH = 5.5
MIN_WIDTH = 7.0
FIGURE_HEIGHT = 8.0


def plot_study(study: Study, path: Path) -> Path:
    """One column per varied hyperparameter: curves on top, final error against value below."""
    figure_format(path)
    columns = max(len(study.panels), 1)
    figure = new_figure(max(PANEL_WIDTH * columns, MIN_WIDTH), FIGURE_HEIGHT)
    grid = figure.subplots(2, columns, squeeze=False)
    for column, panel in enumerate(study.panels):
        plot_curves(panel, grid[0][column])
        plot_finals(panel, grid[1][column])
    budget = "" if study.budget is None else f", {study.budget:g} epochs"
    figure.suptitle(f"{study.kind}: {study.jobs} jobs{budget}, {len(study.seeds)} seed(s) per configuration")
    return save_figure(figure, path)


def plot_curves(panel: SweepPanel, axes: Axes) -> None:
    """Mean validation error per epoch of each value, shaded from the lowest to the highest repeat."""
    for index, result in enumerate(panel.values):
        if not result.mean:
            continue
        color = f"C{index % 10}"
        epochs = np.arange(1, len(result.mean) + 1)
        axes.plot(epochs, result.mean, marker="o", markersize=3, color=color,
                  label=f"{result.label} ({len(result.finals)} runs)")  # fmt: skip
        axes.fill_between(epochs, result.low, result.high, color=color, alpha=0.2, linewidth=0)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_title(f"{panel.parameter}: validation error per epoch\n(mean; band: lowest to highest run)")
    axes.set_xlabel("epoch")
    axes.set_ylabel("validation error")
    axes.grid(True, alpha=0.3)
    axes.legend(title=panel.parameter, fontsize="small")


def plot_finals(panel: SweepPanel, axes: Axes) -> None:
    """Each run's final validation error (dots), the mean per value (line) and its range (bars)."""
    scored = [result for result in panel.values if result.finals]
    if panel.scale == CATEGORICAL:
        positions = {result.label: float(index) for index, result in enumerate(panel.values)}
    else:
        positions = {result.label: float(result.value) for result in panel.values}
        if panel.scale == LOG:
            axes.set_xscale("log")
            axes.xaxis.set_minor_locator(NullLocator())
    # Ticks at the tested values, labelled as given (0.001, not 10^-3).
    axes.set_xticks(list(positions.values()), list(positions))
    xs = [positions[result.label] for result in scored]
    means = np.array([result.final_mean for result in scored], dtype=float)
    lows = means - np.array([min(result.finals) for result in scored])
    highs = np.array([max(result.finals) for result in scored]) - means
    for result in scored:
        axes.scatter(
            [positions[result.label]] * len(result.finals), result.finals, s=10, color="0.5", alpha=0.6
        )
    axes.errorbar(xs, means, yerr=[lows, highs], marker="o", color="C0", capsize=4, label="mean, min-max")
    best = panel.best
    if best is not None and best.final_mean is not None:
        axes.scatter([positions[best.label]], [best.final_mean], s=80, facecolors="none", edgecolors="C3",
                     label=f"best: {best.label}")  # fmt: skip
    axes.set_title(f"{panel.parameter}: final validation error")
    axes.set_xlabel(panel.parameter)
    axes.set_ylabel("final validation error")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize="small")
