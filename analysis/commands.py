"""The subcommands beyond ``summary`` and ``incumbent``: curves, budgets, importance, workers, cost,
sweep, report, watch. Each reads its run dir(s), calls the pure analysis, prints a short text answer and
writes its figure (default: into the run dir). :mod:`analysis.__main__` registers them; only the CLI
prints."""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from analysis.budgets import budget_correlations, format_correlations
from analysis.cost import format_cost, training_cost
from analysis.curves import curves_by_parameter, learning_curves
from analysis.data import RunData
from analysis.importance import best_configurations, format_importance, parameter_importance
from analysis.incumbents import MAX_BUDGET, RULES
from analysis.load import load_run
from analysis.space import resolve_parameter, run_parameters
from analysis.summary import format_duration
from analysis.timeline import worker_timeline
from analysis.watch import WatchSettings, watch

EXIT_OK = 0


class UsageError(ValueError):
    """Arguments that parse but do not fit the command (e.g. several run dirs for a one-run command)."""


def last_finite(values: Sequence[float]) -> float | None:
    return next((value for value in reversed(values) if math.isfinite(value)), None)


def load_runs(options: argparse.Namespace) -> dict[str, RunData]:
    """Every run dir, keyed by its label in the output; the first unreadable one raises."""
    paths: list[Path] = options.run_dirs
    labels = run_labels(paths)
    return {
        label: load_run(path, prefer="json", allow_pickle=not options.json_only)
        for label, path in zip(labels, paths, strict=True)
    }


def run_labels(paths: Sequence[Path]) -> list[str]:
    """Directory names when they tell the runs apart, else the paths as given."""
    names = [path.resolve().name or str(path) for path in paths]
    return names if len(set(names)) == len(names) else [str(path) for path in paths]


def one_run(options: argparse.Namespace, command: str) -> RunData:
    paths: list[Path] = options.run_dirs
    if len(paths) != 1:
        raise UsageError(f"{command} takes one run dir, not {len(paths)}")
    return load_run(paths[0], prefer="json", allow_pickle=not options.json_only)


def output_path(options: argparse.Namespace, default_name: str) -> Path:
    """``-o`` or ``RUN_DIR/default_name``; the format is checked before any run is read."""
    from analysis.plots import figure_format

    output: Path = options.output or options.run_dirs[0] / default_name
    figure_format(output)
    return output


def add_output(parameter_parser: argparse.ArgumentParser, default_name: str) -> None:
    parameter_parser.add_argument(
        "-o", "--output", type=Path, help=f"figure file, .png/.svg/.pdf (default: RUN_DIR/{default_name})"
    )


# --- curves -----------------------------------------------------------------------------------------


def add_curves_arguments(parser: argparse.ArgumentParser) -> None:
    add_output(parser, "curves.png, or curves-by-NAME.png with --by")
    parser.add_argument(
        "--by",
        metavar="NAME",
        help="mean curve per value of this hyperparameter (a unique prefix or alias works: lr, bs, opt)",
    )
    parser.add_argument(
        "--bins", type=int, default=4, help="bins for a continuous --by parameter (default 4)"
    )


def run_curves(options: argparse.Namespace) -> int:
    if options.bins < 1:
        raise UsageError("--bins must be at least 1")
    run = one_run(options, "curves")
    if options.by is None:
        from analysis.plot_runs import plot_learning_curves

        output = output_path(options, "curves.png")
        curves = learning_curves(run)
        print(f"{len(curves)} learning curves on budgets {', '.join(f'{b:g}' for b in run.budgets)}")
        plot_learning_curves(curves, output)
        print(f"learning curves: {output}")
        return EXIT_OK
    from analysis.plot_runs import plot_curves_by_parameter

    parameter = resolve_parameter(options.by, run_parameters(run))
    output = output_path(options, f"curves-by-{parameter.name}.png")
    data = curves_by_parameter(run, parameter, options.bins)
    print(f"validation error per epoch by {parameter.name} (mean over configurations, longest curve each)")
    for group in data.groups:
        final = last_finite(group.errors)
        print(
            f"  {group.label:>22}: {group.configs:>4} configs, {len(group.errors):>3} epochs, "
            "last mean " + ("-" if final is None else f"{final:.4f}")
        )
    plot_curves_by_parameter(data, output)
    print(f"curves by {parameter.name}: {output}")
    return EXIT_OK


# --- budgets ----------------------------------------------------------------------------------------


def add_budgets_arguments(parser: argparse.ArgumentParser) -> None:
    add_output(parser, "budgets.png")


def run_budgets(options: argparse.Namespace) -> int:
    from analysis.plot_runs import plot_budget_correlations

    run = one_run(options, "budgets")
    output = output_path(options, "budgets.png")
    correlations = budget_correlations(run)
    print(format_correlations(correlations))
    if len(correlations.budgets) > 1:
        plot_budget_correlations(correlations, output)
        print(f"budget correlations: {output}")
    return EXIT_OK


# --- importance -------------------------------------------------------------------------------------


def add_importance_arguments(parser: argparse.ArgumentParser) -> None:
    add_output(parser, "importance.png (and importance-best.png)")
    parser.add_argument(
        "--budget",
        type=float,
        help="fit on the jobs of this budget only (default: all jobs, budget as an input)",
    )
    parser.add_argument(
        "--best", type=int, default=10, help="configurations in the parallel-coordinates plot"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the forest and the permutations")


def run_importance(options: argparse.Namespace) -> int:
    from analysis.plot_importance import plot_importance, plot_parallel_coordinates

    run = one_run(options, "importance")
    output = output_path(options, "importance.png")
    best_output = output.with_name(f"{output.stem}-best{output.suffix}")
    parameters = run_parameters(run)
    importance = parameter_importance(run, budget=options.budget, seed=options.seed, parameters=parameters)
    print(format_importance(importance))
    plot_importance(run, importance, parameters, output)
    samples, best = best_configurations(run, options.best, parameters)
    plot_parallel_coordinates(samples, best, parameters, best_output)
    print(f"importance and marginals: {output}\nbest configurations: {best_output}")
    return EXIT_OK


# --- workers ----------------------------------------------------------------------------------------


def add_workers_arguments(parser: argparse.ArgumentParser) -> None:
    add_output(parser, "workers.png")
    parser.add_argument(
        "--min-gap", type=float, default=1.0, help="list idle gaps of at least this many seconds (default 1)"
    )


def run_workers(options: argparse.Namespace) -> int:
    from analysis.plot_resources import plot_workers

    run = one_run(options, "workers")
    output = output_path(options, "workers.png")
    timeline = worker_timeline(run)
    if timeline.inferred:
        print("results name no worker: jobs are packed into as many slots as ran at once")
    share = "-" if timeline.busy_share is None else f"{timeline.busy_share:.0%}"
    print(f"{len(timeline.usage)} workers over {format_duration(timeline.span)}, busy {share}")
    for usage in timeline.usage:
        gaps = [gap for gap in usage.gaps if gap[1] - gap[0] >= options.min_gap]
        listed = ", ".join(f"{start:.1f}-{end:.1f} s" for start, end in gaps[:3])
        print(
            f"  {usage.worker}: {usage.jobs} jobs, busy {usage.busy_share:.0%}, idle "
            f"{format_duration(usage.idle_seconds)}" + (f"; longest gaps {listed}" if listed else "")
        )
    plot_workers(timeline, output)
    print(f"workers: {output}")
    return EXIT_OK


# --- cost -------------------------------------------------------------------------------------------


def add_cost_arguments(parser: argparse.ArgumentParser) -> None:
    add_output(parser, "cost.png")


def run_cost(options: argparse.Namespace) -> int:
    from analysis.plot_resources import plot_cost

    run = one_run(options, "cost")
    output = output_path(options, "cost.png")
    cost = training_cost(run)
    print(format_cost(cost))
    plot_cost(cost, output)
    print(f"training cost: {output}")
    return EXIT_OK


# --- sweep ------------------------------------------------------------------------------------------


def add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    add_output(parser, "sweep.png (and sweep-cost.png)")


def run_sweep(options: argparse.Namespace) -> int:
    from analysis.cost import NoCostDataError
    from analysis.plot_resources import plot_cost
    from analysis.plot_sweep import plot_study
    from analysis.sweep import format_device_times, format_study, sweep_study

    run = one_run(options, "sweep")
    output = output_path(options, "sweep.png")
    cost_output = output.with_name(f"{output.stem}-cost{output.suffix}")
    study = sweep_study(run)
    print(format_study(study))
    plot_study(study, output)
    print(f"curves per value and final error against value: {output}")
    try:
        cost = training_cost(run)
    except NoCostDataError as error:
        print(f"no cost figure: {error}")
        return EXIT_OK
    print("training time per epoch, by device:\n" + format_device_times(cost))
    fits = format_cost(cost).splitlines()[1:]
    if fits:
        print("fitted:\n" + "\n".join(fits))
    plot_cost(cost, cost_output)
    print(f"training time per epoch against parameters: {cost_output}")
    return EXIT_OK


# --- report -----------------------------------------------------------------------------------------


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        help="HTML file (default: RUN_DIR/report.html, ./report.html for several)",
    )
    parser.add_argument("--rule", choices=RULES, default=MAX_BUDGET, help="incumbent rule")
    parser.add_argument("--by", metavar="NAME", help="hyperparameter of the curves-by-parameter figure")


def run_report(options: argparse.Namespace) -> int:
    from analysis.report import write_report

    paths: Sequence[Path] = options.run_dirs
    output: Path = options.output or (paths[0] / "report.html" if len(paths) == 1 else Path("report.html"))
    if output.suffix.lower() not in (".html", ".htm"):
        raise UsageError(f"{output}: the report is HTML; use a name ending in .html")
    write_report(load_runs(options), output, rule=options.rule, by=options.by)
    print(f"report: {output}")
    return EXIT_OK


# --- watch ------------------------------------------------------------------------------------------


def add_watch_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--interval", type=float, default=5.0, help="seconds between reads of the logs (default 5)"
    )
    parser.add_argument("--once", action="store_true", help="refresh once and exit")
    parser.add_argument("--rule", choices=RULES, default=MAX_BUDGET, help="incumbent rule")


def run_watch(options: argparse.Namespace) -> int:
    paths: list[Path] = options.run_dirs
    if len(paths) != 1:
        raise UsageError(f"watch takes one run dir, not {len(paths)}")
    if options.interval <= 0:
        raise UsageError("--interval must be positive")
    if paths[0].exists() and not paths[0].is_dir():
        raise UsageError(f"{paths[0]}: not a directory")
    # A run dir that does not exist yet is waited for: watch may start before the master.
    # A last line the master is still writing is normal here, not worth a warning on every refresh.
    logging.getLogger("analysis.load").setLevel(logging.ERROR)
    settings = WatchSettings(paths[0], options.interval, options.once, options.rule)
    print(
        f"watching {paths[0]} every {options.interval:g} s (Ctrl-C stops); plots: incumbents.png, workers.png"
    )

    def report(line: str) -> None:
        print(line, flush=True)

    try:
        watch(settings, report)
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    return EXIT_OK
