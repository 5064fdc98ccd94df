"""Graph-captured training steps on a real GPU (the `gpu` marker; skipped without CUDA): a graph trains the
same curve as eager steps for every optimizer and schedule, with dropout and batch norm, across a resume,
falls back to eager where a capture fails, and a CUDA out-of-memory job fails alone."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch

from hpo_service.records import JobRequest, JobStatus
from hpo_service.vocabulary import OPTIMIZERS, SCHEDULES
from workers import training_spec
from workers.data import DatasetTensors, load_dataset
from workers.outcome import TrainingOutcome
from workers.trainer import train, train_with_state
from workers.worker import TrainingWorker

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available"),
]

# Rates that learn the digits in two epochs without diverging, per optimizer family (plain SGD at 0.05 ended
# at 0.53-0.82 error on the CPU, the cyclic schedule starting low; at 0.3 it ends at 0.13-0.38).
# test_step_modes.py trains these configurations eagerly on the CPU: the thresholds below are reachable.
RATES = {"sgd": 0.3, "adam": 0.002, "adamw": 0.002, "rmsprop": 0.001, "adagrad": 0.02}
BASE = {"batch_size": 32, "conv_layers": 2, "weight_decay": 0.0001}
SAME_CURVE_SEED, SAME_CURVE_ERROR = 2, 0.5
LAYER_CASES = {
    "batch_norm": {"batch_norm": True},
    "dropout": {"dropout": 0.3},
    "both_augmented": {"batch_norm": True, "dropout": 0.3, "augmentation": "affine"},
}
LAYER_SEED, LAYER_ERROR = 5, 0.3


def same_curve_config(optimizer: str, schedule: str) -> dict[str, Any]:
    return {
        **BASE,
        "optimizer": optimizer,
        "lr_schedule": schedule,
        "learning_rate": RATES.get(optimizer, 0.05),
    }


def layer_config(case: str) -> dict[str, Any]:
    return {**BASE, "optimizer": "adam", "learning_rate": 0.002, **LAYER_CASES[case]}


@pytest.fixture(scope="module")
def device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device())


@pytest.fixture(scope="module")
def digits(device: torch.device) -> DatasetTensors:
    return load_dataset("digits", None, device)


@pytest.fixture(autouse=True)
def deterministic_kernels(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # cuDNN's autotuner may pick other kernels per run; the comparisons need the same ones in both modes.
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    yield


def both_modes(
    config: dict[str, Any], epochs: int, data: DatasetTensors, **options: Any
) -> list[TrainingOutcome]:
    return [
        train(config, epochs, data.device, data, step_mode=mode, **options) for mode in ("graph", "eager")
    ]


def assert_same_curves(graph: TrainingOutcome, eager: TrainingOutcome, rtol: float) -> None:
    assert (graph.step_mode, graph.step_mode_reason, eager.step_mode) == ("graph", None, "eager")
    for name in ("train_loss_per_epoch", "validation_loss_per_epoch"):
        torch.testing.assert_close(getattr(graph, name), getattr(eager, name), rtol=rtol, atol=1e-4)
    assert graph.final_learning_rate == pytest.approx(eager.final_learning_rate)


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_graph_and_eager_train_the_same_curve(digits: DatasetTensors, optimizer: str, schedule: str) -> None:
    # Batch 32 leaves a smaller last batch per epoch: it runs eagerly between the replays.
    config = same_curve_config(optimizer, schedule)

    graph, eager = both_modes(config, 2, digits, precision="fp32", seed=SAME_CURVE_SEED, schedule_epochs=3)

    assert_same_curves(graph, eager, rtol=2e-3)
    assert graph.validation_error < SAME_CURVE_ERROR


def test_graph_and_eager_agree_under_bf16_autocast(digits: DatasetTensors) -> None:
    if not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    graph, eager = both_modes(
        {**BASE, "optimizer": "momentum", "learning_rate": 0.05}, 2, digits, precision="bf16"
    )

    assert_same_curves(graph, eager, rtol=3e-2)


def test_fp16_trains_eagerly_and_says_why(digits: DatasetTensors) -> None:
    outcome = train({**BASE, "learning_rate": 0.05}, 1, digits.device, digits, precision="fp16")

    assert outcome.step_mode == "eager"
    assert (
        outcome.step_mode_reason == "fp16 needs a gradient scaler, whose step cannot be captured in a graph"
    )


@pytest.mark.parametrize("case", LAYER_CASES)
def test_dropout_and_batch_norm_train_in_graph_mode(digits: DatasetTensors, case: str) -> None:
    graph, eager = both_modes(layer_config(case), 3, digits, precision="fp32", seed=LAYER_SEED)

    assert graph.step_mode == "graph" and not graph.diverged
    assert graph.validation_error < LAYER_ERROR
    # Dropout's masks may come from other offsets of the generator in a graph: the same quality, not curve.
    assert abs(graph.validation_error - eager.validation_error) < 0.1
    if "dropout" not in LAYER_CASES[case]:
        assert_same_curves(graph, eager, rtol=2e-3)


@pytest.mark.parametrize("first_mode", ["graph", "eager"])
def test_a_resumed_graph_run_ends_where_the_straight_graph_run_ends(
    digits: DatasetTensors, first_mode: str
) -> None:
    config = {
        **BASE,
        "optimizer": "adamw",
        "learning_rate": 0.002,
        "lr_schedule": "cosine",
        "batch_norm": True,
    }
    options: dict[str, Any] = {"seed": 4, "schedule_epochs": 3, "precision": "fp32"}

    straight_outcome, straight = train_with_state(
        config, 3, digits.device, digits, step_mode="graph", **options
    )
    _, early = train_with_state(config, 1, digits.device, digits, step_mode=first_mode, **options)
    resumed_outcome, resumed = train_with_state(
        config, 3, digits.device, digits, resume=early, step_mode="graph", **options
    )

    assert resumed_outcome.step_mode == "graph" and straight_outcome.step_mode == "graph"
    assert straight is not None and resumed is not None
    for key, tensor in straight.model.items():
        torch.testing.assert_close(resumed.model[key], tensor, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(
        resumed_outcome.validation_loss_per_epoch,
        straight_outcome.validation_loss_per_epoch,
        rtol=1e-4,
        atol=1e-5,
    )


def test_a_failed_capture_on_cuda_trains_eagerly(
    digits: DatasetTensors, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = {**BASE, "optimizer": "adam", "learning_rate": 0.002}
    eager = train(config, 2, digits.device, digits, precision="fp32", step_mode="eager")
    built = training_spec.TrainingSpec.make_optimizer

    def not_capturable(spec: Any, parameters: Any, *, graph_rate: Any = None) -> torch.optim.Optimizer:
        return built(spec, parameters)  # torch refuses to capture Adam without capturable=True

    monkeypatch.setattr(training_spec.TrainingSpec, "make_optimizer", not_capturable)
    outcome = train(config, 2, digits.device, digits, precision="fp32", step_mode="graph")

    assert outcome.step_mode == "eager" and outcome.step_mode_reason is not None
    assert outcome.step_mode_reason.startswith("graph capture failed: RuntimeError")
    torch.testing.assert_close(outcome.train_loss_per_epoch, eager.train_loss_per_epoch, rtol=1e-5, atol=1e-6)


def test_out_of_memory_fails_one_job_frees_its_memory_and_the_next_job_trains(digits: DatasetTensors) -> None:
    worker = TrainingWorker(
        "test",
        data=digits,
        device=digits.device,
        device_name="gpu (test)",
        precision="fp32",
        step_mode="auto",
    )
    small = {**BASE, "optimizer": "momentum", "learning_rate": 0.05}
    first = worker.evaluate(JobRequest((0, 0, 0), small, 1.0))
    assert first.status is JobStatus.OK and first.info["step_mode"] == "graph"
    torch.cuda.empty_cache()
    baseline = torch.cuda.memory_allocated(digits.device)
    # A real allocator failure: the caching allocator may hold only 64 MiB more than it holds now.
    total = torch.cuda.get_device_properties(digits.device).total_memory
    limit = (torch.cuda.memory_reserved(digits.device) + 64 * 2**20) / total
    torch.cuda.set_per_process_memory_fraction(limit, digits.device)
    try:
        huge = {**small, "filters": 2048, "units": 4096, "batch_size": 512}
        failed = worker.evaluate(JobRequest((0, 0, 1), huge, 1.0))
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, digits.device)

    assert failed.status is JobStatus.FAILED
    assert failed.reason is not None and failed.reason.startswith("CUDA out of memory")
    assert failed.info["peak_gpu_memory"] is not None
    assert torch.cuda.memory_allocated(digits.device) <= baseline
    after = worker.evaluate(JobRequest((0, 0, 2), small, 1.0))
    assert after.status is JobStatus.OK and after.info["step_mode"] == "graph"
    assert after.loss == pytest.approx(first.loss, abs=0.02)
