"""Scaling: the same search with 1, 2 and 4 workers whose jobs sleep a known time; wall time against ideal.

Jobs only sleep (``budget x --seconds-per-epoch``), so the numbers mean the same on 2 cores as on 64: they
measure the service (master, dispatcher, the optimizer's own waits), not the training. Two searches:

- random search: every job at the largest budget, no waits between jobs (ideal = total sleep / workers);
- Hyperband: successive-halving brackets, whose stages wait for their slowest job; HpBandSter starts the
  next bracket meanwhile, but the last bracket's last stages leave workers idle.

Ours and stock HpBandSter (builtins on the wire only) run the same searches (``benchmarks/sleep_search.py``
sets them up). Run from the repository root::

    .venv/bin/python benchmarks/scaling.py            # about 3 minutes
    .venv/bin/python benchmarks/scaling.py --quick    # about 1.5 minutes, ours only
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Sequence

from sleep_search import SearchSpec, Summary, measure

from hpo_service.brackets import bracket_sizes, planned_jobs

# Acceptance (issue 4, "Done when" 4): 4 workers take at most this share of 1 worker's wall time.
SPEEDUP_LIMIT = 0.3


def total_sleep(summary: Summary) -> float:
    spec = summary.spec
    return sum(
        spec.job_seconds + spec.seconds_per_budget * budget
        for budget in planned_budgets(spec.optimizer, spec.n_iterations, spec.max_budget)
    )


def planned_budgets(optimizer: str, iterations: int, max_budget: float, eta: float = 3.0) -> list[float]:
    """The budget of every job the search runs (none fail here), as HpBandSter schedules them."""
    if optimizer == "randomsearch":
        return [max_budget] * planned_jobs(optimizer, 1.0, max_budget, eta, iterations)
    brackets = bracket_sizes(1.0, max_budget, eta)
    budgets = []
    for iteration in range(iterations):
        sizes = brackets[iteration % len(brackets)]
        first = max_budget / eta ** (len(sizes) - 1)
        budgets += [first * eta**stage for stage, size in enumerate(sizes) for _ in range(size)]
    return budgets


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--seconds-per-epoch", type=float, default=0.05, help="sleep per unit of budget")
    parser.add_argument("--random-iterations", type=int, default=16, help="3 jobs of budget 9 each")
    parser.add_argument("--hyperband-iterations", type=int, default=12, help="four cycles of the 3 brackets")
    parser.add_argument("--variants", default="ours,stock")
    parser.add_argument("--quick", action="store_true", help="ours only")
    args = parser.parse_args(argv)
    variants = ["ours"] if args.quick else args.variants.split(",")
    worker_counts = [int(count) for count in args.workers.split(",")]
    searches = {"randomsearch": args.random_iterations, "hyperband": args.hyperband_iterations}

    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, load {load[0]:.2f}")
    print(f"command: {' '.join(['benchmarks/scaling.py', *sys.argv[1:]])}")
    print()
    print("| search | variant | workers | jobs | total sleep s | ideal wall s | wall s | wall / ideal "
          "| wall / 1 worker |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    started = time.time()
    checks = []
    for optimizer, iterations in searches.items():
        for variant in variants:
            walls: dict[int, float] = {}
            for workers in worker_counts:
                spec = SearchSpec(
                    variant, optimizer, workers, iterations, seconds_per_budget=args.seconds_per_epoch
                )
                summary = measure(spec)
                work = total_sleep(summary)
                assert summary.jobs == len(planned_budgets(optimizer, iterations, spec.max_budget))
                walls[workers] = summary.wall
                ideal = work / workers
                relative = summary.wall / walls[worker_counts[0]]
                print(
                    f"| {optimizer} | {variant} | {workers} | {summary.jobs} | {work:.2f} | {ideal:.2f} "
                    f"| {summary.wall:.2f} | {summary.wall / ideal:.2f} | {relative:.2f} |",
                    flush=True,
                )
            if variant == "ours" and 1 in walls and 4 in walls:
                share = walls[4] / walls[1]
                checks.append(
                    (share <= SPEEDUP_LIMIT, f"{optimizer}: 4 workers take {share:.2f}x of 1 worker")
                )
    print()
    for passed, text in checks:
        print(f"- {'PASS' if passed else 'FAIL'}: {text} (<= {SPEEDUP_LIMIT})")
    print(f"\ntotal time {time.time() - started:.0f} s")
    return 0 if all(passed for passed, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
