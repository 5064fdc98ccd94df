"""Mixed precision (workers.precision): what each setting means per device, that training stays correct in
each, and the CUDA paths (bf16 / fp16 with a gradient scaler, cuDNN autotuning), skipped without CUDA."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from hpo_service.errors import SettingsError
from workers import precision as precision_module
from workers.data import load_dataset
from workers.device import configure_device, select_device
from workers.precision import Precision, cpu_has_native_bf16, resolve_precision
from workers.settings import WorkerSettings
from workers.trainer import train, train_with_state

CPU = torch.device("cpu")
CONFIG = {"learning_rate": 0.05, "batch_size": 32, "optimizer": "momentum", "conv_layers": 2}
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")


@pytest.mark.parametrize(("flags", "native"), [("fpu sse avx512f avx512_bf16", True), ("fpu amx_bf16", True),
                                               ("fpu sse avx512f", False)])  # fmt: skip
def test_native_bf16_is_read_from_the_cpu_flags(tmp_path: Path, flags: str, native: bool) -> None:
    cpu_info = tmp_path / "cpuinfo"
    cpu_info.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    assert cpu_has_native_bf16(cpu_info) is native
    assert cpu_has_native_bf16(tmp_path / "absent") is False


@pytest.mark.parametrize("native", [True, False])
def test_auto_on_cpu_is_bf16_only_where_the_cpu_has_it(monkeypatch: pytest.MonkeyPatch, native: bool) -> None:
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: native)
    assert resolve_precision("auto", CPU) == Precision("bf16" if native else "fp32", "cpu")
    assert resolve_precision(" FP32 ", CPU).name == "fp32"
    assert resolve_precision("bf16", CPU).name == "bf16"


def test_unknown_precisions_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        resolve_precision("fp8", CPU)
    with pytest.raises(ValueError, match="unknown precision"):
        Precision("auto", "cpu")
    with pytest.raises(SettingsError, match="--precision"):
        WorkerSettings(run_id="r", run_dir=Path("."), precision="half")


def test_autocast_and_gradient_scaler_per_format() -> None:
    layer = nn.Linear(4, 2)
    inputs = torch.ones(3, 4)
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16)):
        with Precision(name, "cpu").autocast():
            assert layer(inputs).dtype == dtype, name
    assert Precision("fp32", "cpu").grad_scaler() is None
    assert Precision("bf16", "cpu").grad_scaler() is None
    assert isinstance(Precision("fp16", "cpu").grad_scaler(), torch.amp.GradScaler)


def test_bf16_trains_as_well_as_fp32() -> None:
    digits = load_dataset("digits", None, CPU)
    outcomes = {name: train(CONFIG, 3, CPU, digits, seed=1, precision=name) for name in ("fp32", "bf16")}
    for name, outcome in outcomes.items():
        assert outcome.precision == name and outcome.to_info()["precision"] == name
        assert not outcome.diverged and outcome.validation_error < 0.2
    # Same seed, same batches: the formats differ only by rounding, well within the noise between seeds.
    assert abs(outcomes["fp32"].validation_error - outcomes["bf16"].validation_error) < 0.05


# CUDA (the `gpu` marker; skipped without CUDA).


@pytest.mark.gpu
@needs_cuda
def test_auto_on_cuda_is_fp32_with_tf32() -> None:
    device = select_device("cuda")
    resolved = resolve_precision("auto", device)
    assert resolved == Precision("fp32", "cuda") and resolved.grad_scaler() is None
    configure_device(device)
    assert torch.backends.cudnn.benchmark
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("name", ["fp32", "bf16", "fp16"])
def test_training_on_cuda_in_each_precision(name: str) -> None:
    device = select_device("cuda")
    if name == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    configure_device(device)
    data = load_dataset("digits", None, device)

    # No augmentation: crop_flip mirrors 8x8 digits, and 3 epochs of that end at 0.35-0.43 on any device.
    # This configuration ends at 0.07-0.09 on the CPU in each precision (fp16 through its scaler).
    outcome = train(CONFIG, 3, device, data, precision=name)

    assert outcome.precision == name and not outcome.diverged
    assert outcome.validation_error < 0.3


@pytest.mark.parametrize("name", ["fp32", "bf16", "fp16"])
def test_the_cuda_precision_configuration_reaches_its_threshold_on_cpu(name: str) -> None:
    # The same run as test_training_on_cuda_in_each_precision: its threshold must be reachable.
    outcome = train(CONFIG, 3, CPU, load_dataset("digits", None, CPU), precision=name)

    assert outcome.precision == name and outcome.validation_error < 0.3


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("name", ["fp32", "fp16"])
def test_resumed_run_on_cuda_matches_the_straight_run(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    device = select_device("cuda")
    # cuDNN's autotuner may pick other kernels per run; for the comparison, fixed deterministic ones.
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    data = load_dataset("digits", None, device)
    config: dict[str, Any] = {**CONFIG, "dropout": 0.2, "augmentation": "affine"}
    options: dict[str, Any] = {"seed": 4, "schedule_epochs": 3, "precision": name}

    _, straight = train_with_state(config, 3, device, data, **options)
    _, early = train_with_state(config, 1, device, data, **options)
    _, resumed = train_with_state(config, 3, device, data, resume=early, **options)

    assert straight is not None and resumed is not None and resumed.rng["cuda"] is not None
    for key, tensor in straight.model.items():
        torch.testing.assert_close(resumed.model[key], tensor, rtol=1e-5, atol=1e-6)
