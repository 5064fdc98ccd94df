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


def test_a_worker_that_read_a_stale_spec_exits_and_its_job_goes_to_another(
    process_run: ProcessRun, tmp_path: Path
) -> None:
    run_dir, stale_dir = tmp_path / "run", tmp_path / "stale"
    spec = ["--optimizer", "randomsearch", "--min-budget", "1", "--max-budget", "1", "--n-iterations", "2"]
    master = process_run.start("master", master_command(run_dir, "stale", *spec, "--min-workers", "1"))
    address = read_credentials(run_dir, timeout=60)
    # run.json of an earlier start of the same run id (left in a run dir when that start failed).
    stale_dir.mkdir()
    earlier = json.loads((run_dir / "run.json").read_text()) | {"started": 1.0, "train_limit": 64}
    (stale_dir / "run.json").write_text(json.dumps(earlier))
    worker = [sys.executable, "-m", "workers", "--run-id", "stale", "--nameserver", str(address)]
    worker.append("--insecure")
    stale = process_run.start("stale-worker", [*worker, "--run-dir", str(stale_dir)])
    assert stale.wait(timeout=120) == 3, process_run.log("stale-worker")
    assert "read the spec of a start at 1.0" in process_run.log("stale-worker")
    good = process_run.start("worker", worker)
    assert master.wait(timeout=180) == 0, process_run.log("master") + process_run.log("worker")
    assert good.wait(timeout=30) == 0, process_run.log("worker")
    results = [json.loads(line) for line in (run_dir / "results.json").read_text().splitlines()]
    # Every job has a result from the good worker, on all the images; the stale one (64 images) trained none.
    assert len(results) == 2 and all(result["info"]["status"] == "ok" for _, _, _, result, _ in results)
    assert "digits: 64 train" in process_run.log("stale-worker")
    assert "epoch(s): validation error" not in process_run.log("stale-worker")
    assert "digits: 1077 train" in process_run.log("worker")
