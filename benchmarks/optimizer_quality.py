"""Search quality by epochs trained: random search, Hyperband, BOHB and BOHB warm-started from a sweep.

Each optimizer runs ``python -m launch.local`` once per seed (K >= 3 seeds) with the same space, data,
budgets and number of workers. Runs are compared by the epochs the workers trained (the cumulative sum of
``info["epochs_trained"]`` in the order the results finished), not by wall time, so a loaded machine
does not change the numbers. A warm-started run's sweep comes first on its epoch axis: the sweep's
epochs are paid for, and its results count like any other.

For each optimizer it prints the median (over seeds) best validation error of any result at 25 %, 50 %
and 100 % of the epoch budget, the epochs needed to first reach each target error ("not reached" where
the median seed does not reach it, with the count of seeds that do), and the ratios to random search;
it draws the anytime curves (median and min-max band over seeds) to a PNG.

Runs already finished in ``--out`` are skipped (a ``benchmark.json`` marks each finished run), so an
interrupted benchmark resumes where it stopped; ``--report-only`` prints the table from what is there::

    .venv/bin/python benchmarks/optimizer_quality.py --out /work/bench-quality      # hours on 2 cores
    .venv/bin/python benchmarks/optimizer_quality.py --out /work/bench-quality --report-only
    .venv/bin/python benchmarks/optimizer_quality.py --quick --out /tmp/quality     # digits, minutes
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from analysis.load import load_run  # noqa: E402
from analysis.plots import new_figure, plain_numbers, save_figure  # noqa: E402
from analysis.provenance import model_provenance  # noqa: E402

MARKER = "benchmark.json"
BASELINE = "randomsearch"
FRACTIONS = (0.25, 0.5, 1.0)


@dataclass(frozen=True)
class Variant:
    """One optimizer as the benchmark runs it: its launch options and, for a warm start, a sweep first."""

    label: str
    arguments: tuple[str, ...]
    sweep: tuple[str, ...] = ()


@dataclass(frozen=True)
class Setup:
    """What every run shares."""

    common: tuple[str, ...]
    variants: tuple[Variant, ...]
    epoch_budget: int


@dataclass(frozen=True)
class Curve:
    """One seed's anytime curve: after each result, the epochs trained so far and the best error so far."""

    epochs: tuple[int, ...]
    best: tuple[float, ...]
    # Epochs trained when BOHB's model dispatched its first configuration (None: it never did).
    first_model_epoch: int | None = None

    def best_at(self, epochs: float) -> float:
        """The best validation error after ``epochs`` epochs (inf before the first finite result)."""
        index = int(np.searchsorted(self.epochs, epochs, side="right"))
        return self.best[index - 1] if index else math.inf

    def epochs_to_reach(self, target: float) -> int | None:
        """The epochs trained when the best error first reached ``target`` (None: never)."""
        for epochs, best in zip(self.epochs, self.best, strict=True):
            if best <= target:
                return epochs
        return None


@dataclass(frozen=True)
class Row:
    """One optimizer's line of the table."""

    label: str
    seeds: int
    errors: tuple[float, ...]  # median best error at each of FRACTIONS of the epoch budget
    reach: tuple[float, ...]  # median epochs to each target (inf: the median seed does not reach it)
    reached: tuple[int, ...]  # seeds that reach each target within the epoch budget
    epochs: tuple[int, ...] = field(default=())  # epochs each seed trained in all
    first_model: tuple[int | None, ...] = field(default=())  # epochs to each seed's first model pick


def full_setup(data_dir: Path, train_limit: int, tuned: Sequence[str]) -> Setup:
    """MNIST, space ``default``, budgets 1-9, eta 3, 2 workers, 189 epochs a run."""
    common = (
        "--space", "default", "--dataset", "mnist", "--data-dir", str(data_dir),
        "--train-limit", str(train_limit), "--min-budget", "1", "--max-budget", "9", "--eta", "3",
        "--n-workers", "2",
    )  # fmt: skip
    # Hyperband's three brackets for 1..9 train 21 + 15 + 27 = 63 epochs (with continuation): 9
    # iterations = 189. Random search trains 3 jobs of 9 epochs an iteration: 7 iterations = 189.
    # The sweep: 24 learning rates for 1 epoch, the fewest results on one budget from which BOHB builds a
    # model in this 11-hyperparameter space (twice hyperparameters + 1: its good and bad KDEs each need
    # more points than dimensions), so the warm-started run has a model before its first sample.
    sweep = ("--optimizer", "sweep", "--vary", "learning_rate=log:0.0001:0.1:24", "--max-budget", "1")
    return Setup(common, standard_variants(7, 9, tuned, sweep), epoch_budget=189)


def quick_setup(tuned: Sequence[str]) -> Setup:
    """The embedded digits, budgets 1-3: a few minutes, to try the script."""
    common = ("--dataset", "digits", "--min-budget", "1", "--max-budget", "3", "--eta", "3")
    sweep = ("--optimizer", "sweep", "--vary", "learning_rate=log:0.001:0.1:6", "--max-budget", "1")
    # Brackets of 1..3 train 5 + 6 = 11 epochs a cycle; random search 2 jobs of 3 epochs an iteration.
    return Setup((*common, "--n-workers", "2"), standard_variants(6, 6, tuned, sweep), epoch_budget=33)


def standard_variants(
    random_iterations: int, hyperband_iterations: int, tuned: Sequence[str], sweep: Sequence[str]
) -> tuple[Variant, ...]:
    def optimizer(name: str, iterations: int) -> tuple[str, ...]:
        return ("--optimizer", name, "--n-iterations", str(iterations))

    bohb = optimizer("bohb", hyperband_iterations)
    return (
        Variant("randomsearch", optimizer("randomsearch", random_iterations)),
        Variant("hyperband", optimizer("hyperband", hyperband_iterations)),
        Variant("bohb", bohb),
        Variant("bohb-tuned", (*bohb, *tuned)),
        Variant("bohb-warm", (*bohb, *tuned), sweep=tuple(sweep)),
    )


# --- running -----------------------------------------------------------------------------------------


def run_dirs(out: Path, variant: Variant, seed: int) -> list[Path]:
    """The run directories of one seed of ``variant``, in the order they train (a sweep first)."""
    base = out / f"{variant.label}-seed{seed}"
    return [base / "sweep", base / "search"] if variant.sweep else [base]


def launch_once(run_dir: Path, arguments: Sequence[str], log: Path) -> int:
    """Run ``launch.local`` into ``run_dir`` unless a finished run is already there; its exit code."""
    marker = run_dir / MARKER
    if marker.is_file():
        return int(json.loads(marker.read_text())["exit_code"])
    if run_dir.exists():  # interrupted: start it again
        shutil.rmtree(run_dir)
    command = [sys.executable, "-m", "launch.local", "--run-dir", str(run_dir), *arguments]
    started = time.perf_counter()
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as output:
        code = subprocess.run(
            command, cwd=REPO, stdout=output, stderr=subprocess.STDOUT, check=False
        ).returncode
    record = {"exit_code": code, "wall_seconds": time.perf_counter() - started, "command": command}
    if run_dir.is_dir():
        marker.write_text(json.dumps(record, indent=1) + "\n")
    return code


def run_variant_seed(out: Path, setup: Setup, variant: Variant, seed: int) -> int:
    """Train one seed of one variant (its sweep first); the first non-zero exit code, else 0."""
    seed_options = ("--seed", str(seed))
    directories = run_dirs(out, variant, seed)
    if variant.sweep:
        sweep_dir, search_dir = directories
        code = launch_once(
            sweep_dir, (*setup.common, *seed_options, *variant.sweep), sweep_dir.with_suffix(".log")
        )
        if code:
            return code
        arguments = (*setup.common, *seed_options, *variant.arguments, "--warm-start", str(sweep_dir))
        return launch_once(search_dir, arguments, search_dir.with_suffix(".log"))
    (run_dir,) = directories
    return launch_once(
        run_dir, (*setup.common, *seed_options, *variant.arguments), run_dir.with_suffix(".log")
    )


# --- computations ------------------------------------------------------------------------------------


def run_curve(directories: Sequence[Path]) -> Curve:
    """The anytime curve of runs trained one after the other (a warm start's sweep, then its search)."""
    epochs: list[int] = []
    best: list[float] = []
    total, so_far = 0, math.inf
    first_model: int | None = None
    for directory in directories:
        run = load_run(directory, prefer="json")
        first_pick = model_provenance(run).first_pick
        if first_pick is not None and first_model is None:
            first_model = total + first_pick.epochs_before
        for job in sorted(run.jobs, key=lambda job: job.finished):
            total += int(job.info.get("epochs_trained") or 0)
            if job.loss is not None and job.status == "ok":
                so_far = min(so_far, job.loss)
            epochs.append(total)
            best.append(so_far)
    return Curve(tuple(epochs), tuple(best), first_model)


def median_with_inf(values: Sequence[float]) -> float:
    """The median where inf (not reached, no result yet) counts as worse than any number."""
    return float(np.median(np.asarray(values, dtype=float))) if values else math.nan


def summarise(label: str, curves: Sequence[Curve], epoch_budget: int, targets: Sequence[float]) -> Row:
    """The table row of one optimizer's seeds; epochs beyond ``epoch_budget`` are not counted."""
    errors = tuple(
        median_with_inf([curve.best_at(fraction * epoch_budget) for curve in curves])
        for fraction in FRACTIONS
    )
    reach_by_target = [
        [reach if (reach := curve.epochs_to_reach(target)) is not None and reach <= epoch_budget else math.inf
         for curve in curves]
        for target in targets
    ]  # fmt: skip
    return Row(
        label=label,
        seeds=len(curves),
        errors=errors,
        reach=tuple(median_with_inf(values) for values in reach_by_target),
        reached=tuple(sum(math.isfinite(value) for value in values) for values in reach_by_target),
        epochs=tuple(curve.epochs[-1] if curve.epochs else 0 for curve in curves),
        first_model=tuple(curve.first_model_epoch for curve in curves),
    )


def ratio(value: float, baseline: float) -> str:
    if not (math.isfinite(value) and math.isfinite(baseline)) or baseline == 0:
        return "-"
    return f"{value / baseline:.2f}"


def format_table(rows: Sequence[Row], epoch_budget: int, targets: Sequence[float]) -> str:
    """A Markdown table: errors at 25/50/100 % of the budget, epochs to each target, ratios to random."""
    baseline = next((row for row in rows if row.label == BASELINE), None)
    header = ["optimizer", "seeds", "epochs trained", "first model pick @ epoch"]
    header += [f"best val. error @ {round(fraction * epoch_budget)} ep." for fraction in FRACTIONS]
    header += [f"epochs to {100 * target:.1f} %" for target in targets]
    header += [f"ratio to random: error @ {epoch_budget}"] + [
        f"ratio: epochs to {100 * t:.1f} %" for t in targets
    ]
    lines = ["| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 1) + "|"]
    for row in rows:
        cells = [row.label, str(row.seeds), "/".join(str(epochs) for epochs in row.epochs)]
        cells.append("/".join("-" if epochs is None else str(epochs) for epochs in row.first_model))
        cells += [percent(error) for error in row.errors]
        cells += [
            (f"{reach:.0f}" if math.isfinite(reach) else "not reached") + f" ({reached}/{row.seeds})"
            for reach, reached in zip(row.reach, row.reached, strict=True)
        ]
        cells.append(ratio(row.errors[-1], baseline.errors[-1]) if baseline else "-")
        cells += [
            ratio(reach, base)
            for reach, base in zip(row.reach, baseline.reach if baseline else (), strict=False)
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def percent(value: float) -> str:
    return f"{100 * value:.2f} %" if math.isfinite(value) else "-"


def band(curves: Sequence[Curve], grid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(median, min, max) over seeds of the best error at each epoch of ``grid``; nan where the value
    would be "no result yet" (inf), so the median starts once half the seeds have a result."""
    values = np.array([[curve.best_at(epochs) for epochs in grid] for curve in curves], dtype=float)
    statistics = np.median(values, axis=0), values.min(axis=0), values.max(axis=0)
    for statistic in statistics:
        statistic[~np.isfinite(statistic)] = np.nan
    return statistics


def plot_curves(
    curves: Mapping[str, Sequence[Curve]], epoch_budget: int, targets: Sequence[float], path: Path, title: str
) -> Path:
    """Median and min-max band of each optimizer's anytime curve, log error axis, target lines."""
    figure = new_figure(9.0, 5.5)
    axes = figure.add_subplot()
    grid = np.arange(0, epoch_budget + 1)
    lowest, early = math.inf, 0.0
    for label, seeds in curves.items():
        median, low, high = band(seeds, grid)
        (line,) = axes.step(grid, 100 * median, where="post", label=f"{label} (median of {len(seeds)})")
        axes.fill_between(grid, 100 * low, 100 * high, step="post", alpha=0.15, color=line.get_color())
        lowest = min(lowest, float(np.nanmin(low, initial=math.inf)))
        early = max(early, float(np.nan_to_num(median[len(grid) // 4])))
    for target in targets:
        axes.axhline(100 * target, color="grey", linestyle=":", linewidth=1, label=f"{100 * target:g} %")
    axes.set_yscale("log")
    plain_numbers(axes.yaxis)
    # The first epochs (a sweep's first learning rates, 1-epoch jobs) reach 90 %: cut the axis above the
    # median errors at a quarter of the budget, so the differences near the targets stay readable.
    top = 100 * max(5 * max(targets, default=0.0), 1.5 * early)
    if math.isfinite(lowest) and top > 100 * lowest:
        axes.set_ylim(100 * min(lowest, min(targets, default=lowest)) * 0.9, top)
    axes.set_xlim(0, epoch_budget)
    axes.set_xlabel("epochs trained (all workers, cumulative)")
    axes.set_ylabel("best validation error so far (%)")
    axes.set_title(title)
    axes.legend()
    axes.grid(True, which="both", alpha=0.3)
    return save_figure(figure, path)


# --- command line ------------------------------------------------------------------------------------


def collect(out: Path, setup: Setup, labels: Sequence[str], seeds: Sequence[int]) -> dict[str, list[Curve]]:
    """The curves of every finished run in ``out`` (unfinished or failed runs are left out)."""
    curves: dict[str, list[Curve]] = {}
    for variant in setup.variants:
        if variant.label not in labels:
            continue
        for seed in seeds:
            directories = run_dirs(out, variant, seed)
            markers = [directory / MARKER for directory in directories]
            if all(
                marker.is_file() and json.loads(marker.read_text())["exit_code"] == 0 for marker in markers
            ):
                curves.setdefault(variant.label, []).append(run_curve(directories))
    return curves


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="run dirs, logs, table and figure go here")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=None, help="labels to run (default: all)")
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--train-limit", type=int, default=10000)
    parser.add_argument(
        "--tuned", default="--random-fraction 0.2 --bandwidth-factor 1.5",
        help="the BOHB options of bohb-tuned and bohb-warm, as one string",
    )  # fmt: skip
    parser.add_argument("--targets", type=float, nargs="+", default=[0.02, 0.018], help="validation errors")
    parser.add_argument("--figure", type=Path, default=None, help="default: OUT/optimizer-quality.png")
    parser.add_argument("--quick", action="store_true", help="digits, budgets 1-3: minutes, to try it")
    parser.add_argument("--report-only", action="store_true", help="run nothing; table and figure of OUT")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    tuned = args.tuned.split()
    setup = quick_setup(tuned) if args.quick else full_setup(args.data_dir, args.train_limit, tuned)
    labels = args.variants or [variant.label for variant in setup.variants]
    unknown = sorted(set(labels) - {variant.label for variant in setup.variants})
    if unknown:
        print(f"--variants: unknown {', '.join(unknown)}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    chosen = [variant for variant in setup.variants if variant.label in labels]  # run in --variants order
    failures = 0
    if not args.report_only:
        for seed in args.seeds:  # seed by seed, so a benchmark cut short has every optimizer on seed 0
            for variant in sorted(chosen, key=lambda variant: labels.index(variant.label)):
                code = run_variant_seed(args.out, setup, variant, seed)
                print(f"{variant.label} seed {seed}: exit {code}", file=sys.stderr, flush=True)
                failures += code != 0
    curves = collect(args.out, setup, labels, args.seeds)
    rows = [summarise(label, seeds, setup.epoch_budget, args.targets) for label, seeds in curves.items()]
    table = format_table(rows, setup.epoch_budget, args.targets)
    (args.out / "table.md").write_text(table + "\n")
    print(table)
    if curves:
        figure = args.figure or args.out / "optimizer-quality.png"
        title = "digits, budgets 1-3" if args.quick else f"MNIST ({args.train_limit} images), budgets 1-9"
        print(f"figure: {plot_curves(curves, setup.epoch_budget, args.targets, figure, title)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
