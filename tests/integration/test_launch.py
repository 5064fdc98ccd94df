"""``python -m launch.local`` end to end: real nameserver, master and worker processes, real training."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hpbandster.core.result import logged_results_to_HBS_result

from tests.conftest import ProcessRun, alive, child_pids, result_lines, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TINY = ["--min-budget", "1", "--max-budget", "3", "--eta", "3", "--train-limit", "300"]


def launch_command(run_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "launch.local", "--run-dir", str(run_dir), *extra]


def test_default_bohb_run_on_digits_trains_real_networks(process_run: ProcessRun, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    launcher = process_run.start(
        "launch", launch_command(run_dir, "--n-workers", "2", "--n-iterations", "1", *TINY)
    )
    assert launcher.wait(timeout=240) == 0, process_run.log("launch")
    for name in ("results.pkl", "configs.json", "results.json", "configspace.json", "run.json"):
        assert (run_dir / name).is_file(), name
    results = result_lines(run_dir)
    assert len(results) == 4  # one bracket: 3 configurations at 1 epoch, the best at 3
    for _, budget, _, result, exception in results:
        assert exception is None
        info = result["info"]  # type: ignore[index]
        assert info["status"] in ("ok", "failed")
        assert 0.0 <= result["loss"] <= 1.0  # type: ignore[index]
        assert info["dataset"] == "digits"
        assert info["epochs_trained"] <= info["total_epochs"] <= round(budget)  # type: ignore[arg-type]
        assert len(info["validation_error_per_epoch"]) == info["total_epochs"]
        for key in (
            "test_error",
            "train_loss_per_epoch",
            "wall_seconds",
            "samples_per_second",
            "parameter_count",
        ):
            assert key in info, key
        assert info["device"].startswith("cpu")
    # Continuation: the promoted configuration resumed from its 1-epoch checkpoint (and trained the rest).
    promoted = [result["info"] for _, budget, _, result, _ in results if round(budget) == 3]  # type: ignore[index,arg-type]
    resumed = [
        (info["resumed_from_budget"], info["total_epochs"] - info["epochs_trained"]) for info in promoted
    ]
    assert resumed == [(1, 1)]
    assert not (run_dir / "checkpoints").exists()  # removed at the end of the run
    log = process_run.log("launch")
    assert f"-m analysis {run_dir}" in log.splitlines()[-1]
    # Output to a file: plain lines, one per job, and no worker chatter; every process's log in RUN_DIR/logs.
    assert [line.split("] ")[0].rsplit("[", 1)[1] for line in log.splitlines() if "] iteration " in line] == [
        f"{index}/4" for index in range(1, 5)
    ]
    assert "workers.process" not in log and "\x1b[" not in log
    logs = run_dir / "logs"
    assert sorted(path.name for path in logs.iterdir()) == ["master.log", "worker-1.log", "worker-2.log"]
    assert "[4/4] iteration 0" in (logs / "master.log").read_text()
    check_analysis_of_a_real_run(run_dir)


def check_analysis_of_a_real_run(run_dir: Path) -> None:
    """The analysis CLI and HpBandSter's own log reader agree with the pickle on a run that really trained."""
    with open(run_dir / "results.pkl", "rb") as handle:
        pickled = pickle.load(handle)
    incumbent = pickled.get_incumbent_id()
    assert incumbent is not None
    assert logged_results_to_HBS_result(str(run_dir)).get_incumbent_id() == incumbent
    test_error = pickled.get_runs_by_id(incumbent)[-1].info["test_error"]

    analysis = subprocess.run(
        [sys.executable, "-m", "analysis", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert analysis.returncode == 0, analysis.stderr
    assert "optimizer   bohb" in analysis.stdout
    assert f"incumbent   {tuple(incumbent)}" in analysis.stdout
    assert f"test error {test_error:.4f}" in analysis.stdout
    plot = run_dir / "incumbents.png"
    assert plot.read_bytes().startswith(b"\x89PNG")


def ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize(
    ("stop_signal", "sigint_ignored"),
    [
        (signal.SIGINT, False),  # Ctrl-C in a terminal
        (signal.SIGINT, True),  # started in the background by a script: SIGINT arrives ignored
        (signal.SIGTERM, True),  # kill, docker stop, a batch scheduler
    ],
    ids=["ctrl-c", "ctrl-c-background", "sigterm"],
)
def test_stop_signal_stops_every_process_in_order(
    process_run: ProcessRun, tmp_path: Path, stop_signal: signal.Signals, sigint_ignored: bool
) -> None:
    run_dir = tmp_path / "run"
    launcher = process_run.start(
        "launch",
        launch_command(run_dir, "--n-workers", "2", "--n-iterations", "20", *TINY),
        preexec_fn=ignore_sigint if sigint_ignored else None,
    )
    assert wait_for(lambda: len(result_lines(run_dir)) >= 2, timeout=120), process_run.log("launch")
    # Master and two workers (on a small machine the second starts once the first has joined).
    assert wait_for(lambda: len(child_pids(launcher.pid)) >= 3, timeout=30)
    children = child_pids(launcher.pid)
    launcher.send_signal(stop_signal)
    assert launcher.wait(timeout=60) == 130, process_run.log("launch")
    assert wait_for(lambda: not any(alive(pid) for pid in children), timeout=10)
    log = process_run.log("launch")
    # The master took the orderly path (closed its log, told the workers), nobody needed SIGKILL.
    assert "interrupted; every finished result is in" in log
    assert "killing process" not in log
    process_logs = "".join(path.read_text() for path in (run_dir / "logs").glob("*.log"))
    # No worker aborted in C++ while its job's thread was in torch.
    assert "terminate called" not in log + process_logs
    # What was logged before the interrupt is intact, line by line.
    assert all(len(line) == 5 for line in result_lines(run_dir))


def test_launcher_stops_when_every_worker_dies(process_run: ProcessRun, tmp_path: Path) -> None:
    empty = tmp_path / "no-mnist-here"
    empty.mkdir()
    run_dir = tmp_path / "run"
    launcher = process_run.start(
        "launch", launch_command(run_dir, "--n-workers", "2", "--dataset", "mnist", "--data-dir", str(empty))
    )
    assert launcher.wait(timeout=120) == 1, process_run.log("launch")
    log = process_run.log("launch")
    assert "every worker exited" in log
    assert "train-images-idx3-ubyte" in log  # the worker said which file is missing


@pytest.mark.slow
def test_a_worker_killed_mid_job_with_real_training_loses_nothing(
    process_run: ProcessRun, tmp_path: Path
) -> None:
    """The chaos suite's first fault with real training: the job goes to the other worker (resuming from its
    checkpoint where it was promoted), launch.local starts a replacement, every planned result arrives."""
    run_dir = tmp_path / "run"
    search = ["--optimizer", "hyperband", "--min-budget", "3", "--max-budget", "27", "--n-iterations", "1"]
    launcher = process_run.start("launch", launch_command(run_dir, "--n-workers", "2", *search))
    assert wait_for(lambda: len(result_lines(run_dir)) >= 2, timeout=120), process_run.log("launch")
    workers = [
        pid
        for pid in child_pids(launcher.pid)
        if b"-m\x00workers" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]
    os.kill(workers[0], signal.SIGKILL)
    assert launcher.wait(timeout=180) == 0, process_run.log("launch")
    log = process_run.log("launch")
    assert "starting a replacement (1 of 3)" in log
    assert "re-dispatching job" in log
    results = result_lines(run_dir)
    assert len(results) == 13  # 9 + 3 + 1: nothing lost
    assert all(line[3] is not None and line[3]["info"]["status"] == "ok" for line in results)
    retried = [line for line in results if line[3]["info"].get("attempts", 1) > 1]
    assert retried and all(line[3]["info"]["retried_after"] for line in retried)


def test_bad_arguments_fail_fast_with_exit_code_2(process_run: ProcessRun, tmp_path: Path) -> None:
    launcher = process_run.start("launch", launch_command(tmp_path / "run", "--n-workers", "0"))
    assert launcher.wait(timeout=30) == 2
    assert "--n-workers must be at least 1" in process_run.log("launch")
    assert not (tmp_path / "run").exists()
    assert os.listdir(tmp_path) == ["logs"]


def test_a_killed_worker_is_replaced_and_one_that_exited_is_not() -> None:
    from launch.local import WORKER_RESTARTS, ProcessGroup

    group = ProcessGroup()
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    try:
        group.start_worker(sleeper, {})
        group.start_worker([sys.executable, "-c", "raise SystemExit(2)"], {})
        group.start_worker([sys.executable, "-c", "raise SystemExit(3)"], {})  # read a stale spec
        first, stale = group.workers[0], group.workers[2]
        group.workers[1].wait(timeout=30)
        stale.wait(timeout=30)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        group.replace_dead_workers()
        # Killed (OOM killer, kill -9): a new process in its slot; exited with a code: it would fail again,
        # unless that code says it read a stale spec (started again, it reads the current one).
        assert group.workers[0] is not first and group.workers[0].poll() is None
        assert group.workers[2] is not stale
        assert group.restarts == [1, 0, 1]
        for _ in range(WORKER_RESTARTS):
            group.workers[0].kill()
            group.workers[0].wait(timeout=10)
            group.replace_dead_workers()
        assert group.restarts[0] == WORKER_RESTARTS and group.workers[0].poll() is not None  # no more
    finally:
        for process in group.workers:
            if process.poll() is None:
                process.kill()
            process.wait()
