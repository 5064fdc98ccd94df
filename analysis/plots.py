"""Figures. This module and the ``plot_*`` modules are the ones that touch matplotlib; they use the Agg
canvas directly (no pyplot), so no window opens and the backend of a program that imports
:mod:`analysis` is left alone. Shared helpers live here, with the incumbent plot."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import Formatter

from analysis.incumbents import Trajectory

logger = logging.getLogger(__name__)

# File name suffix -> matplotlib format.
FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}


class UnsupportedFormatError(ValueError):
    """The output file's suffix names no format we write."""


def figure_format(path: Path) -> str:
    """The format for ``path`` from its suffix (``.png``, ``.svg``, ``.pdf``)."""
    try:
        return FORMATS[Path(path).suffix.lower()]
    except KeyError:
        raise UnsupportedFormatError(
            f"{path}: cannot tell the figure format; use a name ending in {', '.join(FORMATS)}"
        ) from None


def new_figure(width: float = 8.0, height: float = 5.0) -> Figure:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure: Figure, path: Path) -> Path:
    """Write ``figure`` to ``path`` in the format its suffix names, atomically: readers (a browser, an
    image viewer refreshing while ``watch`` redraws) never see a half-written file."""
    path = Path(path)
    file_format = figure_format(path)
    temporary = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        figure.savefig(temporary, format=file_format)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    logger.info("wrote %s", path)
    return path


# Most points a scatter or line plot draws; beyond that a figure shows no more and renders slowly.
MAX_DRAWN = 1500


def drawn_subset(count: int, limit: int = MAX_DRAWN, seed: int = 0) -> list[int]:
    """Indices of the items to draw: all when ``count <= limit``, else a fixed random ``limit`` of them,
    in their order."""
    if count <= limit:
        return list(range(count))
    import numpy as np

    return sorted(np.random.default_rng(seed).choice(count, limit, replace=False).tolist())


def step_points(
    times: Sequence[float], values: Sequence[float | None], end_time: float
) -> tuple[list[float], list[float]]:
    """Points of a post-step line that holds the last value until ``end_time``; ``None`` becomes NaN."""
    xs = list(times)
    ys = [math.nan if value is None else value for value in values]
    if xs and end_time > xs[-1]:
        xs.append(end_time)
        ys.append(ys[-1])
    return xs, ys


class PlainNumbers(Formatter):
    """Labels the ticks that ``inner`` labels, as plain numbers (0.08 rather than 8 x 10^-2)."""

    def __init__(self, inner: Formatter) -> None:
        self.inner = inner

    def set_axis(self, axis: Any) -> None:
        super().set_axis(axis)
        self.inner.set_axis(axis)

    def set_locs(self, locs: list[float]) -> None:
        super().set_locs(locs)
        self.inner.set_locs(locs)

    def __call__(self, x: float, pos: int | None = None) -> str:
        return f"{x:.3g}" if self.inner(x, pos) else ""


def plain_numbers(axis: Any) -> None:
    """Label a log ``axis`` with plain numbers (0.08, 0.1) rather than 8 x 10^-2: losses and times rarely
    span many decades."""
    axis.set_major_formatter(PlainNumbers(axis.get_major_formatter()))
    axis.set_minor_formatter(PlainNumbers(axis.get_minor_formatter()))


def plot_incumbents(
    trajectories: Mapping[str, Trajectory], path: Path, *, log_scale: bool = True, with_test: bool = False
) -> Path:
    """Write the incumbent trajectories, one labelled step line per run, to ``path`` (PNG, SVG or PDF).

    With ``with_test`` each run also gets a dashed line of its incumbents' test error. A log loss axis is
    used only when every plotted value is positive.
    """
    path = Path(path)
    figure_format(path)
    figure = new_figure()
    axes = figure.add_subplot()
    plotted: list[float] = []
    for index, (label, trajectory) in enumerate(trajectories.items()):
        color = f"C{index % 10}"
        if not len(trajectory):
            logger.warning("%s: no job with a finite loss; nothing to plot", label)
            axes.plot([], [], color=color, label=f"{label} (no finite loss)")
            continue
        xs, ys = step_points(trajectory.times, trajectory.losses, trajectory.end_time)
        axes.step(xs, ys, where="post", color=color, label=label)
        axes.plot(trajectory.times, trajectory.losses, "o", color=color, markersize=3)
        plotted.extend(ys)
        if with_test:
            test_xs, test_ys = step_points(trajectory.times, trajectory.test_losses, trajectory.end_time)
            if all(math.isnan(value) for value in test_ys):
                logger.warning("%s: no test error in the incumbents' info", label)
                continue
            axes.step(test_xs, test_ys, where="post", color=color, linestyle="--", label=f"{label} (test)")
            plotted.extend(value for value in test_ys if not math.isnan(value))
    if log_scale and plotted:
        if min(plotted) > 0:
            axes.set_yscale("log")
            plain_numbers(axes.yaxis)
        else:
            logger.warning("a loss is not positive; using a linear loss axis")
    rules = {trajectory.rule for trajectory in trajectories.values()}
    title = "incumbent" + (f" ({rules.pop()})" if len(rules) == 1 else "")
    axes.set_title(title)
    axes.set_xlabel("wall time since first submission [s]")
    axes.set_ylabel("validation loss" + (" / test error" if with_test else ""))
    axes.grid(True, which="both", alpha=0.3)
    if trajectories:
        axes.legend()
    return save_figure(figure, path)
