"""The figure of :mod:`analysis.provenance`: losses of model-based and random picks, one panel per budget
(HpBandSter's ``performance_histogram_model_vs_random`` draws the same, two columns per budget)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from analysis.plots import figure_format, new_figure, save_figure
from analysis.provenance import Provenance

COLORS = {"model-based": "tab:blue", "random": "tab:orange"}


def plot_model_vs_random(provenance: Provenance, path: Path) -> Path:
    """Overlaid histograms of the finite losses per budget, shared bins, counts on the legend."""
    figure_format(path)
    if not provenance.recorded:
        raise ValueError("no model-based picks recorded: nothing to compare")
    budgets = provenance.budgets
    figure = new_figure(8.0, 1.0 + 2.2 * max(len(budgets), 1))
    panels = figure.subplots(max(len(budgets), 1), 1, squeeze=False)[:, 0]
    for axes, comparison in zip(panels, budgets, strict=False):
        groups = {"model-based": comparison.model_based_losses, "random": comparison.random_losses}
        losses = [loss for values in groups.values() for loss in values]
        bins = np.histogram_bin_edges(losses, bins=20) if losses else 10
        for label, values in groups.items():
            axes.hist(values, bins=bins, alpha=0.6, color=COLORS[label], label=f"{label} ({len(values)})")
        axes.set_title(f"budget {comparison.budget:g}", fontsize="medium")
        axes.set_ylabel("configurations")
        axes.legend(fontsize="small")
    panels[-1].set_xlabel("loss (validation error)")
    return save_figure(figure, path)
