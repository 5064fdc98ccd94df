"""Figures of what the run cost: jobs per worker over time (Gantt), training time against model size."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from analysis.cost import TrainingCost
from analysis.plot_runs import budget_colors
from analysis.plots import drawn_subset, figure_format, new_figure, plain_numbers, save_figure
from analysis.timeline import WorkerTimeline

FAILED_COLOR = "tab:red"


def plot_workers(timeline: WorkerTimeline, path: Path) -> Path:
    """One row per worker, a bar per job coloured by budget (failed jobs red), busy share on the label."""
    figure_format(path)
    budgets = sorted({interval.budget for interval in timeline.intervals})
    colormap, _ = budget_colors(budgets)
    position = {budget: index for index, budget in enumerate(budgets)}
    rows = max(len(timeline.usage), 1)
    figure = new_figure(10.0, min(1.5 + 0.4 * rows, 30.0))
    axes = figure.add_subplot()
    for row, usage in enumerate(timeline.usage):
        intervals = [interval for interval in timeline.intervals if interval.worker == usage.worker]
        # One broken_barh per worker: a single collection even for thousands of jobs.
        colors = [
            FAILED_COLOR if interval.status != "ok" else colormap(position[interval.budget])
            for interval in intervals
        ]
        spans = [(interval.started, interval.finished - interval.started) for interval in intervals]
        axes.broken_barh(spans, (row - 0.4, 0.8), facecolors=colors, edgecolor="white", linewidth=0.3)
    axes.set_yticks(
        range(len(timeline.usage)),
        [f"{usage.worker} ({usage.busy_share:.0%})" for usage in timeline.usage],
    )
    axes.invert_yaxis()
    axes.set_xlim(0, max(timeline.span, 1e-9))
    for budget in budgets:
        axes.bar(0, 0, color=colormap(position[budget]), label=f"budget {budget:g}")
    if any(interval.status != "ok" for interval in timeline.intervals):
        axes.bar(0, 0, color=FAILED_COLOR, label="not ok")
    share = timeline.busy_share
    kind = "slot (results name no worker)" if timeline.inferred else "worker"
    axes.set_title(f"jobs per {kind}" + ("" if share is None else f": busy {share:.0%} of the wall time"))
    axes.set_xlabel("wall time since first submission [s]")
    if budgets:
        axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    return save_figure(figure, path)


def plot_cost(cost: TrainingCost, path: Path) -> Path:
    """Seconds per epoch against trainable parameters, log-log, one colour and fitted line per device (the
    fit uses every job; at most :data:`~analysis.plots.MAX_DRAWN` per device are drawn)."""
    figure_format(path)
    figure = new_figure()
    axes = figure.add_subplot()
    fits = {fit.device: fit for fit in cost.fits}
    for index, device in enumerate(cost.devices):
        color = f"C{index % 10}"
        on_device = [point for point in cost.points if point.device == device]
        points = [on_device[index] for index in drawn_subset(len(on_device))]
        parameters = np.array([point.parameters for point in points], dtype=float)
        axes.scatter(
            parameters,
            [point.seconds_per_epoch for point in points],
            s=12,
            color=color,
            alpha=0.7,
            label=device,
        )
        fit = fits.get(device)
        if fit is not None:
            line = np.geomspace(parameters.min(), parameters.max(), 50)
            axes.plot(
                line,
                fit.factor * line**fit.exponent,
                color=color,
                linestyle="--",
                label=f"{device}: ~ parameters^{fit.exponent:.2f}",
            )
    axes.set_xscale("log")
    axes.set_yscale("log")
    plain_numbers(axes.yaxis)
    axes.set_xlabel("trainable parameters")
    axes.set_ylabel("training time per epoch [s]")
    axes.set_title("training cost against model size")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize="small")
    return save_figure(figure, path)
