"""What a user sees: ``launch.local`` and the master alone on a terminal (a pseudo terminal, its screen
rebuilt by a terminal emulator) show the status block and a few lines, with every process's log in
``RUN_DIR/logs``; ``--dashboard`` starts its process beside the search and stops it with the rest."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pyte
import pytest

from hpo_service.brackets import planned_jobs
from tests.conftest import (
    REPO,
    ProcessRun,
    alive,
    child_pids,
    fake_worker_command,
    master_command,
    result_lines,
    wait_for,
)

COLUMNS, ROWS = 200, 40  # wide enough that no line of ours wraps
TINY = ["--min-budget", "1", "--max-budget", "3", "--eta", "3", "--train-limit", "300"]


def run_on_terminal(
    command: list[str], timeout: float, during: Callable[[subprocess.Popen[bytes]], None] | None = None
) -> tuple[int, list[str]]:
    """Run ``command`` with a pseudo terminal as stdin, stdout and stderr (and ``during`` on a thread while
    it runs); its exit code and every line the screen showed (scrolled off or not), as a terminal emulator
    draws them."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
    environment = {**os.environ, "PYTHONPATH": str(REPO), "TERM": "xterm-256color"}
    environment.pop("COLUMNS", None)
    process = subprocess.Popen(
        command, cwd=REPO, stdin=follower, stdout=follower, stderr=follower, env=environment,
        start_new_session=True,
    )  # fmt: skip
    os.close(follower)
    if during is not None:
        threading.Thread(target=during, args=(process,), daemon=True).start()
    output = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if not ready:
                continue
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed: every process on it ended
                break
            if not chunk:
                break
            output += chunk
        code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(leader)
    return code, screen_lines(output.decode("utf-8", errors="replace"))


def screen_lines(output: str) -> list[str]:
    screen = pyte.HistoryScreen(COLUMNS, ROWS, history=10000)
    pyte.Stream(screen).feed(output)
    history = ["".join(character.data for character in row.values()) for row in screen.history.top]
    lines = [line.rstrip() for line in history + list(screen.display)]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def launch_command(run_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "launch.local", "--run-dir", str(run_dir), *extra]


@pytest.mark.integration
@pytest.mark.slow
def test_launch_on_a_terminal_shows_the_status_block_and_logs_go_to_the_run_dir(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    code, screen = run_on_terminal(
        launch_command(run_dir, "--n-workers", "2", "--n-iterations", "2", *TINY), timeout=240
    )
    text = "\n".join(screen)
    assert code == 0, text
    # The block's last state: a full bar with the job count, the counts line and the incumbent.
    assert any("━" in line and "6/6 jobs" in line for line in screen), text
    assert any(line.startswith("iteration 2 |") and "failures " in line for line in screen), text
    assert any(line.startswith("best: ") and " @ 3" in line for line in screen), text
    assert sum(line.startswith("new best ") for line in screen) >= 1, text
    # No per-job lines and no start-up chatter of the workers: those are in the logs.
    assert "[1/6]" not in text and "workers.process" not in text, text
    assert len(screen) <= 20, text
    assert screen[-1].endswith(f"-m analysis {run_dir}"), text
    logs = run_dir / "logs"
    assert sorted(path.name for path in logs.iterdir()) == ["master.log", "worker-1.log", "worker-2.log"]
    assert "[6/6] iteration " in (logs / "master.log").read_text()
    # Each worker logs there (on 2 cores the second starts once the first has joined: in a run this short
    # it may not get to train).
    assert "workers.process: ready in" in (logs / "worker-1.log").read_text()
    assert "worker INFO" in (logs / "worker-2.log").read_text()


@pytest.mark.integration
@pytest.mark.slow
def test_on_a_terminal_a_killed_worker_and_its_job_are_one_line_each(tmp_path: Path) -> None:
    """Problems still reach the terminal: a worker killed mid-job (its replacement, its job re-dispatched)
    is one line each above the status block, with no traceback."""
    run_dir = tmp_path / "run"
    search = ["--optimizer", "hyperband", "--min-budget", "3", "--max-budget", "27", "--n-iterations", "1"]

    def kill_a_worker(launcher: subprocess.Popen[bytes]) -> None:
        if wait_for(lambda: len(result_lines(run_dir)) >= 2, timeout=180):
            workers = [
                pid
                for pid in child_pids(launcher.pid)
                if b"-m\x00workers" in Path(f"/proc/{pid}/cmdline").read_bytes()
            ]
            os.kill(workers[0], signal.SIGKILL)

    code, screen = run_on_terminal(launch_command(run_dir, "--n-workers", "2", *search), 400, kill_a_worker)
    text = "\n".join(screen)
    assert code == 0, text
    replaced = [line for line in screen if "starting a replacement (1 of 3)" in line]
    assert len(replaced) == 1 and replaced[0].startswith("WARNING launch.local: worker 0 (pid "), text
    assert (
        sum("WARNING hpo_service.hpbandster.dispatch: re-dispatching job" in line for line in screen) == 1
    ), text
    assert "Traceback" not in text and len(screen) <= 30, text
    planned = planned_jobs("hyperband", 3, 27, 3, 1)
    assert any("━" in line and f"{planned}/{planned} jobs" in line for line in screen), text  # none lost


@pytest.mark.integration
def test_the_master_alone_on_a_terminal_shows_the_block(process_run: ProcessRun, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    budgets = ["--min-budget", "1", "--max-budget", "9", "--eta", "3", "--n-iterations", "3"]
    worker = process_run.start("worker", fake_worker_command(run_dir, "alone", "--sleep", "0.05"))
    code, screen = run_on_terminal(master_command(run_dir, "alone", *budgets), timeout=120)
    text = "\n".join(screen)
    assert code == 0, text
    planned = planned_jobs("bohb", 1, 9, 3, 3)
    assert any("━" in line and f"{planned}/{planned} jobs" in line for line in screen), text
    assert any(line.startswith("best: ") and " @ 9" in line for line in screen), text
    assert f"[1/{planned}]" not in text and len(screen) <= 20, text
    assert f"[{planned}/{planned}] iteration " in (run_dir / "logs" / "master.log").read_text()
    assert worker.wait(timeout=30) == 0


STAND_IN = """
import pathlib, signal, sys, time
pathlib.Path(sys.argv[1]).write_text(str(__import__("os").getpid()))
print("dashboard: http://127.0.0.1:8123/", flush=True)
print("serving", sys.argv[2], file=sys.stderr, flush=True)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
while True:
    time.sleep(1)
"""


@pytest.mark.integration
@pytest.mark.slow
def test_dashboard_runs_beside_the_search_and_stops_with_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The plumbing of ``--dashboard`` with a stand-in for ``python -m analysis serve``: its URL line is
    printed, its output is in RUN_DIR/logs/dashboard.log, and it is stopped when the search ends."""
    from launch.local import build_parser, launch, settings_from_args

    run_dir = tmp_path / "run"
    script = tmp_path / "stand_in.py"
    script.write_text(STAND_IN)
    pid_file = tmp_path / "dashboard.pid"
    arguments = ["--run-dir", str(run_dir), "--n-workers", "1", "--n-iterations", "1", *TINY, "--dashboard"]
    settings = settings_from_args(build_parser().parse_args(arguments), arguments)
    assert settings.dashboard_command is not None
    assert settings.dashboard_command[1:] == ("-m", "analysis", "serve", str(run_dir), "--port", "0",
                                              "--host", "127.0.0.1")  # fmt: skip
    stand_in = (sys.executable, str(script), str(pid_file), str(run_dir))
    settings = type(settings)(**{**settings.__dict__, "dashboard_command": stand_in})
    assert launch(settings) == 0
    assert capsys.readouterr().err.count("dashboard: http://127.0.0.1:8123/") == 1
    pid = int(pid_file.read_text())
    assert wait_for(lambda: not alive(pid), timeout=10)
    assert f"serving {run_dir}" in (run_dir / "logs" / "dashboard.log").read_text()


@pytest.mark.slow
def test_dashboard_of_a_real_search_announces_its_address_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With the real ``python -m analysis serve``, started before the master has written anything to the run
    directory: it serves, and its address is printed once."""
    from launch.local import build_parser, launch, settings_from_args

    run_dir = tmp_path / "run"
    arguments = ["--run-dir", str(run_dir), "--n-workers", "1", "--n-iterations", "1", *TINY, "--dashboard"]
    assert launch(settings_from_args(build_parser().parse_args(arguments), arguments)) == 0
    addresses = re.findall(r"dashboard: http://127\.0\.0\.1:\d+/", capsys.readouterr().err)
    assert len(addresses) == 1, (run_dir / "logs" / "dashboard.log").read_text()
