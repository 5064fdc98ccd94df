"""A real master (with its nameserver on 127.0.0.1) and real worker processes, for every optimizer.

Workers use a fast fake training function whose info holds numpy values, so the optimizers and the wire
are under test, not torch.
"""

from __future__ import annotations

import json
import pickle
import subprocess
from pathlib import Path

import pytest
from hpbandster.core.result import logged_results_to_HBS_result

from hpo_service.brackets import planned_jobs
from tests.conftest import ProcessRun, fake_worker_command, master_command, result_lines, wait_for
from tests.support.fake_worker import fake_loss

pytestmark = pytest.mark.integration


def run_search(process_run: ProcessRun, run_dir: Path, optimizer: str, n_workers: int = 2) -> None:
    run_id = f"test-{optimizer}"
    master = process_run.start(
        "master",
        master_command(
            run_dir, run_id, "--optimizer", optimizer, "--min-budget", "1", "--max-budget", "9",
            "--n-iterations", "3", "--min-workers", str(n_workers), "--ping-interval", "1",
        ),
    )  # fmt: skip
    workers = [
        process_run.start(f"worker{i}", fake_worker_command(run_dir, run_id)) for i in range(n_workers)
    ]
    try:
        assert master.wait(timeout=90) == 0, process_run.log("master")
        for worker in workers:
            assert worker.wait(timeout=30) == 0, process_run.log("worker0")
    except subprocess.TimeoutExpired:
        pytest.fail(f"run hung; master log:\n{process_run.log('master')}")


@pytest.mark.parametrize("optimizer", ["bohb", "hyperband", "randomsearch"])
def test_optimizer_finishes_with_every_result_logged(
    process_run: ProcessRun, tmp_path: Path, optimizer: str
) -> None:
    run_dir = tmp_path / "run"
    run_search(process_run, run_dir, optimizer)

    for name in ("configs.json", "results.json", "configspace.json", "run.json", "results.pkl"):
        assert (run_dir / name).is_file(), name
    assert not (run_dir / "nameserver.json").exists()
    results = [json.loads(line) for line in (run_dir / "results.json").read_text().splitlines()]
    assert len(results) == planned_jobs(optimizer, 1, 9, 3, 3)
    configs = {
        tuple(line[0]): line[1]
        for line in map(json.loads, (run_dir / "configs.json").read_text().splitlines())
    }
    for config_id, budget, timestamps, result, exception in results:
        assert exception is None
        assert result["info"]["status"] == "ok"
        # The fake worker's numpy values arrived converted, and the loss is the known function.
        assert result["loss"] == pytest.approx(fake_loss(configs[tuple(config_id)], budget), rel=1e-6)
        assert result["info"]["curve"] == [0, 1, 2]
        assert timestamps["submitted"] <= timestamps["started"] <= timestamps["finished"]
    assert json.loads((run_dir / "run.json").read_text())["optimizer"] == optimizer


def test_json_logs_and_pickle_agree_on_the_incumbent(process_run: ProcessRun, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_search(process_run, run_dir, "bohb")
    with open(run_dir / "results.pkl", "rb") as handle:
        pickled = pickle.load(handle)
    logged = logged_results_to_HBS_result(str(run_dir))
    incumbent = pickled.get_incumbent_id()
    assert incumbent is not None
    assert logged.get_incumbent_id() == incumbent
    assert (
        logged.get_id2config_mapping()[incumbent]["config"]
        == pickled.get_id2config_mapping()[incumbent]["config"]
    )
    assert len(logged.get_all_runs()) == len(pickled.get_all_runs())


def test_master_refuses_a_run_dir_that_already_holds_results(process_run: ProcessRun, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "results.json").write_text('[[0, 0, 0], 1.0, {}, null, "kept"]\n')
    master = process_run.start("master", master_command(run_dir, "again"))
    assert master.wait(timeout=60) == 2
    assert "already holds results" in process_run.log("master")
    assert (run_dir / "results.json").read_text() == '[[0, 0, 0], 1.0, {}, null, "kept"]\n'


def test_a_late_worker_gets_work_within_seconds(process_run: ProcessRun, tmp_path: Path) -> None:
    """With a 60 s ping interval, a worker joining a running search still gets a job within seconds.

    The upstream order that makes it idle is shown deterministically in test_hpbandster_fixes.
    """
    run_dir = tmp_path / "run"
    budget = ["--optimizer", "randomsearch", "--min-budget", "1", "--max-budget", "1", "--n-iterations", "60"]
    master = process_run.start("master", master_command(run_dir, "late", *budget, "--ping-interval", "60"))
    process_run.start("early", fake_worker_command(run_dir, "late", "--sleep", "0.3", "--name", "early"))
    assert wait_for(lambda: len(result_lines(run_dir)) >= 2, timeout=60), process_run.log("master")
    process_run.start("late", fake_worker_command(run_dir, "late", "--sleep", "0.3", "--name", "late"))

    def late_worked() -> bool:
        return any(result["info"]["worker"] == "late" for _, _, _, result, _ in result_lines(run_dir))

    assert wait_for(late_worked, timeout=8), process_run.log("late")
    assert master.wait(timeout=60) == 0
