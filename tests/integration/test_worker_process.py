"""``python -m workers`` as users run it: a real worker process training on the real MNIST files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from hpo_service.nameserver import read_credentials
from tests.conftest import SHARED_DATA, ProcessRun, master_command

pytestmark = [pytest.mark.integration]


def test_a_worker_without_the_run_dir_gets_the_run_spec_from_its_master(
    process_run: ProcessRun, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    spec = ["--optimizer", "hyperband", "--min-budget", "1", "--max-budget", "3", "--n-iterations", "1"]
    spec += ["--seed", "11", "--train-limit", "64"]
    master = process_run.start("master", master_command(run_dir, "wire", *spec))
    address = read_credentials(run_dir, timeout=60)
    # Another machine's worker: no run dir, only the nameserver's address (plain Pyro like this master).
    worker = process_run.start(
        "worker",
        [sys.executable, "-m", "workers", "--run-id", "wire", "--nameserver", str(address), "--insecure"],
    )
    assert master.wait(timeout=180) == 0, process_run.log("master") + process_run.log("worker")
    assert worker.wait(timeout=30) == 0, process_run.log("worker")

    log = process_run.log("worker")
    assert "spec came from its master over the wire" in log and "digits: 64 train" in log
    results = [json.loads(line) for line in (run_dir / "results.json").read_text().splitlines()]
    infos = [result["info"] for _, _, _, result, _ in results]
    assert infos and all(info["status"] == "ok" for info in infos)
    # The run's seed, and schedules that span the run's largest budget; nothing resumed (no shared dir).
    assert {info["seed"] for info in infos} == {11}
    assert {info["schedule_epochs"] for info in infos} == {3}
    assert all(info["resumed_from_budget"] is None for info in infos)


@pytest.mark.slow
@pytest.mark.skipif(
    not (SHARED_DATA / "MNIST" / "raw").is_dir(), reason=f"no MNIST files under {SHARED_DATA}"
)
def test_worker_trains_on_the_real_mnist_from_a_data_dir(process_run: ProcessRun, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    budget = ["--min-budget", "1", "--max-budget", "1", "--n-iterations", "2"]
    master = process_run.start(
        "master",
        master_command(
            run_dir,
            "mnist",
            "--optimizer",
            "randomsearch",
            "--dataset",
            "mnist",
            "--train-limit",
            "5000",
            *budget,
        ),
    )
    # Dataset and training-image limit are the run's: the worker reads them from the master's run.json.
    worker_command = [sys.executable, "-m", "workers", "--run-id", "mnist", "--run-dir", str(run_dir)]
    worker_command += ["--data-dir", str(SHARED_DATA)]
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
