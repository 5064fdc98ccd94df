"""Step modes (workers.graph_step) where no GPU is needed: which mode a run gets and why, the fallback to
eager steps when a capture fails, and the pieces a graph relies on (graph-safe optimizers, their state
across step modes, undoing the warm-up). The CUDA runs are in test_graph_steps_gpu.py."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import pytest
import torch
from torch import nn

from hpo_service.records import JobRequest
from hpo_service.vocabulary import OPTIMIZERS, SCHEDULES
from tests.unit import test_graph_steps_gpu as gpu_tests
from workers import graph_step
from workers.checkpoints import capture_objects, load_optimizer_state
from workers.data import DatasetTensors, load_dataset
from workers.graph_step import check_step_mode, graph_obstacle
from workers.precision import Precision
from workers.trainer import TrainingSpec, train
from workers.worker import TrainingWorker

CPU = torch.device("cpu")
CUDA = torch.device("cuda")  # a device object only: nothing here runs on it
CONFIG = {"learning_rate": 0.05, "batch_size": 32, "optimizer": "momentum", "lr_schedule": "cosine"}


@pytest.fixture(scope="module")
def few_digits() -> DatasetTensors:
    return load_dataset("digits", None, CPU, train_limit=300)


def test_step_modes_are_checked_and_normalised(few_digits: DatasetTensors) -> None:
    assert check_step_mode(" Graph ") == "graph"
    with pytest.raises(ValueError, match="unknown step mode 'compiled'"):
        check_step_mode("compiled")
    with pytest.raises(ValueError, match="unknown step mode"):
        train(CONFIG, 1, CPU, few_digits, step_mode="fast")


@pytest.mark.parametrize(
    ("mode", "device", "precision", "expected"),
    [
        ("eager", CUDA, "bf16", ""),
        ("auto", CPU, "fp32", ""),
        ("graph", CPU, "fp32", "CUDA graphs need a CUDA device, this run is on cpu"),
        ("auto", CUDA, "fp16", "fp16 needs a gradient scaler, whose step cannot be captured in a graph"),
        ("graph", CUDA, "fp16", "fp16 needs a gradient scaler, whose step cannot be captured in a graph"),
        ("auto", CUDA, "bf16", None),
        ("graph", CUDA, "fp32", None),
    ],
)
def test_graph_obstacle_per_mode_device_and_precision(
    mode: str, device: torch.device, precision: str, expected: str | None
) -> None:
    assert graph_obstacle(mode, device, Precision(precision, device.type)) == expected


def test_auto_on_cpu_trains_eagerly_without_a_reason(few_digits: DatasetTensors) -> None:
    outcome = train(CONFIG, 1, CPU, few_digits, precision="fp32")

    assert (outcome.step_mode, outcome.step_mode_reason) == ("eager", None)
    assert outcome.to_info()["step_mode"] == "eager"


def test_graph_asked_on_cpu_trains_eagerly_and_says_why(few_digits: DatasetTensors) -> None:
    # Chosen over an error: a worker started with --step-mode graph on a CPU host still does its jobs.
    asked = train(CONFIG, 2, CPU, few_digits, precision="fp32", step_mode="graph")
    eager = train(CONFIG, 2, CPU, few_digits, precision="fp32", step_mode="eager")

    assert asked.step_mode == "eager"
    assert asked.step_mode_reason == "CUDA graphs need a CUDA device, this run is on cpu"
    assert asked.train_loss_per_epoch == eager.train_loss_per_epoch


def test_a_failed_capture_trains_eagerly_with_one_warning_and_the_reason(
    few_digits: DatasetTensors, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    captures: list[tuple[torch.Tensor, torch.Tensor]] = []

    def failing_capture(model: nn.Module, optimizer: Any, **kwargs: Any) -> None:
        captures.append(kwargs["sample"])
        raise RuntimeError("operation not permitted when stream is capturing\nsecond line")

    eager = train(CONFIG, 2, CPU, few_digits, precision="fp32", step_mode="eager")
    # As if on CUDA: the capture is tried, and raises.
    monkeypatch.setattr(graph_step, "graph_obstacle", lambda *arguments: None)
    monkeypatch.setattr(graph_step, "capture_steps", failing_capture)
    with caplog.at_level(logging.WARNING, logger="workers"):
        outcome = train(CONFIG, 2, CPU, few_digits, precision="fp32", step_mode="graph")

    assert len(captures) == 1 and captures[0][0].shape == (32, *few_digits.input_shape)
    assert outcome.step_mode == "eager" and not outcome.diverged
    reason = "graph capture failed: RuntimeError: operation not permitted when stream is capturing"
    assert outcome.step_mode_reason == reason
    assert [record.getMessage() for record in caplog.records] == [f"training eagerly: {reason}"]
    assert outcome.train_loss_per_epoch == eager.train_loss_per_epoch
    assert outcome.validation_error == eager.validation_error


def test_a_worker_reports_the_step_mode_it_used_and_why(few_digits: DatasetTensors) -> None:
    worker = TrainingWorker(
        "test", data=few_digits, device=CPU, device_name="cpu (test)", precision="fp32", step_mode="graph"
    )

    info = worker.evaluate(JobRequest((0, 0, 0), dict(CONFIG), 1.0)).info

    assert info["step_mode"] == "eager"
    assert info["step_mode_reason"] == "CUDA graphs need a CUDA device, this run is on cpu"
    with pytest.raises(ValueError, match="unknown step mode"):
        TrainingWorker("test", data=few_digits, device=CPU, device_name="cpu", step_mode="sometimes")


# Graph-safe optimizers and their state across step modes.

# What makes each optimizer read its rate from a device tensor (the SGD family: "fused"). Adagrad's fused
# kernel refuses CUDA parameters in torch 2.11, the GPU machine's; its multi-tensor path does not.
GRAPH_SAFE_FLAGS = {
    "adam": "capturable",
    "adamw": "capturable",
    "rmsprop": "capturable",
    "adagrad": "foreach",
}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_graph_safe_optimizers_read_the_rate_tensor(name: str) -> None:
    rate = torch.tensor(0.5)
    optimizer = TrainingSpec(optimizer=name).make_optimizer([nn.Parameter(torch.zeros(2))], graph_rate=rate)

    group = optimizer.param_groups[0]
    assert group["lr"] is rate
    assert group[GRAPH_SAFE_FLAGS.get(name, "fused")] is True


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "adagrad"])
def test_graph_safe_optimizers_that_run_on_a_cpu_take_the_eager_steps(name: str) -> None:
    # The capturable Adam family needs CUDA; fused SGD and multi-tensor Adagrad also run here, and must
    # step as the eager optimizer does while the schedule changes the rate tensor.
    spec = TrainingSpec(optimizer=name, learning_rate=0.1, weight_decay=0.01)
    eager_model, graph_model, inputs, labels = _twin_models()
    rate = torch.tensor(0.1)
    eager, graph_safe = (
        spec.make_optimizer(eager_model.parameters()),
        spec.make_optimizer(graph_model.parameters(), graph_rate=rate),
    )

    for scheduled in (0.1, 0.1, 0.05, 0.2, 0.01):
        eager.param_groups[0]["lr"] = scheduled
        rate.fill_(scheduled)
        _step(eager_model, eager, inputs, labels)
        _step(graph_model, graph_safe, inputs, labels)

    for key, value in eager_model.state_dict().items():
        torch.testing.assert_close(graph_model.state_dict()[key], value, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", ["momentum", "adam"])
def test_a_state_moves_between_eager_and_graph_safe_optimizers(name: str) -> None:
    spec = TrainingSpec(optimizer=name, learning_rate=0.1)
    eager_parameter = nn.Parameter(torch.ones(3))
    eager = spec.make_optimizer([eager_parameter])
    eager_parameter.grad = torch.ones(3)
    eager.step()
    rate = torch.tensor(0.02)
    graph_safe = spec.make_optimizer([nn.Parameter(torch.ones(3))], graph_rate=rate)

    load_optimizer_state(graph_safe, eager.state_dict())

    group = graph_safe.param_groups[0]
    assert group["lr"] is rate  # the tensor a graph reads, not a copy or the saved float
    assert group.get("capturable", group.get("fused")) is True
    saved = graph_safe.state_dict()["state"][0]
    for key, value in eager.state_dict()["state"][0].items():
        torch.testing.assert_close(saved[key].float(), value.float())


def test_a_checkpoint_holds_a_graph_rate_as_a_float() -> None:
    model = nn.Linear(2, 2)
    optimizer = TrainingSpec().make_optimizer(model.parameters(), graph_rate=torch.tensor(0.25))

    objects = capture_objects(model, optimizer, None, {})

    assert objects["optimizer"]["param_groups"][0]["lr"] == 0.25
    assert type(objects["optimizer"]["param_groups"][0]["lr"]) is float
    assert isinstance(optimizer.param_groups[0]["lr"], torch.Tensor)  # the live optimizer keeps its tensor


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_undone_warm_up_steps_leave_the_next_step_as_a_fresh_run_takes_it(name: str) -> None:
    # The warm-up before a capture creates the optimizer's state; zeroing it must equal a fresh state.
    spec = TrainingSpec(optimizer=name, learning_rate=0.1, weight_decay=0.01)
    fresh_model, warmed_model, inputs, labels = _twin_models()
    fresh, warmed = (
        spec.make_optimizer(fresh_model.parameters()),
        spec.make_optimizer(warmed_model.parameters()),
    )
    weights = {key: value.clone() for key, value in warmed_model.state_dict().items()}
    before = graph_step._optimizer_tensors(warmed)
    for _ in range(3):
        _step(warmed_model, warmed, inputs * 3, labels)

    graph_step._restore_optimizer_tensors(warmed, before)
    with torch.no_grad():
        for key, value in warmed_model.state_dict().items():
            value.copy_(weights[key])
    for _ in range(2):
        _step(fresh_model, fresh, inputs, labels)
        _step(warmed_model, warmed, inputs, labels)

    for key, value in fresh_model.state_dict().items():
        torch.testing.assert_close(warmed_model.state_dict()[key], value)


def _twin_models() -> tuple[nn.Module, nn.Module, torch.Tensor, torch.Tensor]:
    """Two linear models with the same weights, and a batch of inputs and labels for them."""
    torch.manual_seed(0)
    first, inputs, labels = nn.Linear(4, 3), torch.randn(8, 4), torch.randint(0, 3, (8,))
    second = nn.Linear(4, 3)
    second.load_state_dict(first.state_dict())
    return first, second, inputs, labels


def _step(
    model: nn.Module, optimizer: torch.optim.Optimizer, inputs: torch.Tensor, labels: torch.Tensor
) -> None:
    optimizer.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(inputs), labels).backward()
    optimizer.step()


class CountingGraph:
    """Stands in for a captured graph: counts replays (what a replay computes needs a GPU)."""

    def __init__(self) -> None:
        self.replays = 0

    def replay(self) -> None:
        self.replays += 1


def test_graph_steps_fill_inputs_and_the_rate_tensor_then_replay_and_step_other_shapes_eagerly() -> None:
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    rate = torch.tensor(0.5)
    optimizer = TrainingSpec(optimizer="sgd").make_optimizer(model.parameters(), graph_rate=rate)
    graph, static_loss = CountingGraph(), torch.tensor(1.25)
    steps = graph_step.GraphSteps(
        model, optimizer, contextlib.nullcontext, graph,  # type: ignore[arg-type]
        torch.zeros(8, 4), torch.zeros(8, dtype=torch.long), static_loss, rate,
    )  # fmt: skip
    batch, labels = torch.randn(8, 4), torch.randint(0, 3, (8,))

    assert steps.run(batch, labels, 0.1) is static_loss
    assert graph.replays == 1 and rate.item() == pytest.approx(0.1)
    torch.testing.assert_close(steps.static_input, batch)
    torch.testing.assert_close(steps.static_labels, labels)
    # The same rate again launches no fill (a constant schedule costs nothing per step); a new one fills.
    rate.fill_(7.0)
    steps.run(batch, labels, 0.1)
    assert rate.item() == 7.0 and graph.replays == 2
    steps.run(batch, labels, 0.2)
    assert rate.item() == pytest.approx(0.2)
    # The epoch's last, smaller batch: one eager step on the same optimizer, at the same rate tensor.
    weights = model.weight.detach().clone()
    loss = steps.run(batch[:5], labels[:5], 0.2)
    assert graph.replays == 3 and loss is not static_loss and loss.shape == ()
    assert not torch.equal(model.weight, weights)


# The GPU tests' quality thresholds must be reachable: the same configurations, eagerly on the CPU.


@pytest.mark.slow
def test_the_graph_tests_same_curve_configurations_reach_their_threshold_on_cpu() -> None:
    digits = load_dataset("digits", None, CPU)
    errors = {
        (optimizer, schedule): train(
            gpu_tests.same_curve_config(optimizer, schedule), 2, CPU, digits, precision="fp32",
            seed=gpu_tests.SAME_CURVE_SEED, schedule_epochs=3,
        ).validation_error
        for optimizer in OPTIMIZERS
        for schedule in SCHEDULES
    }  # fmt: skip

    assert {key: error for key, error in errors.items() if error >= gpu_tests.SAME_CURVE_ERROR} == {}


@pytest.mark.parametrize("case", gpu_tests.LAYER_CASES)
def test_the_graph_tests_layer_configurations_reach_their_threshold_on_cpu(case: str) -> None:
    digits = load_dataset("digits", None, CPU)
    outcome = train(gpu_tests.layer_config(case), 3, CPU, digits, precision="fp32", seed=gpu_tests.LAYER_SEED)

    assert outcome.validation_error < gpu_tests.LAYER_ERROR
