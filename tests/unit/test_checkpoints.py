"""Checkpoint continuation in the trainer and the checkpoint files: a run resumed after epoch k ends with
exactly the weights of a run trained straight through (deterministic CPU runs), and a checkpoint that
cannot be used is never an error for the job."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from hpo_service.checkpoint_files import checkpoint_path, config_directory, saved_epochs
from workers.checkpoints import (
    CheckpointError,
    CheckpointStore,
    TrainingState,
    load_state,
    run_identity,
    save_state,
)
from workers.data import DatasetTensors, load_dataset
from workers.trainer import train, train_with_state

CPU = torch.device("cpu")
CONFIGS = {
    "momentum": {"learning_rate": 0.05, "batch_size": 32, "optimizer": "momentum"},
    "crop-flip-dropout": {
        "learning_rate": 0.05, "batch_size": 32, "optimizer": "nesterov", "augmentation": "crop_flip",
        "dropout": 0.3,
    },
    "cosine-adam-affine": {
        "learning_rate": 0.003, "batch_size": 32, "optimizer": "adam", "lr_schedule": "cosine",
        "augmentation": "affine",
    },
    "step-batch-norm": {
        "learning_rate": 0.05, "batch_size": 32, "optimizer": "rmsprop", "lr_schedule": "step",
        "batch_norm": True, "weight_decay": 1e-4,
    },
    "cyclic-mlp": {"conv_layers": 0, "learning_rate": 0.05, "batch_size": 16, "lr_schedule": "cyclic",
                   "cycle_epochs": 1.5},
}  # fmt: skip
HORIZON = 4


@pytest.fixture(scope="module")
def digits() -> DatasetTensors:
    return load_dataset("digits", None, CPU, train_limit=400)


def assert_same_state(first: TrainingState, second: TrainingState) -> None:
    assert first.model.keys() == second.model.keys()
    for name, tensor in first.model.items():
        assert torch.equal(tensor, second.model[name]), name
    assert first.steps == second.steps and first.epochs == second.epochs
    assert first.train_loss == second.train_loss
    assert first.validation_error == second.validation_error
    for name in ("global", "batch_order", "augmentation"):
        assert torch.equal(first.rng[name], second.rng[name]), name  # type: ignore[arg-type]
    first_moments = first.optimizer["state"]
    for index, values in second.optimizer["state"].items():
        for key, value in values.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(first_moments[index][key])), key


@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
@pytest.mark.parametrize("resume_after", [1, 2])
def test_resumed_run_equals_the_straight_run(
    digits: DatasetTensors, tmp_path: Path, config: dict[str, Any], resume_after: int
) -> None:
    options: dict[str, Any] = {"seed": 5, "schedule_epochs": HORIZON, "precision": "fp32"}
    straight, straight_state = train_with_state(config, 3, CPU, digits, **options)
    _, early = train_with_state(config, resume_after, CPU, digits, **options)
    assert early is not None and straight_state is not None
    # Through a file, as between workers; whatever ran in between must not matter.
    save_state(tmp_path / "state.pt", early)
    torch.manual_seed(12345)
    torch.rand(100)

    resumed, resumed_state = train_with_state(
        config, 3, CPU, digits, resume=load_state(tmp_path / "state.pt"), **options
    )

    assert resumed_state is not None
    assert_same_state(straight_state, resumed_state)
    assert resumed.validation_loss_per_epoch == straight.validation_loss_per_epoch
    assert (resumed.test_loss, resumed.test_error) == (straight.test_loss, straight.test_error)
    assert resumed.final_learning_rate == straight.final_learning_rate
    assert (resumed.epochs_trained, resumed.total_epochs) == (3 - resume_after, 3)
    assert straight.epochs_trained == straight.total_epochs == 3


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_resumed_mixed_precision_run_equals_the_straight_run(digits: DatasetTensors, precision: str) -> None:
    # fp16 trains through a gradient scaler, whose scale the state carries (the CUDA path, here on CPU).
    options: dict[str, Any] = {"seed": 1, "schedule_epochs": HORIZON, "precision": precision}
    config = CONFIGS["crop-flip-dropout"]
    straight, straight_state = train_with_state(config, 2, CPU, digits, **options)
    _, early = train_with_state(config, 1, CPU, digits, **options)
    assert early is not None and straight_state is not None
    assert (early.grad_scaler is not None) == (precision == "fp16")

    resumed, resumed_state = train_with_state(config, 2, CPU, digits, resume=early, **options)

    assert resumed_state is not None
    assert_same_state(straight_state, resumed_state)
    assert resumed.precision == straight.precision == precision
    assert math.isfinite(resumed.validation_loss or math.nan)


def test_a_second_resume_continues_the_first(digits: DatasetTensors) -> None:
    config = CONFIGS["cosine-adam-affine"]
    options: dict[str, Any] = {"seed": 2, "schedule_epochs": HORIZON, "precision": "fp32"}
    _, straight = train_with_state(config, 4, CPU, digits, **options)
    _, one = train_with_state(config, 1, CPU, digits, **options)
    _, two = train_with_state(config, 2, CPU, digits, resume=one, **options)
    outcome, four = train_with_state(config, 4, CPU, digits, resume=two, **options)
    assert straight is not None and four is not None
    assert_same_state(straight, four)
    assert outcome.epochs_trained == 2 and outcome.final_learning_rate == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"seed": 9}, "seed differs"),
        ({"schedule_epochs": HORIZON + 1}, "horizon_epochs differs"),
        ({"precision": "bf16"}, "precision differs"),
        ({"config": {**CONFIGS["momentum"], "learning_rate": 0.01}}, "config differs"),
        ({"epochs": 1}, "holds 1 epochs"),
    ],
)
def test_a_state_of_another_run_is_refused_before_training(
    digits: DatasetTensors, change: dict[str, Any], message: str
) -> None:
    options: dict[str, Any] = {"seed": 5, "schedule_epochs": HORIZON, "precision": "fp32"}
    _, state = train_with_state(CONFIGS["momentum"], 1, CPU, digits, **options)
    config = change.pop("config", CONFIGS["momentum"])
    epochs = change.pop("epochs", 2)
    with pytest.raises(CheckpointError, match=message):
        train(config, epochs, CPU, digits, resume=state, **{**options, **change})


def test_a_diverged_run_has_no_state(digits: DatasetTensors) -> None:
    outcome, state = train_with_state({"learning_rate": 1e6, "batch_size": 32}, 2, CPU, digits)
    assert outcome.diverged and state is None


# The files.


def small_state(digits: DatasetTensors, epochs: int = 1) -> TrainingState:
    _, state = train_with_state(CONFIGS["cyclic-mlp"], epochs, CPU, digits, schedule_epochs=HORIZON)
    assert state is not None
    return state


def test_save_is_atomic_and_load_gives_the_state_back(digits: DatasetTensors, tmp_path: Path) -> None:
    state = small_state(digits)
    path = tmp_path / "deep" / "1.pt"

    save_state(path, state)

    assert sorted(item.name for item in path.parent.iterdir()) == ["1.pt"]  # no temporary file left
    loaded = load_state(path)
    assert_same_state(state, loaded)
    assert loaded.run == state.run and loaded.run["config"] == CONFIGS["cyclic-mlp"]


class Executable:
    """An object torch.load would have to unpickle as code: refused under weights_only."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (print, ("unpickled",))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "unreadable"),
        (b"not a zip file at all", "unreadable"),
        ("truncated", "unreadable"),
        ({"format": 99}, "format 1"),
        ({"format": 1, "epochs": 1}, "lacks"),
        ([1, 2, 3], "format 1"),
        ("object", "unreadable"),
    ],
)
def test_damaged_or_foreign_files_are_checkpoint_errors(
    digits: DatasetTensors, tmp_path: Path, content: Any, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "1.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content == "truncated":
        save_state(path, small_state(digits))
        path.write_bytes(path.read_bytes()[:1000])
    elif content == "object":
        torch.save({"format": 1, "payload": Executable()}, path)
    else:
        torch.save(content, path)
    with pytest.raises(CheckpointError, match=message):
        load_state(path)
    assert "unpickled" not in capsys.readouterr().out
    with pytest.raises(CheckpointError, match="missing"):
        load_state(tmp_path / "absent.pt")


def test_store_resumes_from_the_largest_smaller_budget_and_keeps_only_the_latest(
    digits: DatasetTensors, tmp_path: Path
) -> None:
    store = CheckpointStore(tmp_path)
    config_id = (0, 0, 2)
    one, three = small_state(digits, 1), small_state(digits, 3)
    run = one.run

    assert store.resume_state(config_id, 3, run) is None  # nothing saved yet
    store.save(config_id, one)
    assert checkpoint_path(tmp_path, config_id, 1) == tmp_path / "checkpoints" / "0_0_2" / "1.pt"
    resumed = store.resume_state(config_id, 3, run)
    assert resumed is not None and resumed.epochs == 1
    assert store.resume_state(config_id, 1, run) is None  # only smaller budgets resume

    store.save(config_id, three)
    assert saved_epochs(config_directory(tmp_path, config_id)) == [3]
    latest = store.resume_state(config_id, 9, run)
    assert latest is not None and latest.epochs == 3
    assert store.resume_state((0, 0, 3), 9, run) is None  # another configuration


def test_store_falls_back_with_a_warning(
    digits: DatasetTensors, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = CheckpointStore(tmp_path)
    config_id = (1, 0, 0)
    state = small_state(digits)
    store.save(config_id, state)
    path = checkpoint_path(tmp_path, config_id, 3)
    path.write_bytes(b"garbage")  # a damaged later checkpoint: the earlier one still serves

    with caplog.at_level(logging.WARNING, logger="workers.checkpoints"):
        resumed = store.resume_state(config_id, 9, state.run)
        other_run = store.resume_state(config_id, 9, run_identity({"lr": 1}, 0, "fp32", HORIZON))

    assert resumed is not None and resumed.epochs == 1
    assert other_run is None
    messages = " ".join(record.getMessage() for record in caplog.records)
    assert "checkpoint unusable" in messages and "config differs" in messages
