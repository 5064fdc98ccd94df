"""Checkpoint continuation: one Hyperband cycle with and without it, same seed, real training.

Runs ``python -m launch.local --optimizer hyperband`` twice (min budget 1, max budget 9 epochs, eta 3, one
full cycle of brackets = 3 iterations, 2 workers), once as is and once with ``--no-continuation``, and
reports for each: the epochs the workers trained (the sum of ``info["epochs_trained"]`` over the results),
the wall time of the launch, and the final incumbent (best validation error on the largest budget, and its
test error); beside them the theoretical epochs of HpBandSter's brackets: every job's budget without
continuation, only each promotion's budget difference with it.

Default data: MNIST's IDX files (``--data-dir``), the first ``--train-limit`` training images, the
``lenet-small`` space (constant learning rate: each budget's result is the same with and without
continuation, so both runs promote the same configurations); falls back to the embedded digits when the
files are missing::

    .venv/bin/python benchmarks/continuation.py                  # ~3 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from hpo_service.brackets import bracket_sizes  # noqa: E402


@dataclass(frozen=True)
class RunSummary:
    label: str
    code: int
    jobs: int
    epochs: int
    resumed: int
    wall_seconds: float
    incumbent: tuple[int, ...] | None
    validation_error: float | None
    test_error: float | None


def theoretical_epochs(
    min_budget: float, max_budget: float, eta: float, n_iterations: int
) -> tuple[int, int]:
    """(with continuation, without) for HpBandSter's brackets when every job succeeds."""
    brackets = bracket_sizes(min_budget, max_budget, eta)
    rungs = len(brackets)
    budgets = [max(1, round(max_budget * eta ** -(rungs - 1 - index))) for index in range(rungs)]
    with_continuation = without = 0
    for iteration in range(n_iterations):
        sizes = brackets[iteration % rungs]
        rung_budgets = budgets[-len(sizes) :]
        previous = [0, *rung_budgets[:-1]]
        without += sum(count * budget for count, budget in zip(sizes, rung_budgets, strict=True))
        with_continuation += sum(
            count * (budget - before)
            for count, budget, before in zip(sizes, rung_budgets, previous, strict=True)
        )
    return with_continuation, without


def launch(run_dir: Path, arguments: list[str], log: Path) -> tuple[int, float]:
    command = [sys.executable, "-m", "launch.local", "--run-dir", str(run_dir), *arguments]
    started = time.perf_counter()
    with open(log, "wb") as output:
        code = subprocess.run(
            command, cwd=REPO, stdout=output, stderr=subprocess.STDOUT, check=False
        ).returncode
    return code, time.perf_counter() - started


def summarise(label: str, run_dir: Path, code: int, wall: float, max_budget: float) -> RunSummary:
    lines = [json.loads(line) for line in (run_dir / "results.json").read_text().splitlines()]
    epochs = resumed = 0
    best: tuple[float, tuple[int, ...], float | None] | None = None
    for config_id, budget, _, result, _ in lines:
        info = (result or {}).get("info") or {}
        epochs += int(info.get("epochs_trained") or 0)
        resumed += info.get("resumed_from_budget") is not None
        loss = (result or {}).get("loss")
        if loss is None or info.get("status") != "ok" or not math.isclose(budget, max_budget):
            continue
        if best is None or loss < best[0]:
            best = (float(loss), tuple(config_id), info.get("test_error"))
    return RunSummary(
        label=label, code=code, jobs=len(lines), epochs=epochs, resumed=resumed, wall_seconds=wall,
        incumbent=best[1] if best else None, validation_error=best[0] if best else None,
        test_error=best[2] if best else None,
    )  # fmt: skip


def percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f} %"


def report(runs: list[RunSummary], theory: tuple[int, int], settings: dict[str, Any], load: float) -> None:
    print(f"\nHyperband {settings}")
    print(f"load average (1 min) before the runs: {load:.2f}\n")
    header = f"{'run':<18}{'exit':>5}{'jobs':>6}{'epochs':>8}{'minimum':>9}{'resumed':>9}{'wall s':>9}"
    print(header + f"{'incumbent':>14}{'val error':>11}{'test error':>12}")
    for run, minimum in zip(runs, theory, strict=True):
        incumbent = "-" if run.incumbent is None else str(run.incumbent).replace(" ", "")
        print(
            f"{run.label:<18}{run.code:>5}{run.jobs:>6}{run.epochs:>8}{minimum:>9}{run.resumed:>9}"
            f"{run.wall_seconds:>9.1f}{incumbent:>14}{percent(run.validation_error):>11}"
            f"{percent(run.test_error):>12}"
        )
    continued, independent = runs
    print(
        f"\nepochs: {continued.epochs} / {independent.epochs} = {continued.epochs / independent.epochs:.3f}"
        f" (theory {theory[0]} / {theory[1]} = {theory[0] / theory[1]:.3f})"
    )
    print(
        f"wall time: {continued.wall_seconds / independent.wall_seconds:.3f} of the run without continuation"
    )
    same = (
        continued.incumbent == independent.incumbent
        and continued.validation_error == independent.validation_error
    )
    print(f"same incumbent and validation error: {same}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--train-limit", type=int, default=5000)
    parser.add_argument("--space", default="lenet-small")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-workers", type=int, default=2)
    parser.add_argument("--max-budget", type=float, default=9.0)
    parser.add_argument("--n-iterations", type=int, default=3, help="3 = one full cycle of brackets for 1..9")
    parser.add_argument("--keep", type=Path, default=None, help="keep the run dirs and logs here")
    args = parser.parse_args(argv)
    settings = {
        "min_budget": 1.0,
        "max_budget": args.max_budget,
        "eta": 3.0,
        "n_iterations": args.n_iterations,
    }
    common = [
        "--optimizer", "hyperband", "--min-budget", "1", "--max-budget", repr(args.max_budget),
        "--eta", "3", "--n-iterations", str(args.n_iterations), "--n-workers", str(args.n_workers),
        "--seed", str(args.seed), "--space", args.space,
    ]  # fmt: skip
    if (args.data_dir / "MNIST" / "raw").is_dir():
        common += [
            "--dataset",
            "mnist",
            "--data-dir",
            str(args.data_dir),
            "--train-limit",
            str(args.train_limit),
        ]
        settings["data"] = f"mnist, first {args.train_limit} training images"
    else:
        print(f"no MNIST under {args.data_dir}: the embedded digits instead", file=sys.stderr)
        settings["data"] = "digits"
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="continuation-") as scratch:
        root = args.keep or Path(scratch)
        root.mkdir(parents=True, exist_ok=True)
        runs = []
        for label, extra in (("continuation", []), ("no continuation", ["--no-continuation"])):
            run_dir = root / label.replace(" ", "-")
            code, wall = launch(run_dir, common + extra, root / f"{run_dir.name}.log")
            print(f"{label}: exit {code} after {wall:.1f} s", file=sys.stderr, flush=True)
            runs.append(summarise(label, run_dir, code, wall, args.max_budget))
    report(runs, theoretical_epochs(1.0, args.max_budget, 3.0, args.n_iterations), settings, load)
    return 0 if all(run.code == 0 for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
