"""Shared fixtures: run-directory factories, real master/worker processes, and a reaper of leftovers."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hpo_service.signals import STOP_SIGNALS, interrupt_on_stop_signals

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
# The modules of hpo_service that import only the standard library, and so the only ones analysis may use.
ANALYSIS_MAY_IMPORT = ("hpo_service.vocabulary", "hpo_service.run_files", "hpo_service.brackets")


def child_pids(parent: int) -> list[int]:
    """Direct and indirect children of ``parent``, read from /proc (no psutil needed)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
    found, frontier = [], [parent]
    while frontier:
        current = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == current:
                found.append(pid)
                frontier.append(pid)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture(autouse=True, scope="session")
def reap_children() -> Iterator[None]:
    """Tests leave no processes behind: anything a test forgot is killed at the end, and reported."""
    yield
    leftovers = [pid for pid in child_pids(os.getpid()) if alive(pid)]
    for pid in leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert not leftovers, f"tests left processes behind: {leftovers}"


class ProcessRun:
    """Real processes of one test run: started with the repo on the path, killed at the end."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(
        self, name: str, command: list[str], extra_environment: dict[str, str] | None = None, **kwargs: object
    ) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        environment = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
        environment.update(extra_environment or {})
        process = subprocess.Popen(
            command,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environment,
            **kwargs,  # type: ignore[call-overload]
        )
        process.log_path = self.log_dir / f"{name}.log"  # type: ignore[attr-defined]
        log.close()
        self.processes.append(process)
        return process

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait()


@pytest.fixture
def stop_handlers() -> Iterator[None]:
    """The entry points' stop-signal handlers for the test, the test process's own afterwards."""
    saved = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    interrupt_on_stop_signals()
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


@pytest.fixture
def process_run(tmp_path: Path) -> Iterator[ProcessRun]:
    logs = tmp_path / "logs"
    logs.mkdir()
    run = ProcessRun(logs)
    try:
        yield run
    finally:
        run.stop_all()


def master_command(run_dir: Path, run_id: str, *extra: str) -> list[str]:
    """A master started by hand; plain Pyro (``--insecure``) unless ``extra`` gives ``--tls-dir``, so that
    tests can talk to it from this process (which never turns TLS on). ``test_security`` covers the
    default, certificates made in RUN_DIR/tls."""
    security = [] if "--tls-dir" in extra else ["--insecure"]
    start = [sys.executable, "-m", "hpo_service", "--run-dir", str(run_dir), "--run-id", run_id]
    return [*start, *security, *extra]


def fake_worker_command(run_dir: Path, run_id: str, *extra: str) -> list[str]:
    return [
        sys.executable,
        str(REPO / "tests" / "support" / "fake_worker.py"),
        "--run-id",
        run_id,
        "--run-dir",
        str(run_dir),
        *extra,
    ]


def wait_for(predicate, timeout: float, interval: float = 0.1) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def result_lines(run_dir: Path) -> list[list[Any]]:
    """The lines of ``results.json`` so far (none before the file exists)."""
    path = run_dir / "results.json"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []
