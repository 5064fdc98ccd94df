"""Which GPUs launch.local's workers use and how many it starts, without a GPU: nvidia-smi and the
environment are stood in for. (What several workers per GPU do to throughput needs a real GPU: issue 13.)"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from launch import local
from tests.conftest import REPO

LISTING = "".join(
    f"GPU {index}: NVIDIA H200 (UUID: GPU-{name})\n" for index, name in enumerate(("aaa", "bbb", "ccc"))
)


@pytest.fixture
def three_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local.shutil, "which", lambda name: "/usr/bin/nvidia-smi")

    def nvidia_smi(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        assert command == ["nvidia-smi", "-L"]
        return subprocess.CompletedProcess(command, 0, stdout=LISTING, stderr="")

    monkeypatch.setattr(local.subprocess, "run", nvidia_smi)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


@pytest.mark.usefixtures("three_gpus")
def test_every_listed_gpu_is_visible_unless_the_user_chose_some() -> None:
    assert local.visible_gpus() == ["0", "1", "2"]
    assert local.visible_gpus({"CUDA_VISIBLE_DEVICES": "2,0"}) == ["2", "0"]
    assert local.visible_gpus({"CUDA_VISIBLE_DEVICES": "GPU-bbb"}) == ["GPU-bbb"]
    # As CUDA reads it: the list ends at the first invalid entry; empty or -1 hides every GPU.
    assert local.visible_gpus({"CUDA_VISIBLE_DEVICES": "1,-1,2"}) == ["1"]
    assert local.visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert local.visible_gpus({"CUDA_VISIBLE_DEVICES": "-1"}) == []


def test_no_nvidia_smi_means_no_gpu_whatever_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local.shutil, "which", lambda name: None)
    assert local.visible_gpus({"CUDA_VISIBLE_DEVICES": "0"}) == []
    assert local.default_worker_count("auto", 2) == local.CPU_WORKERS


def settings_for(tmp_path: Path, *arguments: str) -> local.LaunchSettings:
    argv = ["--run-dir", str(tmp_path / "run"), "--no-tls", *arguments]
    return local.settings_from_args(local.build_parser().parse_args(argv), argv)


@pytest.mark.usefixtures("three_gpus")
def test_the_default_worker_count_is_gpus_times_workers_per_gpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local, "check_memory_for", lambda n_workers: None)
    assert settings_for(tmp_path).n_workers == 3
    assert settings_for(tmp_path, "--workers-per-gpu", "4").n_workers == 12
    assert settings_for(tmp_path, "--workers-per-gpu", "4", "--n-workers", "5").n_workers == 5
    assert settings_for(tmp_path, "--device", "cpu").n_workers == local.CPU_WORKERS
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert settings_for(tmp_path, "--workers-per-gpu", "2").n_workers == 2
    with pytest.raises(local.LaunchError, match="--workers-per-gpu must be at least 1"):
        settings_for(tmp_path, "--workers-per-gpu", "0")


@pytest.mark.usefixtures("three_gpus")
def test_workers_take_the_users_gpus_round_robin_and_share_the_cores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local, "check_memory_for", lambda n_workers: None)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,0")
    settings = settings_for(tmp_path, "--workers-per-gpu", "2")
    placements = local.worker_placements(settings)
    assert [(device, environment["CUDA_VISIBLE_DEVICES"]) for device, environment in placements] == [
        ("cuda", "2"), ("cuda", "0"), ("cuda", "2"), ("cuda", "0"),
    ]  # fmt: skip
    command = settings.worker_command("cuda")
    assert command[command.index("--workers-on-host") + 1] == "4"  # torch threads: cores / 4


def test_a_workers_gpu_is_named_by_the_users_visible_devices() -> None:
    import torch

    from workers.device import gpu_index, peak_memory

    assert gpu_index(torch.device("cuda", 1), {"CUDA_VISIBLE_DEVICES": "5,GPU-bbb"}) == "GPU-bbb"
    assert gpu_index(torch.device("cuda", 0), {}) == "0"
    assert gpu_index(torch.device("cpu"), {"CUDA_VISIBLE_DEVICES": "5"}) is None
    assert peak_memory(torch.device("cpu")) is None


def test_the_master_and_workers_that_leave_it_a_core_start_first(monkeypatch: pytest.MonkeyPatch) -> None:

    monkeypatch.setattr(local.os, "cpu_count", lambda: 2)
    assert [local.early_workers(count) for count in (1, 2, 4)] == [1, 1, 1]
    monkeypatch.setattr(local.os, "cpu_count", lambda: 16)
    assert [local.early_workers(count) for count in (1, 8, 32)] == [1, 8, 15]


def test_the_later_workers_wait_for_the_first_to_join_or_the_master_to_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hpo_service.progress import LiveCounts

    group = local.ProcessGroup()
    group.master = SimpleNamespace(poll=lambda: None)  # type: ignore[assignment]  # still running
    since = time.time()
    LiveCounts(planned=9, workers=1, updated=since + 0.01).write(tmp_path)
    started = time.monotonic()
    local.wait_for_workers(group, tmp_path, 1, since)  # the first worker joined: at once
    assert time.monotonic() - started < 1
    group.master = SimpleNamespace(poll=lambda: 2)  # type: ignore[assignment]  # exited (bad settings)
    local.wait_for_workers(group, tmp_path, 2, since)
    assert time.monotonic() - started < 1
    monkeypatch.setattr(local, "STAGGER_LIMIT", 0.2)  # counts of an earlier launch do not count
    group.master = SimpleNamespace(poll=lambda: None)  # type: ignore[assignment]
    local.wait_for_workers(group, tmp_path, 1, since + 60)
    assert 0.2 <= time.monotonic() - started < 2


def test_a_worker_warms_up_before_it_is_ready(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from workers import warm_up as warm_up_module
    from workers.data import load_dataset

    data = load_dataset("digits", None, torch.device("cpu"))
    runs: list[tuple[Any, ...]] = []
    monkeypatch.setattr(warm_up_module, "train", lambda *args, **kwargs: runs.append((args, kwargs)))
    monkeypatch.setattr(warm_up_module.torch.cuda, "synchronize", lambda device: None)
    monkeypatch.setattr(warm_up_module, "reset_peak_memory", lambda device: runs.append(("reset",)))
    warm_up_module.warm_up(torch.device("cuda"), data, "fp32", "graph")
    (args, kwargs), reset = runs
    config, epochs, _, small = args
    assert epochs == 1 and kwargs == {"precision": "fp32", "step_mode": "graph"}
    assert len(small.train_y) == warm_up_module.WARM_UP_IMAGES and len(small.test_y) <= 200
    assert reset == ("reset",)  # the first job's peak memory is its own

    def failing(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("no kernel image")

    monkeypatch.setattr(warm_up_module, "train", failing)
    warm_up_module.warm_up(torch.device("cuda"), data, "fp32", "auto")  # logged, not raised


def test_the_warm_up_takes_the_first_jobs_one_time_costs_on_the_cpu() -> None:
    """In a fresh interpreter: torch imports torch._dynamo (about 1 s of CPU) at the first optimizer it
    builds; after the warm-up that has happened, so the first job does not pay for it."""
    script = (
        "import sys, torch\n"
        "from workers.data import load_dataset\n"
        "from workers.warm_up import warm_up\n"
        "data = load_dataset('digits', None, torch.device('cpu'))\n"
        "before = 'torch._dynamo' in sys.modules\n"
        "seconds = warm_up(torch.device('cpu'), data, 'fp32', 'auto')\n"
        "print(before, 'torch._dynamo' in sys.modules, seconds > 0)\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=REPO, timeout=120
    ).stdout.split()
    assert output == ["False", "True", "True"]
