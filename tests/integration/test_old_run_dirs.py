"""A run directory written by an earlier version (commit 208aab4, interrupted mid-run; see
tests/data/run-208aab4/README.md) still opens in analysis and resumes to completion with today's code."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from analysis.load import load_run
from hpo_service import run_files
from hpo_service.brackets import planned_jobs
from tests.conftest import REPO, ProcessRun
from tests.support.run_checks import check_complete

FIXTURE = REPO / "tests" / "data" / "run-208aab4"
KEPT_RESULTS = 15
PLANNED = planned_jobs("bohb", 1.0, 27.0, 3.0, 1)  # 27 + 9 + 3 + 1


def copied_run(tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    shutil.copytree(FIXTURE, run_dir, ignore=shutil.ignore_patterns("README.md"))
    return run_dir


def test_the_old_run_dir_is_analysed(tmp_path: Path) -> None:
    run_dir = copied_run(tmp_path)

    run = load_run(run_dir, prefer="json")
    assert len(run.jobs) == KEPT_RESULTS and all(job.status == "ok" for job in run.jobs)
    assert (run.metadata.optimizer, run.metadata.max_budget, run.metadata.run_id) == ("bohb", 27.0, "r208")
    summary = subprocess.run(
        [sys.executable, "-m", "analysis", "summary", str(run_dir)],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert summary.returncode == 0, summary.stderr
    assert f"jobs        {KEPT_RESULTS} on " in summary.stdout, summary.stdout


@pytest.mark.integration
@pytest.mark.slow
def test_the_old_run_dir_resumes_to_completion(process_run: ProcessRun, tmp_path: Path) -> None:
    run_dir = copied_run(tmp_path)
    kept = (run_dir / run_files.RESULTS).read_text().splitlines()
    started = json.loads((run_dir / run_files.RUN_DESCRIPTION).read_text())["started"]
    assert len(kept) == KEPT_RESULTS < PLANNED

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
            "--train-limit",
            "300",
        ],
    )
    assert resumed.wait(timeout=300) == 0, process_run.log("resume")

    check_complete(run_dir, PLANNED, kept)  # old lines unchanged, every job once, pickle and run.json final
    description = json.loads((run_dir / run_files.RUN_DESCRIPTION).read_text())
    assert description["started"] == started
    assert len(load_run(run_dir, prefer="json").jobs) == PLANNED
