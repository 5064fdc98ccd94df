"""Time ``python -m analysis summary`` and ``report`` on a synthetic run of 10,000 results.

Writes a run dir in HpBandSter's JSON-log format (as hpo-service writes it: learning curves, workers,
timings, 8 workers, budgets 1/3/9/27 in Hyperband proportions) into a temporary directory, runs each
command in a fresh interpreter (so imports count, as for a user), and prints the seconds.

    .venv/bin/python scripts/bench_analysis.py [--results 10000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BUDGETS = (1.0, 3.0, 9.0, 27.0)
# Jobs per budget in a Hyperband bracket with eta 3: many small, few large.
SHARES = np.array([27 + 9 + 3, 9 + 3 + 1, 3 + 1, 1], dtype=float)


def write_run(directory: Path, results: int, seed: int = 0) -> None:
    random = np.random.default_rng(seed)
    counts = np.floor(SHARES / SHARES.sum() * results).astype(int)
    counts[0] += results - counts.sum()
    configs = counts[0]
    clock = np.zeros(8)
    with open(directory / "configs.json", "w") as handle:
        rates = 10 ** random.uniform(-4, -1, configs)
        optimizers = random.choice(["sgd", "adam"], configs)
        for index in range(configs):
            config = {
                "learning_rate": float(rates[index]),
                "optimizer": str(optimizers[index]),
                "dropout": float(random.uniform(0, 0.5)),
                "batch_size": int(2 ** random.uniform(4, 8)),
                "kernel_size": int(random.choice([3, 5])),
            }
            handle.write(
                json.dumps([[index // 100, 0, index % 100], config, {"model_based_pick": False}]) + "\n"
            )
    with open(directory / "results.json", "w") as handle:
        for budget, count in zip(BUDGETS, counts, strict=True):
            for index in random.choice(configs, count, replace=False):
                worker = int(np.argmin(clock))
                epochs = int(budget)
                seconds = 0.05 * epochs * (1 + random.random())
                started = clock[worker]
                clock[worker] += seconds + 0.01
                loss = 0.05 + 0.1 * (math.log10(rates[index]) + 2.5) ** 2 / math.sqrt(budget)
                info = {
                    "status": "ok",
                    "reason": None,
                    "test_error": loss + 0.01,
                    "validation_error_per_epoch": [
                        loss + 0.3 / e - 0.3 / epochs for e in range(1, epochs + 1)
                    ],
                    "epochs_trained": epochs,
                    "train_seconds": seconds,
                    "wall_seconds": seconds,
                    "parameter_count": int(random.integers(5_000, 200_000)),
                    "device": "cpu (1 thread)",
                    "worker": f"bench:{worker}",
                }
                stamps = {"submitted": started, "started": started, "finished": started + seconds}
                config_id = [int(index) // 100, 0, int(index) % 100]
                record = [config_id, budget, stamps, {"loss": loss, "info": info}, None]
                handle.write(json.dumps(record) + "\n")
    description = {"run_id": "bench", "optimizer": "hyperband", "min_budget": 1.0, "max_budget": 27.0}
    (directory / "run.json").write_text(
        json.dumps(description | {"eta": 3.0, "finished": float(clock.max())})
    )


def timed(arguments: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "analysis", *arguments], check=True, cwd=REPO, stdout=subprocess.DEVNULL
    )
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--results", type=int, default=10_000)
    parser.add_argument("--keep", type=Path, help="write the run dir here (kept) instead of a temporary one")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-analysis-") as scratch:
        directory = options.keep or Path(scratch) / "run"
        directory.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        write_run(directory, options.results)
        print(f"wrote {options.results} results to {directory} in {time.perf_counter() - started:.1f} s")
        print(f"summary: {timed(['summary', str(directory)]):.2f} s")
        report = directory / "report.html"
        seconds = timed(["report", str(directory), "-o", str(report)])
        print(f"report:  {seconds:.2f} s ({report.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
