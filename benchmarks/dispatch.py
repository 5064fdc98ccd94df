"""Dispatch overhead: how long workers sit idle between jobs, ours against stock HpBandSter, one run.

Three parts (see ``benchmarks/README.md`` for the latest numbers):

1. *Trivial jobs* (workers sleep 0 s) with 1, 4, 16 and 64 workers, BOHB and random search, ours and
   stock interleaved: jobs per second, median and 95th-percentile idle gap between a worker's consecutive
   jobs (from HpBandSter's ``started``/``finished`` time stamps), worker utilisation, the master's CPU time
   per job, and how long after the last result everything has shut down.
2. *1-second jobs* with 4 workers: utilisation (busy time over workers x span).
3. *End to end*: a real small run (``python -m launch.local`` on the embedded digits dataset, 4 workers),
   busy share as :func:`analysis.timeline.worker_timeline` computes it, first job after launch, and the
   time from the last result to the launcher's exit.

How each measurement is set up (two processes, our classes vs HpBandSter's) is in
``benchmarks/sleep_search.py``. Run from the repository root::

    .venv/bin/python benchmarks/dispatch.py             # about 6 minutes on 2 cores
    .venv/bin/python benchmarks/dispatch.py --quick     # about 1.5 minutes: fewer jobs, no 64 workers
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sleep_search import REPO, SearchSpec, Summary, measure

from hpo_service.brackets import planned_jobs

# Acceptance (issue 4, "Done when" 3): ours on trivial jobs with 4 workers, and 1-second jobs.
BOHB_GAP_LIMIT = 0.030
RANDOM_GAP_LIMIT = 0.010
UTILISATION_FLOOR = 0.95
END_LATENCY_LIMIT = 1.0  # "a run ends promptly when its last job ends"


@dataclass(frozen=True)
class Pair:
    """Median over repeats of the stock and of our summaries of one setting."""

    stock: list[Summary]
    ours: list[Summary]

    def median(self, variant: str, value: Callable[[Summary], float]) -> float:
        return statistics.median(value(summary) for summary in getattr(self, variant))


def iterations_for(optimizer: str, jobs: int, multiple_of: int = 1) -> int:
    """The fewest iterations with at least ``jobs`` jobs (a multiple of ``multiple_of`` for random search,
    so that no round of jobs leaves workers idle at the end)."""
    iterations = 1
    while True:
        planned = planned_jobs(optimizer, 1.0, 9.0, 3.0, iterations)
        if planned >= jobs and (optimizer != "randomsearch" or planned % multiple_of == 0):
            return iterations
        iterations += 1


def measure_pair(spec: SearchSpec, repeats: int, log: Callable[[str], None]) -> Pair:
    """Stock and ours ``repeats`` times each, alternating which goes first."""
    stock, ours = [], []
    for repeat in range(repeats):
        order = ("stock", "ours") if repeat % 2 == 0 else ("ours", "stock")
        for variant in order:
            summary = measure(SearchSpec(**{**spec.__dict__, "variant": variant}))
            (stock if variant == "stock" else ours).append(summary)
            log(
                f"  {variant:5s} {spec.optimizer:12s} {spec.n_workers:2d} workers, {summary.jobs} jobs: "
                f"{summary.jobs_per_second:6.0f} jobs/s, gap median {ms(summary.gap_median)} ms"
            )
    return Pair(stock, ours)


def ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1e3:.1f}"


def ratio(stock: float, ours: float) -> str:
    return "-" if not ours or math.isnan(stock) or math.isnan(ours) else f"{stock / ours:.1f}x"


def trivial_table(results: dict[tuple[str, int], Pair]) -> list[str]:
    lines = [
        "| optimizer | workers | jobs | jobs/s stock | jobs/s ours | gap median ms stock | ours | stock/ours "
        "| gap p95 ms stock | ours | utilisation stock | ours | master CPU/job ms stock | ours "
        "| end s stock | ours |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (optimizer, workers), pair in results.items():
        values = {
            variant: {
                "rate": pair.median(variant, lambda s: s.jobs_per_second),
                "gap": pair.median(variant, lambda s: s.gap_median),
                "p95": pair.median(variant, lambda s: s.gap_p95),
                "util": pair.median(variant, lambda s: s.utilisation),
                "cpu": pair.median(variant, lambda s: s.master_cpu_per_job),
                "end": pair.median(variant, lambda s: s.end_latency),
            }
            for variant in ("stock", "ours")
        }
        stock, ours = values["stock"], values["ours"]
        lines.append(
            f"| {optimizer} | {workers} | {pair.ours[0].jobs} | {stock['rate']:.0f} | {ours['rate']:.0f} "
            f"| {ms(stock['gap'])} | {ms(ours['gap'])} | {ratio(stock['gap'], ours['gap'])} "
            f"| {ms(stock['p95'])} | {ms(ours['p95'])} | {stock['util']:.1%} | {ours['util']:.1%} "
            f"| {ms(stock['cpu'])} | {ms(ours['cpu'])} | {stock['end']:.2f} | {ours['end']:.2f} |"
        )
    return lines


def long_table(results: dict[str, Pair], job_seconds: float) -> list[str]:
    lines = [
        f"| optimizer | workers | jobs of {job_seconds:g} s | ideal wall s | wall s stock | ours "
        "| gap median ms stock | ours | gap p95 ms stock | ours | utilisation stock | ours |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for optimizer, pair in results.items():
        summary = pair.ours[0]
        ideal = summary.jobs * job_seconds / summary.spec.n_workers
        lines.append(
            f"| {optimizer} | {summary.spec.n_workers} | {summary.jobs} | {ideal:.1f} "
            f"| {pair.median('stock', lambda s: s.wall):.2f} | {pair.median('ours', lambda s: s.wall):.2f} "
            f"| {ms(pair.median('stock', lambda s: s.gap_median))} "
            f"| {ms(pair.median('ours', lambda s: s.gap_median))} "
            f"| {ms(pair.median('stock', lambda s: s.gap_p95))} "
            f"| {ms(pair.median('ours', lambda s: s.gap_p95))} "
            f"| {pair.median('stock', lambda s: s.utilisation):.1%} "
            f"| {pair.median('ours', lambda s: s.utilisation):.1%} |"
        )
    return lines


@dataclass(frozen=True)
class EndToEnd:
    command: str
    jobs: int
    busy_share: float
    first_job_after_launch: float
    wall: float
    exit_after_last_result: float
    per_worker: list[str]


def end_to_end(arguments: Sequence[str], log: Callable[[str], None]) -> EndToEnd:
    """A real run with the local launcher; busy share as the analysis package computes it."""
    from analysis.load import load_run
    from analysis.timeline import worker_timeline

    with tempfile.TemporaryDirectory(prefix="hpo-e2e-") as directory:
        run_dir = Path(directory) / "run"
        command = [sys.executable, "-m", "launch.local", *arguments, "--run-dir", str(run_dir)]
        log(f"  {' '.join(command[1:])}")
        launched = time.time()
        with open(Path(directory) / "launch.log", "wb") as output:
            completed = subprocess.run(
                command, cwd=REPO, stdout=output, stderr=subprocess.STDOUT, timeout=900, check=False
            )
        ended = time.time()
        if completed.returncode != 0:
            raise RuntimeError((Path(directory) / "launch.log").read_text(errors="replace")[-3000:])
        run = load_run(run_dir, prefer="json", allow_pickle=False)
        timeline = worker_timeline(run)
        origin = run.time_origin or launched
        first_started = origin + min(job.started for job in run.jobs)
        last_finished = origin + max(job.finished for job in run.jobs)
        return EndToEnd(
            command=f"python -m launch.local {' '.join(arguments)}",
            jobs=len(run.jobs),
            busy_share=timeline.busy_share or 0.0,
            first_job_after_launch=first_started - launched,
            wall=ended - launched,
            exit_after_last_result=ended - last_finished,
            per_worker=[
                f"{usage.worker}: {usage.jobs} jobs, busy {usage.busy_share:.0%}" for usage in timeline.usage
            ],
        )


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return (
        f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}, "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )


def verdict(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,4,16,64", help="worker counts for trivial jobs")
    parser.add_argument("--optimizers", default="bohb,randomsearch")
    parser.add_argument("--jobs", type=int, default=300, help="at least this many trivial jobs per run")
    parser.add_argument("--repeats", type=int, default=1, help="runs per setting and variant (median)")
    parser.add_argument("--long-job-seconds", type=float, default=1.0)
    parser.add_argument("--long-bohb-jobs", type=int, default=120, help="enough for BOHB to fit its model")
    parser.add_argument("--long-random-jobs", type=int, default=36)
    parser.add_argument("--skip-long", action="store_true", help="leave out the 1-second jobs")
    parser.add_argument("--skip-e2e", action="store_true", help="leave out the real run")
    parser.add_argument(
        "--e2e-args",
        default="--n-workers 4 --max-budget 3 --n-iterations 2",
        help="arguments of the real run (python -m launch.local)",
    )
    parser.add_argument("--quick", action="store_true", help="--workers 1,4,16 --jobs 150, BOHB 60 long jobs")
    args = parser.parse_args(argv)
    if args.quick:
        args.workers, args.jobs, args.long_bohb_jobs = "1,4,16", 150, 60
    worker_counts = [int(count) for count in args.workers.split(",")]
    optimizers = args.optimizers.split(",")

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    started = time.time()
    report = [f"machine: {machine()}", f"command: {' '.join(['benchmarks/dispatch.py', *sys.argv[1:]])}", ""]
    trivial: dict[tuple[str, int], Pair] = {}
    log("trivial jobs")
    for optimizer in optimizers:
        for workers in worker_counts:
            jobs = max(args.jobs, 6 * workers)
            iterations = iterations_for(optimizer, jobs, multiple_of=workers)
            spec = SearchSpec("ours", optimizer, workers, iterations)
            trivial[(optimizer, workers)] = measure_pair(spec, args.repeats, log)
    report += [
        f"## Trivial jobs (sleep 0 s), budgets 1..9, eta 3; median of {args.repeats} run(s) each", "",
        *trivial_table(trivial), "",
    ]  # fmt: skip

    long: dict[str, Pair] = {}
    if not args.skip_long:
        log(f"{args.long_job_seconds:g}-second jobs")
        for optimizer in optimizers:
            target = args.long_bohb_jobs if optimizer == "bohb" else args.long_random_jobs
            iterations = iterations_for(optimizer, target, multiple_of=4)
            spec = SearchSpec("ours", optimizer, 4, iterations, job_seconds=args.long_job_seconds)
            long[optimizer] = measure_pair(spec, 1, log)
        report += [
            f"## {args.long_job_seconds:g}-second jobs, 4 workers",
            "",
            *long_table(long, args.long_job_seconds),
            "",
        ]

    real = None
    if not args.skip_e2e:
        log("end to end")
        real = end_to_end(args.e2e_args.split(), log)
        report += [
            "## End to end (real training on digits)", "",
            f"`{real.command}`: {real.jobs} jobs, busy share {real.busy_share:.1%} "
            f"({'; '.join(real.per_worker)}); first job started {real.first_job_after_launch:.1f} s after "
            f"launch; launcher exited {real.exit_after_last_result:.1f} s after the last result; "
            f"wall {real.wall:.1f} s", "",
        ]  # fmt: skip

    report += ["## Acceptance (ours)", ""]
    checks = []
    if ("bohb", 4) in trivial:
        gap = trivial[("bohb", 4)].median("ours", lambda s: s.gap_median)
        checks.append(
            (gap <= BOHB_GAP_LIMIT, f"BOHB, 4 workers, trivial jobs: median idle gap {ms(gap)} ms <= 30")
        )
    if ("randomsearch", 4) in trivial:
        gap = trivial[("randomsearch", 4)].median("ours", lambda s: s.gap_median)
        checks.append(
            (gap <= RANDOM_GAP_LIMIT, f"random search, 4 workers: median idle gap {ms(gap)} ms <= 10")
        )
    for optimizer, pair in long.items():
        share = pair.median("ours", lambda s: s.utilisation)
        checks.append(
            (share >= UTILISATION_FLOOR, f"{optimizer}, 4 workers, {args.long_job_seconds:g}-s jobs: "
             f"utilisation {share:.1%} >= 95 %")
        )  # fmt: skip
    summaries = [summary for pair in [*trivial.values(), *long.values()] for summary in pair.ours]
    if summaries:
        worst = max(summary.end_latency for summary in summaries)
        checks.append(
            (
                worst <= END_LATENCY_LIMIT,
                f"every run shut down within {worst:.2f} s of its last result (<= 1 s)",
            )
        )
    report += [f"- {verdict(passed)}: {text}" for passed, text in checks]
    report += ["", f"total time {time.time() - started:.0f} s"]
    print("\n".join(report))
    return 0 if all(passed for passed, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
