"""benchmarks/gpu_throughput.py keeps working: its CPU smoke mode runs every table (no GPU needed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


@pytest.mark.timeout(300)
def test_the_cpu_quick_mode_prints_and_writes_every_table(tmp_path: Path) -> None:
    out = tmp_path / "throughput.json"
    # An empty data directory: the 8x8 digits stand in for MNIST, which keeps the run to seconds.
    finished = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_throughput.py"), "--device", "cpu", "--quick",
         "--data-dir", str(tmp_path), "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=280, check=False,
    )  # fmt: skip

    assert finished.returncode == 0, finished.stderr[-2000:]
    assert "28x28 data: digits" in finished.stdout
    tables = json.loads(out.read_text())
    steps = {(row["pipeline"], row["batch"]) for row in tables["steps"]}
    # No CUDA: the graph pipelines are left out, the eager ones run at every batch size.
    assert steps == {
        (name, batch) for name in ("tutorial", "hand-eager", "trainer-eager") for batch in (21, 128, 512)
    }
    assert all(row["images_per_second"] > 0 and row["us_per_step"] > 0 for row in tables["steps"])
    assert {(row["images"], row["step_mode"]) for row in tables["precision"]} == {
        ("8x8", "eager"),
        ("32x32", "eager"),
    }
    assert [row["processes"] for row in tables["packing"]] == [1, 2]
    assert all(row["aggregate_images_per_second"] > 0 for row in tables["packing"])
    # The packed processes start training together once all are ready, not one start-up after another.
    assert all(row["start_spread_seconds"] < 0.5 for row in tables["packing"]), tables["packing"]
    assert {row["step_modes"] for row in tables["packing"]} == {"eager"}
    assert [row["cudnn_benchmark"] for row in tables["autotune"]] == ["off", "on"]
    for row in tables["autotune"]:
        assert row["jobs"] == 4 and row["training"] > 0 and row["overhead"] >= 0
    # No CUDA: the threads step eagerly, without streams; each row counts every thread's images.
    assert [(row["threads"], row["step_mode"]) for row in tables["streams"]] == [(1, "eager"), (2, "eager")]
    assert all(row["aggregate_images_per_second"] > 0 for row in tables["streams"])


def test_child_processes_keep_the_import_path_they_were_given(monkeypatch: pytest.MonkeyPatch) -> None:
    # On the device machine the packages it lacks come from carried wheels through PYTHONPATH: a child
    # started with the project's path alone could not import Pyro4 (seen in a dry run of gpu_check.sh).
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import gpu_throughput
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    monkeypatch.setenv("PYTHONPATH", "/tmp/site")
    assert gpu_throughput.child_environment()["PYTHONPATH"].split(os.pathsep) == [str(REPO), "/tmp/site"]
    monkeypatch.delenv("PYTHONPATH")
    assert gpu_throughput.child_environment()["PYTHONPATH"] == str(REPO)


@pytest.mark.timeout(120)
def test_tables_picks_what_runs_and_refuses_unknown_ones(tmp_path: Path) -> None:
    script = [sys.executable, str(REPO / "benchmarks" / "gpu_throughput.py"), "--device", "cpu", "--quick"]
    out = tmp_path / "packing.json"

    chosen = subprocess.run(
        [*script, "--data-dir", str(tmp_path), "--tables", "packing", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=100, check=False,
    )  # fmt: skip
    refused = subprocess.run(
        [*script, "--tables", "packing,speed"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert chosen.returncode == 0, chosen.stderr[-2000:]
    assert set(json.loads(out.read_text())) == {"device", "packing"}
    assert refused.returncode == 2 and "unknown table(s) speed" in refused.stderr
