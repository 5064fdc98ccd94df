"""The trainer on the embedded digits data (seconds on a CPU), and the device / thread helpers it runs on."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from workers.data import DatasetTensors, load_dataset
from workers.device import (
    configure_device,
    configure_threads,
    device_description,
    select_device,
    threads_per_worker,
)
from workers.models import ModelBuildError, build_model, parameter_count
from workers.trainer import TrainingConfigError, TrainingOutcome, TrainingSpec, train

CPU = torch.device("cpu")
GOOD_CONFIG = {"learning_rate": 0.1, "batch_size": 32, "optimizer": "sgd", "momentum": 0.9}
INFO_KEYS = {
    "validation_error",
    "validation_loss",
    "test_error",
    "test_loss",
    "validation_error_per_epoch",
    "validation_loss_per_epoch",
    "train_loss_per_epoch",
    "epochs_trained",
    "total_epochs",
    "wall_seconds",
    "train_seconds",
    "samples_per_second",
    "parameter_count",
    "device",
    "final_learning_rate",
    "precision",
    "step_mode",
    "step_mode_reason",
    "diverged",
    "reason",
}
BUILTIN_SCALARS = (str, int, float, bool, type(None))


@pytest.fixture(scope="module")
def digits() -> DatasetTensors:
    return load_dataset("digits", None, CPU)


@pytest.fixture(scope="module")
def good_outcome(digits: DatasetTensors) -> TrainingOutcome:
    return train(GOOD_CONFIG, 2, CPU, digits, seed=0)


def assert_builtins(value: Any) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            assert type(key) is str
            assert_builtins(item)
    elif isinstance(value, list):
        for item in value:
            assert_builtins(item)
    else:
        assert type(value) in BUILTIN_SCALARS, f"{value!r} is a {type(value).__name__}"


def test_two_epochs_learn_digits(good_outcome: TrainingOutcome) -> None:
    # Chance is 0.9; a working CNN is far below it after two epochs.
    assert good_outcome.validation_error < 0.5
    assert good_outcome.test_error < 0.5
    assert not good_outcome.diverged and good_outcome.reason is None
    assert good_outcome.train_loss_per_epoch[-1] < good_outcome.train_loss_per_epoch[0]


def test_per_epoch_lists_and_final_values_agree(good_outcome: TrainingOutcome) -> None:
    assert good_outcome.epochs_trained == 2
    assert len(good_outcome.train_loss_per_epoch) == 2
    assert len(good_outcome.validation_loss_per_epoch) == 2
    assert len(good_outcome.validation_error_per_epoch) == 2
    assert good_outcome.validation_error == good_outcome.validation_error_per_epoch[-1]
    assert good_outcome.validation_loss == good_outcome.validation_loss_per_epoch[-1]
    assert good_outcome.test_loss is not None and math.isfinite(good_outcome.test_loss)


def test_timings_count_and_device(good_outcome: TrainingOutcome, digits: DatasetTensors) -> None:
    assert 0 < good_outcome.train_seconds <= good_outcome.wall_seconds
    expected_rate = 2 * len(digits.train_y) / good_outcome.train_seconds
    assert good_outcome.samples_per_second == pytest.approx(expected_rate)
    model = build_model(GOOD_CONFIG, digits.input_shape, digits.n_classes)
    assert good_outcome.parameter_count == parameter_count(model)
    assert good_outcome.device.startswith("cpu (")


def test_same_seed_gives_the_same_outcome(digits: DatasetTensors) -> None:
    config = {**GOOD_CONFIG, "dropout": 0.3}

    first = train(config, 2, CPU, digits, seed=7)
    second = train(config, 2, CPU, digits, seed=7)
    other = train(config, 2, CPU, digits, seed=8)

    assert first.train_loss_per_epoch == second.train_loss_per_epoch
    assert first.validation_loss_per_epoch == second.validation_loss_per_epoch
    assert (first.test_loss, first.test_error) == (second.test_loss, second.test_error)
    assert other.train_loss_per_epoch != first.train_loss_per_epoch


def test_huge_learning_rate_diverges_with_worst_errors(digits: DatasetTensors) -> None:
    outcome = train({"learning_rate": 1e6, "batch_size": 32, "optimizer": "sgd"}, 3, CPU, digits)

    assert outcome.diverged
    assert outcome.epochs_trained < 3
    assert outcome.reason is not None and outcome.reason.startswith("non-finite training loss at epoch")
    for error in (outcome.validation_error, outcome.test_error):
        assert math.isfinite(error) and 0.0 <= error <= 1.0
    assert outcome.validation_error == 1.0
    assert len(outcome.train_loss_per_epoch) == outcome.epochs_trained
    assert_builtins(outcome.to_info())


def test_to_info_has_the_documented_keys_and_builtins_only(good_outcome: TrainingOutcome) -> None:
    info = good_outcome.to_info()

    assert set(info) == INFO_KEYS
    assert_builtins(info)
    assert isinstance(info["train_loss_per_epoch"], list)
    assert type(info["epochs_trained"]) is int and type(info["diverged"]) is bool


@pytest.mark.parametrize(
    "config",
    [
        {"learning_rate": 0.003, "batch_size": 64, "optimizer": "adam", "conv_layers": 3, "kernel_size": 5},
        {"learning_rate": 0.1, "batch_size": 2000, "conv_layers": 0, "dropout": 0.2},
        {},
    ],
    ids=["adam-3-conv", "mlp-one-batch", "defaults"],
)
def test_other_optimizers_and_architectures_train(digits: DatasetTensors, config: dict[str, Any]) -> None:
    outcome = train(config, 1, CPU, digits)

    assert outcome.epochs_trained == 1 and not outcome.diverged
    assert 0.0 <= outcome.validation_error <= 1.0


def test_training_config_defaults_and_adam_ignores_momentum() -> None:
    assert TrainingSpec.from_config({}) == TrainingSpec(0.01, 64, "sgd", 0.0)
    assert TrainingSpec.from_config({"optimizer": "sgd", "momentum": 0.9}).momentum == 0.9
    spec = TrainingSpec.from_config({"optimizer": "adam", "learning_rate": 0.001})
    assert isinstance(spec.make_optimizer(iter([torch.nn.Parameter(torch.zeros(1))])), torch.optim.Adam)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"optimizer": "lbfgs"}, "unknown optimizer 'lbfgs'"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"learning_rate": "fast"}, "learning_rate"),
        ({"batch_size": 0}, "batch_size"),
        ({"momentum": 1.5}, "momentum"),
    ],
)
def test_invalid_training_configs_are_errors(
    digits: DatasetTensors, config: dict[str, Any], message: str
) -> None:
    with pytest.raises(TrainingConfigError, match=message):
        train(config, 1, CPU, digits)
    assert issubclass(TrainingConfigError, ValueError)


def test_invalid_architecture_is_a_model_build_error(digits: DatasetTensors) -> None:
    with pytest.raises(ModelBuildError, match="kernel_size"):
        train({"kernel_size": 4}, 1, CPU, digits)


@pytest.mark.parametrize("epochs", [0, -1])
def test_epochs_below_one_are_an_error(digits: DatasetTensors, epochs: int) -> None:
    with pytest.raises(ValueError, match="epochs"):
        train(GOOD_CONFIG, epochs, CPU, digits)


def test_device_name_is_reported_as_given(digits: DatasetTensors) -> None:
    limited = load_dataset("digits", None, CPU, train_limit=64)

    outcome = train(GOOD_CONFIG, 1, CPU, limited, device_name="test device")

    assert outcome.device == "test device"


@pytest.mark.gpu
def test_training_on_cuda() -> None:
    if not torch.cuda.is_available():
        pytest.skip("CUDA is not available")
    device = select_device("cuda")
    configure_device(device)
    data = load_dataset("digits", None, device)

    outcome = train(GOOD_CONFIG, 2, device, data)

    assert outcome.validation_error < 0.5
    assert outcome.device == torch.cuda.get_device_name(device)


# The device helpers the trainer runs under (workers.device).


def test_select_device_cpu_and_auto() -> None:
    assert select_device("cpu") == CPU
    assert select_device(" CPU ") == CPU
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert select_device("auto").type == expected
    assert select_device().type == expected


@pytest.mark.parametrize("name", ["tpu", "cuda:x", "gpu", ""])
def test_select_device_rejects_unknown_names(name: str) -> None:
    with pytest.raises(ValueError, match="unknown device"):
        select_device(name)


@pytest.mark.parametrize("name", ["cuda", "cuda:0"])
def test_select_device_rejects_cuda_without_cuda(name: str) -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ValueError, match="CUDA is not available"):
        select_device(name)


@pytest.mark.parametrize(
    ("workers_on_host", "cores", "expected"),
    [(1, 2, 2), (2, 2, 1), (4, 2, 1), (3, 16, 5), (1, 1, 1)],
)
def test_threads_per_worker_never_oversubscribes(workers_on_host: int, cores: int, expected: int) -> None:
    assert threads_per_worker(workers_on_host, cores) == expected


def test_threads_per_worker_reads_the_cores_and_rejects_zero_workers() -> None:
    assert threads_per_worker(1) >= 1
    with pytest.raises(ValueError, match="workers_on_host"):
        threads_per_worker(0, 2)


def test_configure_threads_sets_torch_threads() -> None:
    before = torch.get_num_threads()
    try:
        configure_threads(1)
        assert torch.get_num_threads() == 1
        # A second call must not fail although torch fixes inter-op threads once per process.
        configure_threads(1)
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ValueError, match="threads"):
        configure_threads(0)


def test_device_description() -> None:
    assert device_description(CPU, 1) == "cpu (1 thread)"
    assert device_description(CPU, 2) == "cpu (2 threads)"
