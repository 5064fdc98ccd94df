"""``python -m launch.slurm``: the generated sbatch script, read and really run with a stand-in srun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from launch import slurm
from tests.conftest import ProcessRun

FAKE_SRUN = """#!/bin/bash
# Stand-in for SLURM's srun on one machine: starts --ntasks copies of the command and waits for them.
ntasks=1
while [ $# -gt 0 ]; do
  case "$1" in --ntasks=*) ntasks=${1#--ntasks=}; shift ;; --*) shift ;; *) break ;; esac
done
pids=()
for ((task = 0; task < ntasks; task++)); do SLURM_PROCID=$task "$@" & pids+=($!); done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
exit $status
"""


def generate(tmp_path: Path, *extra: str) -> str:
    script = tmp_path / "search.sbatch"
    slurm.main(
        ["-o", str(script), "--run-dir", str(tmp_path / "runs" / "study"), "--run-id", "study", *extra]
    )
    return script.read_text()


def test_script_asks_for_one_task_per_worker_plus_the_master(tmp_path: Path) -> None:
    text = generate(tmp_path, "--n-workers", "4", "--gpus-per-task", "1", "--cpus-per-task", "8")
    assert "#SBATCH --ntasks=5\n" in text
    assert "#SBATCH --gpus=4\n" in text  # the workers' GPUs; the master's step asks for none
    assert "--gres=none bash -c 'exec python -m hpo_service --run-id study" in text
    assert "srun --ntasks=4 --exact --gpus-per-task=1 bash -c 'exec python -m workers" in text
    assert "--threads 8 --device cuda" in text
    assert f"--run-dir {tmp_path / 'runs' / 'study'}" in text  # workers find nameserver.json there
    assert subprocess.run(["bash", "-n"], input=text, text=True, check=False).returncode == 0


def test_several_workers_per_gpu_share_each_task(tmp_path: Path) -> None:
    text = generate(
        tmp_path, "--n-workers", "2", "--gpus-per-task", "1", "--cpus-per-task", "8", "--workers-per-gpu", "4"
    )
    assert "#SBATCH --ntasks=3\n" in text and "#SBATCH --gpus=2\n" in text
    assert "--min-workers 8" in text  # the master waits for every worker process
    worker_line = next(line for line in text.splitlines() if "-m workers" in line)
    assert "for i in $(seq 4); do" in worker_line and "--threads 2 --device cuda" in worker_line
    assert subprocess.run(["bash", "-n"], input=text, text=True, check=False).returncode == 0


def test_cpu_script_has_no_gpu_requests(tmp_path: Path) -> None:
    text = generate(tmp_path, "--n-workers", "2")
    assert "gpus" not in text
    assert "--device cpu" in text


def test_bad_arguments_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        generate(tmp_path, "--dataset", "mnist")
    assert raised.value.code == 2
    assert "--dataset mnist needs --data-dir" in capsys.readouterr().err
    assert not (tmp_path / "search.sbatch").exists()


@pytest.mark.slow
@pytest.mark.integration
def test_script_runs_a_search_with_a_stand_in_srun(process_run: ProcessRun, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(FAKE_SRUN)
    (bin_dir / "srun").chmod(0o755)
    generate(
        tmp_path, "--n-workers", "2", "--cpus-per-task", "1", "--max-budget", "3", "--n-iterations", "1",
        "--python", sys.executable, "--host-command", "echo 127.0.0.1",
    )  # fmt: skip
    path = f"{bin_dir}:{os.environ['PATH']}"
    job = process_run.start("job", ["bash", str(tmp_path / "search.sbatch")], {"PATH": path})
    assert job.wait(timeout=180) == 0, process_run.log("job")
    run_dir = tmp_path / "runs" / "study"
    results = [json.loads(line) for line in (run_dir / "results.json").read_text().splitlines()]
    assert len(results) == 4
    assert all(result["info"]["status"] == "ok" for _, _, _, result, _ in results)
    assert len({result["info"]["worker"] for _, _, _, result, _ in results}) == 2  # both tasks worked
    assert (run_dir / "results.pkl").is_file()
