"""Command line: ``python -m analysis RUN_DIR [RUN_DIR ...]`` (also the console script ``hpo-analysis``).

With run dirs only, it prints each run's summary and writes the incumbent plot. A first argument that
names a subcommand (``summary``, ``incumbent``, ``curves``, ``budgets``, ``importance``, ``workers``,
``cost``, ``sweep``, ``report``, ``watch``, ``serve``; see docs/analysis.md) runs just that; a run dir
named like a subcommand is written ``./summary``. The command-line modules (this one, :mod:`analysis.commands`
and ``analysis.dashboard.command``) print; this is the only one that configures logging. The computing and
plotting modules only return.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from analysis import commands
from analysis.commands import last_finite, load_runs
from analysis.dashboard.command import add_serve_arguments, run_serve
from analysis.data import RunData
from analysis.incumbents import MAX_BUDGET, RULES, Trajectory, incumbent_trajectory
from analysis.load import RunDirError
from analysis.summary import format_config_id, format_summary, summarize

EXIT_OK = 0
EXIT_ERROR = 2
PLOT_NAME = "incumbents.png"

PICKLE_NOTE = """\
The JSON logs configs.json + results.json are read by default. results.pkl files are Python pickles,
and loading a pickle can run code: one is opened only in a run dir you name on the command line that
has no JSON logs (e.g. from a plain HpBandSter script), and only numpy values and plain stand-ins for
HpBandSter's Result are built from it (no HpBandSter code runs). Still, name only run dirs you trust,
or pass --json-only to never open a pickle."""


@dataclass(frozen=True)
class Command:
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    name = arguments.pop(0) if arguments and arguments[0] in COMMANDS else None
    parser = build_parser(name)
    try:
        options = parser.parse_args(arguments)
    except SystemExit as exit_request:  # --help, or a usage error (argparse exits with 2)
        return exit_request.code if isinstance(exit_request.code, int) else EXIT_ERROR
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(name)s: %(message)s")
    if options.verbose:
        logging.getLogger("analysis").setLevel(logging.DEBUG)
    try:
        return options.run(options)
    except BrokenPipeError:  # e.g. piped into head: stop quietly
        silence_stdout()
        return EXIT_ERROR
    except (RunDirError, ValueError, OSError) as error:
        if options.verbose:
            logging.getLogger(__name__).exception("failed")
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return EXIT_ERROR


def silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


# --- parsers ----------------------------------------------------------------------------------------


def program_name() -> str:
    return "hpo-analysis" if Path(sys.argv[0]).name == "hpo-analysis" else "python -m analysis"


def build_parser(command: str | None) -> argparse.ArgumentParser:
    """The parser of ``command``, or of the default (summary + incumbent plot) when ``None``."""
    prog = program_name()
    if command is None:
        listing = "\n".join(f"  {name:<10} {entry.help}" for name, entry in COMMANDS.items())
        parser = argparse.ArgumentParser(
            prog=prog,
            usage=f"{prog} RUN_DIR [RUN_DIR ...] [options]\n"
            f"       {prog} COMMAND RUN_DIR [RUN_DIR ...] [options]",
            description="Summarise HpBandSter run directories and plot their incumbent trajectories.\n"
            "With run dirs only: print each run's summary and write the incumbent plot.",
            epilog=f"commands ({prog} COMMAND --help):\n{listing}\n\n{PICKLE_NOTE}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        add_run_dirs(parser)
        add_plot_options(parser)
        parser.set_defaults(run=run_default)
        return parser
    entry = COMMANDS[command]
    parser = argparse.ArgumentParser(
        prog=f"{prog} {command}",
        description=entry.help,
        epilog=PICKLE_NOTE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_dirs(parser)
    entry.add_arguments(parser)
    parser.set_defaults(run=entry.run)
    return parser


def add_run_dirs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR", help="run directory")
    parser.add_argument(
        "--json-only", action="store_true", help="read only the JSON logs; never open results.pkl"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log details (and tracebacks)")


def add_plot_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        help=f"figure file, .png/.svg/.pdf (default: RUN_DIR/{PLOT_NAME} for one run dir, "
        f"./{PLOT_NAME} for several)",
    )
    parser.add_argument(
        "--rule",
        choices=RULES,
        default=MAX_BUDGET,
        help="which jobs can be incumbent: only those on the largest budget with a result "
        "(HpBandSter's rule, default) or those on any budget",
    )
    parser.add_argument("--test", action="store_true", help="also plot the incumbents' test error")
    parser.add_argument("--linear", action="store_true", help="linear loss axis (default: log)")


def no_arguments(parser: argparse.ArgumentParser) -> None:
    del parser


# --- commands ---------------------------------------------------------------------------------------


def run_default(options: argparse.Namespace) -> int:
    output = plot_path(options)
    runs = load_runs(options)
    print_summaries(runs)
    write_plot(runs, output, options)
    return EXIT_OK


def add_summary_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--csv", type=Path, metavar="FILE", help="also write every job of every run as CSV ('-': stdout only)"
    )
    parser.add_argument(
        "--json",
        type=Path,
        metavar="FILE",
        help="also write each run's summary and jobs as JSON ('-': stdout only)",
    )


def run_summary(options: argparse.Namespace) -> int:
    from analysis.export import to_csv, to_json

    runs = load_runs(options)
    exports = [(options.csv, to_csv), (options.json, to_json)]
    to_stdout = any(path is not None and str(path) == "-" for path, _ in exports)
    if not to_stdout:
        print_summaries(runs)
    for path, export in exports:
        if path is None:
            continue
        text = export(runs)
        if str(path) == "-":
            sys.stdout.write(text)
        else:
            Path(path).write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    return EXIT_OK


def add_incumbent_arguments(parser: argparse.ArgumentParser) -> None:
    add_plot_options(parser)
    parser.add_argument(
        "--group-by",
        choices=("optimizer", "dataset"),
        help="one median line and interquartile band per group of runs (e.g. seeds of each optimizer)",
    )


def run_incumbent(options: argparse.Namespace) -> int:
    output = plot_path(options)
    runs = load_runs(options)
    if options.group_by:
        return run_grouped_incumbent(options, runs, output)
    trajectories = {label: incumbent_trajectory(run, options.rule) for label, run in runs.items()}
    for index, (label, trajectory) in enumerate(trajectories.items()):
        if index:
            print()
        print(format_trajectory(label, trajectory))
    write_plot(runs, output, options)
    return EXIT_OK


def run_grouped_incumbent(options: argparse.Namespace, runs: dict[str, RunData], output: Path) -> int:
    from analysis.groups import group_trajectories
    from analysis.plot_runs import plot_group_trajectories

    bands = group_trajectories(runs, options.rule, key=options.group_by)
    for band in bands:
        final = last_finite(band.median)
        final_text = "-" if final is None else f"{final:.4f}"
        print(f"{band.group}: {band.runs} runs, final median incumbent loss {final_text}")
    plot_group_trajectories(bands, output, rule=options.rule, log_scale=not options.linear)
    print(f"incumbent plot ({options.rule}, median and interquartile range by {options.group_by}): {output}")
    return EXIT_OK


COMMANDS: dict[str, Command] = {
    "summary": Command(
        "print each run's summary: jobs per budget, workers, failures, incumbent; --csv/--json export",
        add_summary_arguments,
        run_summary,
    ),
    "incumbent": Command(
        "print each run's incumbent trajectory and write the incumbent plot (--group-by optimizer: bands)",
        add_incumbent_arguments,
        run_incumbent,
    ),
    "curves": Command(
        "learning curves by budget, or by a hyperparameter's values (--by lr)",
        commands.add_curves_arguments,
        commands.run_curves,
    ),
    "budgets": Command(
        "Spearman rank correlation of losses between budgets (warns below 0.2)",
        commands.add_budgets_arguments,
        commands.run_budgets,
    ),
    "importance": Command(
        "which hyperparameters matter (random-forest surrogate), marginals, best configurations",
        commands.add_importance_arguments,
        commands.run_importance,
    ),
    "workers": Command(
        "jobs per worker over time (Gantt), busy share, idle gaps",
        commands.add_workers_arguments,
        commands.run_workers,
    ),
    "cost": Command(
        "training time per epoch against model size, per device",
        commands.add_cost_arguments,
        commands.run_cost,
    ),
    "sweep": Command(
        "a sweep or grid: curves per value with bands, final error against value, time against size",
        commands.add_sweep_arguments,
        commands.run_sweep,
    ),
    "report": Command(
        "one self-contained HTML page with all of the above",
        commands.add_report_arguments,
        commands.run_report,
    ),
    "watch": Command(
        "follow a running run: redraw incumbents.png and workers.png, print a status line",
        commands.add_watch_arguments,
        commands.run_watch,
    ),
    "serve": Command(
        "live web dashboard of running and finished runs (RUN_DIR may be a directory of runs)",
        add_serve_arguments,
        run_serve,
    ),
}


# --- helpers ----------------------------------------------------------------------------------------


def plot_path(options: argparse.Namespace) -> Path:
    """Where the plot goes; its format is checked before any run is read."""
    from analysis.plots import figure_format

    output: Path = options.output or (
        options.run_dirs[0] / PLOT_NAME if len(options.run_dirs) == 1 else Path(PLOT_NAME)
    )
    figure_format(output)
    return output


def write_plot(runs: dict[str, RunData], output: Path, options: argparse.Namespace) -> None:
    from analysis.plots import plot_incumbents

    trajectories = {label: incumbent_trajectory(run, options.rule) for label, run in runs.items()}
    plot_incumbents(trajectories, output, log_scale=not options.linear, with_test=options.test)
    print(f"incumbent plot ({options.rule}): {output}")


def print_summaries(runs: dict[str, RunData]) -> None:
    for index, run in enumerate(runs.values()):
        if index:
            print()
        print(format_summary(summarize(run)))


def format_trajectory(label: str, trajectory: Trajectory) -> str:
    lines = [f"{label}: incumbent trajectory ({trajectory.rule}), run ends at {trajectory.end_time:.1f} s"]
    if not len(trajectory):
        lines.append("  no job with a finite loss")
        return "\n".join(lines)
    lines.append(f"{'time [s]':>10}  {'loss':>8}  {'test':>8}  {'budget':>8}  config")
    for time, loss, test, budget, config_id in zip(
        trajectory.times,
        trajectory.losses,
        trajectory.test_losses,
        trajectory.budgets,
        trajectory.config_ids,
        strict=True,
    ):
        test_text = "-" if test is None else f"{test:.4f}"
        lines.append(
            f"{time:>10.1f}  {loss:>8.4f}  {test_text:>8}  {budget:>8g}  {format_config_id(config_id)}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
