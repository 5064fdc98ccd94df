"""benchmarks/gpu_verdict.py reads gpu_check.sh's outputs right: each of issue 13's bars passes, fails or
says it was not measured, from files shaped as the device run writes them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO

VERDICT = REPO / "benchmarks" / "gpu_verdict.py"
T0 = 1_800_000_000.0


def throughput(
    *, ratio_21: float = 0.9, packing: dict[int, float] | None = None, device: str = "NVIDIA H200"
) -> dict[str, Any]:
    steps = []
    for batch, hand in ((21, 100_000.0), (128, 380_000.0)):
        trainer = hand * (ratio_21 if batch == 21 else 0.85)
        steps += [
            {"pipeline": "hand-graph", "batch": batch, "images_per_second": hand, "us_per_step": 1.0},
            {"pipeline": "trainer-graph", "batch": batch, "images_per_second": trainer, "us_per_step": 1.0},
            {
                "pipeline": "hand-graph-channels-last",
                "batch": batch,
                "images_per_second": hand / 2,
                "us_per_step": 2.0,
            },
        ]
    rates = packing or {1: 520_000.0, 2: 700_000.0, 4: 720_000.0, 8: 650_000.0}
    precision = [
        {"network": "lenet-small", "images": "28x28", "precision": name, "eager_images_per_second": eager,
         "graph_images_per_second": graph, "step_mode": "graph", "step_mode_reason": None}
        for name, eager, graph in (("fp32", 50_000.0, 400_000.0), ("bf16", 40_000.0, 300_000.0))
    ]  # fmt: skip
    autotune = [
        {"cudnn_benchmark": "off", "warm_up": 1.0, "training": 2.0, "overhead": 0.5, "jobs": 4},
        {"cudnn_benchmark": "on", "warm_up": 1.2, "training": 1.9, "overhead": 1.5, "jobs": 4},
    ]
    return {
        "device": device,
        "steps": steps,
        "precision": precision,
        "packing": [{"processes": k, "aggregate_images_per_second": v} for k, v in rates.items()],
        "autotune": autotune,
    }


def write_search(run_dir: Path, *, jobs: int = 20, workers: int = 1, last_overhead: float = 0.1) -> None:
    """A reference search as workers on one GPU write it: jobs one after another per worker, 1 s of
    training each, 0.5 s outside training for each worker's first job and ``last_overhead`` for the last."""
    run_dir.mkdir(parents=True)
    configs, results = [], []
    clock = dict.fromkeys(range(workers), 0.0)
    for index in range(jobs):
        worker = index % workers
        overhead = 0.5 if index < workers else (last_overhead if index == jobs - 1 else 0.1)
        started = clock[worker]
        clock[worker] = started + 1.0 + overhead
        info = {"status": "ok", "train_seconds": 1.0, "worker": f"gpu-{worker}", "device": "H200 (cuda:0)",
                "precision": "fp32", "step_mode": "graph", "peak_gpu_memory": 40 * 2**20}  # fmt: skip
        stamps = {"submitted": T0 + started, "started": T0 + started, "finished": T0 + clock[worker]}
        configs.append(json.dumps([[0, 0, index], {"learning_rate": 0.01}, {}]))
        results.append(json.dumps([[0, 0, index], 1.0, stamps, {"loss": 0.1, "info": info}, None]))
    (run_dir / "configs.json").write_text("\n".join(configs) + "\n")
    (run_dir / "results.json").write_text("\n".join(results) + "\n")


def write_tests(path: Path, *, tests: int = 44, failures: int = 0, skipped: int = 0) -> None:
    path.write_text(
        f'<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" errors="0" '
        f'failures="{failures}" skipped="{skipped}" tests="{tests}" time="60.0"/></testsuites>'
    )


def verdict(out: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(VERDICT), str(out), *options],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def lines_by_check(stdout: str) -> dict[str, str]:
    """Each check's verdict by a word of its name (notes, which start with "note:", are not checks)."""
    found = {}
    for line in stdout.splitlines():
        result = next((word for word in ("PASS", "FAIL", "NOT MEASURED") if line.startswith(word)), None)
        for key in (
            "measured on",
            "batch 21",
            "batch 128",
            "default workers:",
            "aggregate",
            "gpu test",
            "carry",
            "wall minus",
        ):
            if result is not None and key in line:
                found[key] = result
    return found


@pytest.fixture
def out(tmp_path: Path) -> Path:
    (tmp_path / "gpu-throughput.json").write_text(json.dumps(throughput()))
    write_search(tmp_path / "reference-search")
    write_tests(tmp_path / "gpu-tests.xml")
    return tmp_path


def test_a_run_that_meets_every_bar_passes_each_check(out: Path) -> None:
    finished = verdict(out)

    assert finished.returncode == 0, finished.stdout + finished.stderr
    checks = lines_by_check(finished.stdout)
    assert len(checks) == 8 and set(checks.values()) == {"PASS"}
    assert "wall 22.4 s, 1 worker(s)" in finished.stdout
    assert "520,000 with 1 process(es)" in finished.stdout
    assert "note: packing favours 2 worker(s) per GPU" in finished.stdout
    assert "note: fastest precision for lenet-small on 28x28: fp32 (400,000 images/s)" in finished.stdout
    assert "note: cudnn.benchmark off is faster" in finished.stdout
    assert (
        "note: at batch 21 the hand graph does 50,000 images/s channels-last, 100,000 contiguous (0.50x"
        in (finished.stdout)
    )


def test_each_missed_bar_fails_its_own_check(out: Path) -> None:
    (out / "gpu-throughput.json").write_text(json.dumps(throughput(ratio_21=0.7, packing={1: 300_000.0})))
    write_tests(out / "gpu-tests.xml", failures=2)
    shutil.rmtree(out / "reference-search")
    write_search(out / "reference-search", last_overhead=0.45)

    finished = verdict(out)

    assert finished.returncode == 1
    checks = lines_by_check(finished.stdout)
    assert checks["batch 21"] == "FAIL" and checks["batch 128"] == "PASS"
    assert checks["aggregate"] == "FAIL" and checks["gpu test"] == "FAIL"
    assert checks["wall minus"] == "FAIL" and "other jobs at most 0.45 s" in finished.stdout


def test_figures_from_another_gpu_fail_the_device_check_alone(out: Path) -> None:
    (out / "gpu-throughput.json").write_text(json.dumps(throughput(device="NVIDIA H100 80GB HBM3")))

    finished = verdict(out)

    assert finished.returncode == 1
    checks = lines_by_check(finished.stdout)
    assert checks.pop("measured on") == "FAIL" and set(checks.values()) == {"PASS"}
    assert "NVIDIA H100 80GB HBM3" in finished.stdout


def test_a_slow_or_short_search_fails_and_a_packed_search_gets_its_own_line(out: Path) -> None:
    write_search(out / "reference-search-k2", jobs=19, workers=2)

    finished = verdict(out)

    assert finished.returncode == 1
    assert "FAIL         reference search, k2: 20 jobs" in finished.stdout
    assert "19 jobs, no failures" in finished.stdout


def test_missing_outputs_are_not_measured_and_never_pass(tmp_path: Path) -> None:
    write_tests(tmp_path / "gpu-tests.xml", skipped=44)  # a CPU dry run: every gpu test skipped

    finished = verdict(tmp_path)

    assert finished.returncode == 1
    checks = lines_by_check(finished.stdout)
    assert len(checks) == 8 and set(checks.values()) == {"NOT MEASURED"}
    assert verdict(tmp_path, "--best-k").returncode == 1


def test_best_k_is_the_fewest_workers_within_five_percent_of_the_best_aggregate(out: Path) -> None:
    assert verdict(out, "--best-k").stdout.strip() == "2"  # 700k is within 5 % of 4's 720k
    (out / "gpu-throughput.json").write_text(json.dumps(throughput(packing={1: 500_000.0, 2: 480_000.0})))
    assert verdict(out, "--best-k").stdout.strip() == "1"


def test_a_packing_table_under_mps_is_noted_beside_the_one_without(out: Path) -> None:
    mps = {"packing": [{"processes": 4, "aggregate_images_per_second": 900_000.0}]}
    (out / "gpu-throughput-mps.json").write_text(json.dumps(mps))

    finished = verdict(out)

    assert "note: 4 process(es) under MPS: 900,000 images/s (without MPS: 720,000)" in finished.stdout


def test_threads_with_their_own_streams_are_noted_beside_as_many_processes(out: Path) -> None:
    tables = throughput(packing={1: 380_000.0, 2: 390_000.0, 4: 395_000.0})
    tables["streams"] = [
        {"threads": count, "aggregate_images_per_second": rate, "step_mode": "graph"}
        for count, rate in ((1, 370_000.0), (2, 610_000.0), (8, 640_000.0))
    ]
    (out / "gpu-throughput.json").write_text(json.dumps(tables))

    stdout = verdict(out).stdout

    assert (
        "note: 2 thread(s) of one process, hand-written graph steps on a stream each: "
        "610,000 images/s; 2 process(es): 390,000" in stdout
    )
    assert "on a stream each: 640,000 images/s\n" in stdout  # no 8-process row to set beside it
    assert "note: at best threads 640,000, processes 395,000 images/s; threads reach 500,000" in stdout


def test_streams_that_do_not_pass_the_plateau_say_so(out: Path) -> None:
    tables = throughput(packing={1: 380_000.0})
    tables["streams"] = [{"threads": 1, "aggregate_images_per_second": 375_000.0}]
    (out / "gpu-throughput.json").write_text(json.dumps(tables))

    assert "processes 380,000 images/s; neither reaches 500,000" in verdict(out).stdout
