"""``--resume RUN_DIR``: a master killed (SIGKILL) mid-run is resumed, twice, with real processes on
127.0.0.1 and the fast fake workers; and the refusals of a run dir that cannot be resumed."""

from __future__ import annotations

import json
import pickle
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hpo_service import resume
from hpo_service.brackets import planned_jobs
from hpo_service.errors import RunDirectoryError
from tests.conftest import REPO, ProcessRun, fake_worker_command, master_command, result_lines, wait_for
from tests.support.run_checks import check_complete

RUN_ID = "test-resume"
SEARCH = ("--min-budget", "1", "--max-budget", "9", "--eta", "3", "--n-iterations", "4")


def start_master(process_run: ProcessRun, name: str, command: list[str]) -> subprocess.Popen[bytes]:
    return process_run.start(name, command)


def start_workers(
    process_run: ProcessRun,
    run_dir: Path,
    name: str,
    *,
    count: int = 2,
    sleep: float = 0.05,
    script: str = "",
) -> list[subprocess.Popen[bytes]]:
    workers = []
    for index in range(count):
        command = fake_worker_command(run_dir, RUN_ID, "--sleep", str(sleep))
        if script:
            command[1] = str(REPO / "tests" / "support" / script)
        workers.append(process_run.start(f"{name}-worker{index}", command))
    return workers


def kill_after(
    process_run: ProcessRun,
    master: subprocess.Popen[bytes],
    workers: list[subprocess.Popen[bytes]],
    run_dir: Path,
    *,
    results: int,
    name: str,
) -> list[str]:
    """SIGKILL the master once ``results`` results are logged (and its workers with it)."""
    assert wait_for(lambda: len(result_lines(run_dir)) >= results, timeout=60), process_run.log(name)
    master.send_signal(signal.SIGKILL)
    master.wait(timeout=10)
    for worker in workers:
        worker.kill()
        worker.wait(timeout=10)
    return (run_dir / "results.json").read_text().splitlines()


def resume_master(process_run: ProcessRun, run_dir: Path, name: str, *extra: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "hpo_service", "--resume", str(run_dir), "--min-workers", "2",
               "--ping-interval", "1", *extra]  # fmt: skip
    master = start_master(process_run, name, command)
    assert wait_for(lambda: "resuming" in process_run.log(name), timeout=60), process_run.log(name)
    return master


def finish(process_run: ProcessRun, master: subprocess.Popen[bytes], name: str) -> None:
    try:
        assert master.wait(timeout=120) == 0, process_run.log(name)
    except subprocess.TimeoutExpired:
        pytest.fail(f"resumed run hung; master log:\n{process_run.log(name)}")


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["bohb", "hyperband", "randomsearch"])
def test_killed_twice_resumes_with_every_result_once(
    process_run: ProcessRun, tmp_path: Path, optimizer: str
) -> None:
    run_dir = tmp_path / "run"
    planned = planned_jobs(optimizer, 1, 9, 3, 4)
    command = master_command(run_dir, RUN_ID, "--optimizer", optimizer, *SEARCH, "--min-workers", "2",
                             "--ping-interval", "1")  # fmt: skip
    master = start_master(process_run, "master", command)
    workers = start_workers(process_run, run_dir, "first", sleep=0.2)
    kept = kill_after(process_run, master, workers, run_dir, results=max(3, planned // 5), name="master")
    assert len(kept) < planned

    master = resume_master(process_run, run_dir, "resume1")
    workers = start_workers(process_run, run_dir, "second", sleep=0.2)
    more = len(kept) + max(3, planned // 4)
    kept = kill_after(process_run, master, workers, run_dir, results=more, name="resume1")
    assert len(kept) < planned

    # The options the run fixes may be repeated with the run's own values.
    master = resume_master(process_run, run_dir, "resume2", "--optimizer", optimizer, "--max-budget", "9")
    workers = start_workers(process_run, run_dir, "third")
    finish(process_run, master, "resume2")
    for worker in workers:
        worker.wait(timeout=30)
    results = check_complete(run_dir, planned, kept)
    # The new iterations continue the old ones' numbering: every planned iteration ran, none twice.
    assert {line[0][0] for line in results} == set(range(4))


@pytest.mark.integration
@pytest.mark.slow
def test_sweep_resume_skips_the_jobs_with_a_result(process_run: ProcessRun, tmp_path: Path) -> None:
    run_dir = tmp_path / "sweep"
    command = master_command(
        run_dir, RUN_ID, "--optimizer", "sweep", "--vary", "learning_rate=0.1,0.01,0.001,0.0001",
        "--repeats", "3", "--max-budget", "2", "--min-workers", "2", "--ping-interval", "1",
    )  # fmt: skip
    master = start_master(process_run, "master", command)
    workers = start_workers(process_run, run_dir, "first", sleep=0.2, script="fake_sweep_worker.py")
    kept = kill_after(process_run, master, workers, run_dir, results=4, name="master")
    assert len(kept) < 12

    master = resume_master(process_run, run_dir, "resume1")
    workers = start_workers(process_run, run_dir, "second", sleep=0.05, script="fake_sweep_worker.py")
    finish(process_run, master, "resume1")
    for worker in workers:
        worker.wait(timeout=30)
    lines = (run_dir / "results.json").read_text().splitlines()
    assert lines[: len(kept)] == kept
    results = [json.loads(line) for line in lines]
    configs = {
        tuple(line[0]): line[1]
        for line in map(json.loads, (run_dir / "configs.json").read_text().splitlines())
    }
    pairs = [(configs[tuple(line[0])]["learning_rate"], configs[tuple(line[0])]["seed"]) for line in results]
    assert sorted(pairs) == sorted((lr, seed) for lr in (0.1, 0.01, 0.001, 0.0001) for seed in (0, 1, 2))
    with open(run_dir / "results.pkl", "rb") as handle:
        assert len(pickle.load(handle).get_all_runs()) == 12


# Refusals and damaged logs: no processes needed beyond the CLI.


def write_run(run_dir: Path, results: list[str] | None = None) -> Path:
    """A small logged BOHB run (iteration 0 of budgets 1..9, eta 3, partly done), as the master writes it."""
    from hpo_service.space import load_space, write_space

    run_dir.mkdir(parents=True)
    write_space(load_space("default", seed=0), run_dir / "configspace.json")
    description = {"run_id": RUN_ID, "optimizer": "bohb", "min_budget": 1.0, "max_budget": 9.0, "eta": 3.0,
                   "n_iterations": 2, "seed": 0, "dataset": "digits", "space": "default", "started": 1.0,
                   "finished": None, "continuation": True}  # fmt: skip
    (run_dir / "run.json").write_text(json.dumps(description))
    space = load_space("default", seed=0)
    configs = []
    for index in range(3):
        config = dict(space.sample_configuration())
        configs.append(json.dumps([[0, 0, index], {k: _builtin(v) for k, v in config.items()}, {}]))
    (run_dir / "configs.json").write_text("\n".join(configs) + "\n")
    times = {"submitted": 2.0, "started": 2.1, "finished": 2.5}
    default = [
        json.dumps([[0, 0, 0], 1.0, times, {"loss": 0.5, "info": {"status": "ok"}}, None]),
        json.dumps([[0, 0, 1], 1.0, times, None, "Worker died unexpectedly."]),
    ]
    (run_dir / "results.json").write_text("\n".join(results if results is not None else default) + "\n")
    return run_dir


def _builtin(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def cli(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hpo_service", *arguments],
        check=False, cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.integration
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--max-budget", "27"), "--max-budget 27.0 differs from the run's 9.0"),
        (("--min-budget", "3"), "--min-budget 3.0 differs from the run's 1.0"),
        (("--optimizer", "hyperband"), "--optimizer hyperband differs from the run's bohb"),
        (("--space", "lenet5"), "is not the run's search space"),
        (("--run-id", "other"), "--run-id other differs from the run's test-resume"),
    ],
)
def test_conflicting_options_are_refused(tmp_path: Path, extra: tuple[str, ...], message: str) -> None:
    run_dir = write_run(tmp_path / "run")
    before = (run_dir / "results.json").read_bytes()
    answer = cli("--resume", str(run_dir), *extra)
    assert answer.returncode == 2, answer.stderr
    assert message in answer.stderr
    assert (run_dir / "results.json").read_bytes() == before


@pytest.mark.integration
def test_not_a_run_dir_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    answer = cli("--resume", str(tmp_path / "empty"))
    assert answer.returncode == 2
    assert "not a run directory (no run.json)" in answer.stderr
    answer = cli("--resume", str(tmp_path / "missing"))
    assert answer.returncode == 2
    assert "no such directory" in answer.stderr


@pytest.mark.integration
def test_corrupt_results_line_is_refused(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path / "run")
    lines = (run_dir / "results.json").read_text().splitlines()
    (run_dir / "results.json").write_text(lines[0] + "\n{not json\n" + lines[1] + "\n")
    answer = cli("--resume", str(run_dir))
    assert answer.returncode == 2
    assert "results.json: line 2 is not valid JSON" in answer.stderr


def test_truncated_last_line_is_dropped_and_cut(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    run_dir = write_run(tmp_path / "run")
    path = run_dir / "results.json"
    whole = path.read_text()
    path.write_text(whole + whole.splitlines()[0][:25])  # a master killed mid-write
    run = resume.load_run(run_dir)
    assert len(run.results) == 2
    assert "incomplete" in caplog.text
    resume.repair_logs(run)
    assert path.read_text() == whole


def test_a_line_that_is_no_result_is_refused(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path / "run", results=[json.dumps([[0, 0, 9], 1.0, {}, None, None])])
    with pytest.raises(RunDirectoryError, match="configs.json does not hold"):
        resume.load_run(run_dir)


def test_restore_rebuilds_the_interrupted_iteration_and_warm_starts_bohb(tmp_path: Path) -> None:
    """The crashed run (result None) reaches BOHB's model as crashed (upstream: ufunc isfinite, #32/#95,
    reproduced in ``tests/integration/test_deadlocks.py``, scenario warm-start-over-crashed-run);
    the run's config without a result runs again under its id; the third config is not re-sampled."""
    from hpo_service.hpbandster.optimizers import create_optimizer
    from hpo_service.nameserver import LocalNameserver
    from hpo_service.space import load_space

    run_dir = write_run(tmp_path / "run")
    run = resume.load_run(run_dir)
    with LocalNameserver("127.0.0.1", 0) as address:
        master = create_optimizer(
            "bohb", load_space(str(run_dir / "configspace.json")), run_id="restore", min_budget=1.0,
            max_budget=9.0, eta=3.0, nameserver=address.host, nameserver_port=address.port,
            working_directory=str(run_dir),
        )  # fmt: skip
        try:
            check_restored(master, run, run_dir)
        finally:
            master.shutdown()


def check_restored(master: Any, run: resume.LoggedRun, run_dir: Path) -> None:
    from hpo_service.hpbandster.result_log import JsonResultLogger

    result_log = resume.appending_logger(JsonResultLogger, run_dir, run.config_ids())
    restored = resume.restore(master, run, result_log, 1.0)
    assert (restored.iterations, restored.results, restored.rerun) == (1, 2, 1)
    iteration = master.iterations[0]
    assert iteration.data[(0, 0, 0)].status == "REVIEW"
    assert iteration.data[(0, 0, 1)].status == "CRASHED"
    assert iteration.data[(0, 0, 2)].status == "QUEUED"
    # The next run is the config without a result, under its old id; then new samples follow.
    assert iteration.get_next_run()[0] == (0, 0, 2)
    assert iteration.actual_num_configs[0] == 3
    assert len(master.config_generator.configs[1.0]) == 2
    assert (run_dir / "results.json").read_text().count("\n") == 2


@pytest.mark.integration
@pytest.mark.slow
def test_launch_local_resumes_a_run_stopped_with_ctrl_c(process_run: ProcessRun, tmp_path: Path) -> None:
    """Real training on digits: Ctrl-C mid-run leaves logs that ``launch.local --resume`` accepts."""
    run_dir = tmp_path / "run"
    tiny = ["--min-budget", "1", "--max-budget", "3", "--eta", "3", "--train-limit", "300"]
    launcher = process_run.start(
        "launch",
        [sys.executable, "-m", "launch.local", "--run-dir", str(run_dir), "--n-workers", "2",
         "--n-iterations", "2", *tiny],
    )  # fmt: skip
    assert wait_for(lambda: len(result_lines(run_dir)) >= 2, timeout=120), process_run.log("launch")
    launcher.send_signal(signal.SIGINT)
    assert launcher.wait(timeout=60) == 130, process_run.log("launch")
    kept = (run_dir / "results.json").read_text().splitlines()
    planned = planned_jobs("bohb", 1, 3, 3, 2)
    assert len(kept) < planned

    resumed = process_run.start(
        "resume",
        [
            sys.executable,
            "-m",
            "launch.local",
            "--resume",
            str(run_dir),
            "--n-workers",
            "2",
            "--max-budget",
            "3",
        ],
    )
    assert resumed.wait(timeout=240) == 0, process_run.log("resume")
    lines = (run_dir / "results.json").read_text().splitlines()
    assert lines[: len(kept)] == kept
    keys = [(tuple(line[0]), line[1]) for line in map(json.loads, lines)]
    assert len(keys) == len(set(keys)) == planned
    with open(run_dir / "results.pkl", "rb") as handle:
        assert len(pickle.load(handle).get_all_runs()) == planned


def test_launch_local_refuses_a_conflicting_resume(tmp_path: Path) -> None:
    from launch.local import LaunchError, build_parser, settings_from_args

    run_dir = write_run(tmp_path / "run")
    argv = ["--resume", str(run_dir), "--n-workers", "2"]
    settings = settings_from_args(build_parser().parse_args(argv), argv)
    assert settings.resume
    assert (settings.run_id, settings.spec.max_budget, settings.spec.n_iterations) == (RUN_ID, 9.0, 2)
    assert settings.master_command()[2:6] == ["hpo_service", "--resume", str(run_dir), "--min-workers"]
    argv = ["--resume", str(run_dir), "--eta", "2"]
    with pytest.raises(LaunchError, match="--eta 2.0 differs from the run's 3.0"):
        settings_from_args(build_parser().parse_args(argv), argv)


def test_restore_takes_a_result_without_loss_as_crashed(tmp_path: Path) -> None:
    from hpo_service.hpbandster.optimizers import create_optimizer
    from hpo_service.nameserver import LocalNameserver
    from hpo_service.space import load_space

    times = {"submitted": 2.0, "started": 2.1, "finished": 2.5}
    lines = [
        json.dumps([[0, 0, 0], 1.0, times, {"loss": 0.5, "info": {"status": "ok"}}, None]),
        json.dumps([[0, 0, 1], 1.0, times, None, "Worker died unexpectedly."]),
        json.dumps([[0, 0, 2], 1.0, times, {"loss": None, "info": {"status": "error"}}, None]),
    ]
    run_dir = write_run(tmp_path / "run", results=lines)
    run = resume.load_run(run_dir)
    with LocalNameserver("127.0.0.1", 0) as address:
        master = create_optimizer(
            "bohb", load_space(str(run_dir / "configspace.json")), run_id="restore", min_budget=1.0,
            max_budget=9.0, eta=3.0, nameserver=address.host, nameserver_port=address.port,
            working_directory=str(run_dir),
        )  # fmt: skip
        try:
            restored = resume.restore(master, run, None, 1.0)
            assert (restored.results, restored.rerun) == (3, 0)
            datum = master.iterations[0].data[(0, 0, 2)]
            assert datum.status == "CRASHED"
            assert datum.results[1.0]["info"] == {"status": "error"}
        finally:
            master.shutdown()


@pytest.mark.integration
def test_logs_that_do_not_fit_the_run_are_refused(tmp_path: Path) -> None:
    """run.json says eta 2 (other budgets), the logs were written with eta 3: refused, nothing changed."""
    run_dir = write_run(tmp_path / "run")
    description = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps({**description, "eta": 2.0}))
    before = {name: (run_dir / name).read_bytes() for name in ("results.json", "configs.json")}
    answer = cli("--resume", str(run_dir), "--ping-interval", "1")
    assert answer.returncode == 2, answer.stderr
    assert "do not replay" in answer.stderr
    assert {name: (run_dir / name).read_bytes() for name in before} == before


@pytest.mark.integration
@pytest.mark.slow
def test_resume_with_nothing_left_writes_the_pickle_without_workers(
    process_run: ProcessRun, tmp_path: Path
) -> None:
    """A master killed after its last result, before ``results.pkl``: the resume needs no worker."""
    run_dir = tmp_path / "run"
    command = master_command(run_dir, RUN_ID, "--optimizer", "randomsearch", *SEARCH[:6], "--n-iterations",
                             "1", "--min-workers", "2", "--ping-interval", "1")  # fmt: skip
    master = start_master(process_run, "master", command)
    workers = start_workers(process_run, run_dir, "first")
    finish(process_run, master, "master")
    for worker in workers:
        worker.wait(timeout=30)
    (run_dir / "results.pkl").unlink()
    kept = (run_dir / "results.json").read_text().splitlines()
    answer = cli("--resume", str(run_dir), "--min-workers", "2")
    assert answer.returncode == 0, answer.stderr
    assert "0 job(s) to run again, 0 new iteration(s)" in answer.stderr
    check_complete(run_dir, planned_jobs("randomsearch", 1, 9, 3, 1), kept)
