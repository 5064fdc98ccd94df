"""``python -m workers`` as users run it: a real worker process training on the real MNIST files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.conftest import SHARED_DATA, ProcessRun, master_command

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.skipif(
    not (SHARED_DATA / "MNIST" / "raw").is_dir(), reason=f"no MNIST files under {SHARED_DATA}"
)
def test_worker_trains_on_the_real_mnist_from_a_data_dir(process_run: ProcessRun, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    budget = ["--min-budget", "1", "--max-budget", "1", "--n-iterations", "2"]
    master = process_run.start(
        "master",
        master_command(run_dir, "mnist", "--optimizer", "randomsearch", "--dataset", "mnist", *budget),
    )
    worker_command = [sys.executable, "-m", "workers", "--run-id", "mnist", "--run-dir", str(run_dir)]
    worker_command += ["--dataset", "mnist", "--data-dir", str(SHARED_DATA), "--train-limit", "5000"]
    worker = process_run.start("worker", worker_command)
    assert master.wait(timeout=180) == 0, process_run.log("master") + process_run.log("worker")
    assert worker.wait(timeout=30) == 0, process_run.log("worker")

    # The real files: 60k training images split 50k/10k with a fixed seed, the 10k test set scored.
    assert "mnist: 5000 train, 10000 validation, 10000 test images of shape (1, 28, 28)" in process_run.log(
        "worker"
    )
    results = [json.loads(line) for line in (run_dir / "results.json").read_text().splitlines()]
    assert len(results) == 2
    for _, budget_epochs, _, result, exception in results:
        assert exception is None
        info = result["info"]
        assert info["status"] == "ok", info["reason"]
        assert info["dataset"] == "mnist"
        assert info["epochs_trained"] == budget_epochs == 1
        assert 0.0 <= info["test_error"] <= 1.0
    # Any trained configuration beats guessing (0.9 error) on real digits; a broken pipeline would not.
    assert min(result["loss"] for _, _, _, result, _ in results) < 0.5
