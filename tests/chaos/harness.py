"""Processes, fault files, journals and the final checks of one chaos scenario (see the package text)."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import signal
import socket
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hpbandster.core.result import logged_results_to_HBS_result

from tests.conftest import REPO, ProcessRun, master_command, result_lines, wait_for

RUN_ID = "chaos"
# BOHB over budgets 1, 3, 9: iterations of 13, 4, 3, 13, ... jobs (planned_jobs gives the total).
BUDGETS = {"min_budget": 1.0, "max_budget": 9.0, "eta": 3.0}
SEARCH = ("--min-budget", "1", "--max-budget", "9", "--eta", "3")
# Two hyperparameters: BOHB's model needs only 3 results per budget, so a short run is model-based soon
# (the fake loss depends on the learning rate only).
SPACE_YAML = """\
hyperparameters:
  learning_rate: {range: [1.0e-4, 0.1], log: true, default: 0.01}
  batch_size: {range: [16, 128], log: true}
"""
FAULT_WORKER = REPO / "tests" / "chaos" / "fault_worker.py"
NAMESERVER = REPO / "tests" / "chaos" / "nameserver.py"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Chaos:
    """One scenario's run dir, fault and journal dirs, and its processes (each in its own session)."""

    def __init__(self, process_run: ProcessRun, root: Path) -> None:
        self.processes = process_run
        self.run_dir = root / "run"
        self.faults = root / "faults"
        self.state = root / "state"
        self.space = root / "space.yaml"
        self.faults.mkdir()
        self.state.mkdir()
        self.space.write_text(SPACE_YAML)
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.masters: list[str] = []

    # processes

    def start(self, name: str, command: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        kwargs.setdefault("start_new_session", True)
        # A process that hangs is sent SIGABRT (see dump_stacks): it then writes every thread's stack.
        environment = {"PYTHONFAULTHANDLER": "1", **kwargs.pop("extra_environment", {})}
        return self.processes.start(name, command, extra_environment=environment, **kwargs)

    def dump_stacks(self, process: subprocess.Popen[bytes]) -> None:
        """End a hung process so that its log shows where each of its threads was (faulthandler)."""
        if process.poll() is None:
            process.send_signal(signal.SIGABRT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)

    def master(self, n_iterations: int, *extra: str, name: str = "master") -> subprocess.Popen[bytes]:
        command = master_command(
            self.run_dir, RUN_ID, "--optimizer", "bohb", *SEARCH, "--n-iterations", str(n_iterations),
            "--space", str(self.space), "--ping-interval", "1", *extra,
        )  # fmt: skip
        self.masters.append(name)
        return self.start(name, command)

    def resume(self, *extra: str, name: str, **kwargs: Any) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "hpo_service", "--resume", str(self.run_dir), "--ping-interval", "1",
                   *extra]  # fmt: skip
        self.masters.append(name)
        return self.start(name, command, **kwargs)

    def worker_command(self, name: str, sleep: float, *extra: str) -> list[str]:
        return [
            sys.executable, str(FAULT_WORKER), "--run-id", RUN_ID, "--run-dir", str(self.run_dir),
            "--sleep", str(sleep), "--name", name, "--faults", str(self.faults), "--state", str(self.state),
            *extra,
        ]  # fmt: skip

    def worker(self, name: str, sleep: float, *extra: str, **kwargs: Any) -> subprocess.Popen[bytes]:
        process = self.start(name, self.worker_command(name, sleep, *extra), **kwargs)
        self.workers[name] = process
        return process

    def log(self, name: str) -> str:
        return self.processes.log(name)

    def logs(self) -> str:
        """Every log of the scenario, each under its name (for failure messages)."""
        parts = []
        for path in sorted(self.processes.log_dir.glob("*.log")):
            parts.append(f"----- {path.stem} -----\n{path.read_text(errors='replace')[-6000:]}")
        return "\n".join(parts)

    def finish(self, master: subprocess.Popen[bytes], name: str, timeout: float = 120) -> None:
        """The master ends with exit code 0, then its workers (shut down by it) end too."""
        try:
            code = master.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.dump_stacks(master)
            pytest.fail(f"{name} did not finish within {timeout:g} s\n{self.logs()}")
        assert code == 0, f"{name} exited with {code}\n{self.logs()}"
        for worker_name, process in self.workers.items():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pytest.fail(f"worker {worker_name} still running 20 s after the master ended\n{self.logs()}")

    # results so far

    def results(self) -> list[list[Any]]:
        return result_lines(self.run_dir)

    def wait_results(self, count: int, timeout: float, why: str = "") -> None:
        if not wait_for(lambda: len(self.results()) >= count, timeout=timeout):
            pytest.fail(
                f"{len(self.results())} results after {timeout:g} s, expected {count}"
                f"{'; ' + why if why else ''}\n{self.logs()}"
            )

    # faults and journals

    def add_fault(self, kind: str, tag: str = "") -> Path:
        path = self.faults / (f"{kind}.{tag}" if tag else kind)
        temporary = self.faults.parent / f".{path.name}.tmp"
        temporary.write_text("")
        os.replace(temporary, path)  # appears whole: a worker never takes half a file
        return path

    def journal(self) -> list[dict[str, Any]]:
        """Every job start and end the fault workers recorded, in time order."""
        entries = []
        for path in self.state.glob("*.jsonl"):
            for line in path.read_text().splitlines():
                if line.strip():
                    entries.append(json.loads(line))
        return sorted(entries, key=lambda entry: entry["time"])

    def injected(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Start records of jobs that took a fault (of ``kind``)."""
        return [
            entry
            for entry in self.journal()
            if entry["event"] == "start" and entry["fault"] and (kind is None or entry["fault"] == kind)
        ]

    def ended(self, start: dict[str, Any]) -> dict[str, Any] | None:
        for entry in self.journal():
            same_job = entry["worker"] == start["worker"] and entry["job"] == start["job"]
            later = entry["budget"] == start["budget"] and entry["time"] >= start["time"]
            if same_job and later and entry["event"] == "end":
                return entry
        return None

    def wait_injected(self, kind: str, timeout: float, count: int = 1) -> list[dict[str, Any]]:
        if not wait_for(lambda: len(self.injected(kind)) >= count, timeout=timeout):
            pytest.fail(f"no job took the {kind!r} fault within {timeout:g} s\n{self.logs()}")
        return self.injected(kind)

    def jobs_of(self, worker: str) -> list[dict[str, Any]]:
        return [entry for entry in self.journal() if entry["event"] == "start" and entry["worker"] == worker]

    def kill(self, process: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
        os.killpg(process.pid, sig)
        process.wait(timeout=10)


def key(line: list[Any]) -> tuple[tuple[int, ...], float]:
    """A job: (config id, budget)."""
    return tuple(line[0]), float(line[1])


def find(results: list[list[Any]], job: list[int], budget: float) -> list[list[Any]]:
    return [line for line in results if key(line) == (tuple(job), float(budget))]


@dataclass
class RunCheck:
    """The final state of a run dir, checked against the plan (see :func:`check_run`)."""

    results: list[list[Any]]
    planned: int
    statuses: Counter[str] = field(default_factory=Counter)
    lost: int = 0
    crashed: list[list[Any]] = field(default_factory=list)
    retries: int = 0

    def info(self, line: list[Any]) -> dict[str, Any]:
        return (line[3] or {}).get("info") or {}


def check_run(run_dir: Path, planned: int) -> RunCheck:
    """Every planned job has exactly one result line, results.pkl (HpBandSter's pickle) and a re-read of
    the JSON logs hold the same jobs, configs.json names each config once, run.json says finished.
    Lost results: planned jobs without a line, and lines without a result (crashed)."""
    results = result_lines(run_dir)
    keys = [key(line) for line in results]
    duplicates = [item for item, count in Counter(keys).items() if count > 1]
    assert not duplicates, f"jobs with more than one result line: {duplicates}"
    check = RunCheck(results, planned)
    check.crashed = [line for line in results if line[3] is None]
    check.lost = max(0, planned - len(results)) + len(check.crashed)
    for line in results:
        info = check.info(line)
        check.statuses[info.get("status", "crashed" if line[3] is None else "?")] += 1
        check.retries += max(0, int(info.get("attempts", 1)) - 1)
    assert len(results) == planned, f"{len(results)} result lines, {planned} jobs planned"
    config_ids = [tuple(json.loads(line)[0]) for line in (run_dir / "configs.json").read_text().splitlines()]
    assert len(config_ids) == len(set(config_ids)), "a config id is logged twice in configs.json"
    assert set(config_ids) >= {line_key[0] for line_key in keys}
    with open(run_dir / "results.pkl", "rb") as handle:
        pickled = pickle.load(handle)
    assert sorted((tuple(run.config_id), float(run.budget)) for run in pickled.get_all_runs()) == sorted(keys)
    assert len(logged_results_to_HBS_result(str(run_dir)).get_all_runs()) == planned
    assert json.loads((run_dir / "run.json").read_text()).get("finished") is not None
    return check


def redispatch_lines(text: str) -> int:
    return sum("re-dispatching" in line for line in text.splitlines())
