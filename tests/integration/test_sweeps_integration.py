"""Sweeps and grids end to end: a real master (nameserver on 127.0.0.1) and fake worker processes that
train "with" each job's seed, a worker killed mid-study, and the command lines' refusals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from analysis.__main__ import main as analysis_main
from tests.conftest import REPO, ProcessRun, master_command, result_lines, wait_for
from tests.support.fake_sweep_worker import sweep_loss

pytestmark = pytest.mark.integration

GRID = ["--optimizer", "grid", "--vary", "lr=0.1,0.01", "--vary", "batch_size=16,32,64", "--repeats", "2"]


def sweep_worker_command(run_dir: Path, run_id: str, *extra: str) -> list[str]:
    script = str(REPO / "tests" / "support" / "fake_sweep_worker.py")
    return [sys.executable, script, "--run-id", run_id, "--run-dir", str(run_dir), *extra]


def config_lines(run_dir: Path) -> dict[tuple[int, ...], tuple[dict[str, object], dict[str, object]]]:
    lines = map(json.loads, (run_dir / "configs.json").read_text().splitlines())
    return {tuple(line[0]): (line[1], line[2]) for line in lines}


def test_a_2x3_grid_with_2_repeats_gives_12_results_with_their_seeds(
    process_run: ProcessRun, tmp_path: Path
) -> None:
    run_dir = tmp_path / "grid"
    master = process_run.start(
        "master",
        master_command(
            run_dir, "grid", *GRID, "--max-budget", "3", "--min-workers", "2", "--ping-interval", "1"
        ),
    )
    for index in range(2):
        process_run.start(f"worker{index}", sweep_worker_command(run_dir, "grid", "--name", f"w{index}"))
    assert master.wait(timeout=90) == 0, process_run.log("master")

    results = result_lines(run_dir)
    configs = config_lines(run_dir)
    assert len(results) == 12 and len(configs) == 12
    seen = set()
    for config_id, budget, _, result, exception in results:
        config, config_info = configs[tuple(config_id)]
        assert exception is None and budget == 3.0
        seed = config["seed"]
        assert result["info"]["seed"] == seed  # the worker trained with the configuration's seed
        assert result["loss"] == pytest.approx(sweep_loss(config, budget, seed), rel=1e-6)
        assert config_info["sweep"]["seed"] == seed
        assert config_info["sweep"]["values"] == {
            "learning_rate": config["learning_rate"], "batch_size": config["batch_size"],
        }  # fmt: skip
        seen.add((config["learning_rate"], config["batch_size"], seed))
    assert seen == {(lr, bs, seed) for lr in (0.1, 0.01) for bs in (16, 32, 64) for seed in (0, 1)}
    description = json.loads((run_dir / "run.json").read_text())
    assert (description["optimizer"], description["min_budget"], description["max_budget"]) == ("grid", 3, 3)
    assert json.loads((run_dir / "sweep.json").read_text())["jobs"] == 12
    assert (run_dir / "results.pkl").is_file()
    assert analysis_main(["sweep", str(run_dir)]) == 0
    assert (run_dir / "sweep.png").is_file()


def test_a_sweep_survives_a_worker_killed_mid_job(process_run: ProcessRun, tmp_path: Path) -> None:
    """As for BOHB: the dead worker's job is re-dispatched to the other worker, which does the rest."""
    run_dir = tmp_path / "sweep"
    study = ["--optimizer", "sweep", "--vary", "lr=0.1,0.01,0.001,0.0001", "--repeats", "3"]
    master = process_run.start(
        "master",
        master_command(
            run_dir, "death", *study, "--max-budget", "2", "--min-workers", "2", "--ping-interval", "1"
        ),
    )
    victim = process_run.start(
        "victim", sweep_worker_command(run_dir, "death", "--sleep", "1.0", "--name", "v")
    )
    process_run.start("survivor", sweep_worker_command(run_dir, "death", "--sleep", "0.2", "--name", "s"))
    assert wait_for(lambda: len(result_lines(run_dir)) >= 2, timeout=60), process_run.log("master")
    os.kill(victim.pid, signal.SIGKILL)
    assert master.wait(timeout=90) == 0, process_run.log("master")

    results = result_lines(run_dir)
    assert len(results) == 12 and all(line[3] is not None for line in results)
    assert all(line[3]["info"]["status"] == "ok" for line in results)
    # The victim's job takes 1 s and it is killed after the survivor's second 0.2 s job: mid-job.
    retried = [line for line in results if line[3]["info"].get("attempts") == 2]
    assert len(retried) == 1 and retried[0][3]["info"]["retried_after"] == ["Worker died unexpectedly."]
    assert retried[0][3]["info"]["worker"] == "s"
    assert sum(1 for line in results if line[3]["info"]["worker"] == "s") >= 10


def run_quietly(command: list[str]) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=60, env=environment, check=False
    )


@pytest.mark.parametrize("entry", ["hpo_service", "launch.local"])
def test_command_lines_refuse_a_bad_study_in_one_line_with_exit_code_2(tmp_path: Path, entry: str) -> None:
    command = [sys.executable, "-m", entry, "--run-dir", str(tmp_path / "run"), "--optimizer", "sweep"]
    done = run_quietly([*command, "--vary", "momentum=0.5,0.9", "--base", "optimizer=adam"])
    assert done.returncode == 2
    error_lines = [line for line in done.stderr.splitlines() if "error:" in line]
    assert len(error_lines) == 1
    assert "--vary momentum: inactive in the base configuration" in error_lines[0]
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_launch_local_runs_a_sweep_with_real_training(process_run: ProcessRun, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    command = [
        sys.executable, "-m", "launch.local", "--run-dir", str(run_dir), "--n-workers", "2",
        "--optimizer", "sweep", "--vary", "lr=0.1,0.01", "--repeats", "2", "--max-budget", "1",
        "--train-limit", "300", "--seed", "4",
    ]  # fmt: skip
    assert process_run.start("launch", command).wait(timeout=240) == 0, process_run.log("launch")
    results = result_lines(run_dir)
    configs = config_lines(run_dir)
    assert len(results) == 4
    for config_id, _, _, result, _ in results:
        info = result["info"]
        assert info["seed"] == configs[tuple(config_id)][0]["seed"] in (4, 5)
        assert info["seconds_per_epoch"] == pytest.approx(info["train_seconds"] / info["epochs_trained"])
        assert len(info["validation_error_per_epoch"]) == info["epochs_trained"] == 1
        assert info["parameter_count"] > 0
