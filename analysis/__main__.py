"""Command line: ``python -m analysis RUN_DIR [RUN_DIR ...]`` (also the console script ``hpo-analysis``).

With run dirs only, it prints each run's summary and writes the incumbent plot. A first argument that
names a subcommand (``summary``, ``incumbent``) runs just that; a run dir named like a subcommand is
written ``./summary``. The only module that prints or configures logging.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from analysis.data import RunData
from analysis.incumbents import MAX_BUDGET, RULES, Trajectory, incumbent_trajectory
from analysis.load import RunDirError, load_run
from analysis.summary import format_config_id, format_summary, summarize

EXIT_OK = 0
EXIT_ERROR = 2
PLOT_NAME = "incumbents.png"

PICKLE_NOTE = """\
results.pkl files are Python pickles, and loading a pickle can run code: they are loaded only from
the run dirs you name, and only numpy values and plain stand-ins for HpBandSter's Result are built
from them (no HpBandSter code runs). Still, name only run dirs you trust, or pass --json-only to read
configs.json + results.json and never open a pickle. Where there is no results.pkl (a run that is
still going) the JSON logs are read anyway."""


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


def run_summary(options: argparse.Namespace) -> int:
    print_summaries(load_runs(options))
    return EXIT_OK


def run_incumbent(options: argparse.Namespace) -> int:
    output = plot_path(options)
    runs = load_runs(options)
    trajectories = {label: incumbent_trajectory(run, options.rule) for label, run in runs.items()}
    for index, (label, trajectory) in enumerate(trajectories.items()):
        if index:
            print()
        print(format_trajectory(label, trajectory))
    write_plot(runs, output, options)
    return EXIT_OK


COMMANDS: dict[str, Command] = {
    "summary": Command(
        "print each run's summary: jobs per budget, failures, incumbent", no_arguments, run_summary
    ),
    "incumbent": Command(
        "print each run's incumbent trajectory and write the incumbent plot", add_plot_options, run_incumbent
    ),
}


# --- helpers ----------------------------------------------------------------------------------------


def load_runs(options: argparse.Namespace) -> dict[str, RunData]:
    """Every run dir, keyed by its label in the output; the first unreadable one raises."""
    paths: list[Path] = options.run_dirs
    labels = run_labels(paths)
    return {
        label: load_run(path, allow_pickle=not options.json_only)
        for label, path in zip(labels, paths, strict=True)
    }


def run_labels(paths: Sequence[Path]) -> list[str]:
    """Directory names when they tell the runs apart, else the paths as given."""
    names = [path.resolve().name or str(path) for path in paths]
    return names if len(set(names)) == len(names) else [str(path) for path in paths]


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
