"""The training hyperparameters beyond the basics: optimizers, weight decay, learning-rate schedules,
augmentation and the dropped batch of one (``docs/hyperparameters.md``, "Training")."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from workers.augmentation import augmenter, crop_flip, crop_padding, random_affine, sampling_grid
from workers.data import DatasetTensors, load_dataset
from workers.models import build_model
from workers.schedules import CYCLIC_LOW, learning_rate_factor
from workers.trainer import (
    OPTIMIZERS,
    TrainingConfigError,
    TrainingSpec,
    steps_per_epoch,
    train,
    train_epoch,
)

CPU = torch.device("cpu")
# A small MLP keeps each run to a fraction of a second; the conv path is covered by
# tests/unit/test_trainer.py.
SMALL = {"conv_layers": 0, "batch_size": 32, "learning_rate": 0.01}


@pytest.fixture(scope="module")
def few_digits() -> DatasetTensors:
    return load_dataset("digits", None, CPU, train_limit=200)


def one_parameter_step(optimizer: str, weight_decay: float) -> float:
    """The value of a parameter of 1.0 after one step of ``optimizer`` on a loss with zero gradient."""
    parameter = nn.Parameter(torch.ones(1))
    spec = TrainingSpec(learning_rate=0.1, optimizer=optimizer, weight_decay=weight_decay)
    optimizer_ = spec.make_optimizer([parameter])
    (parameter * 0.0).sum().backward()
    optimizer_.step()
    return float(parameter.item())


# Optimizers.


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_every_optimizer_trains_an_epoch(few_digits: DatasetTensors, optimizer: str) -> None:
    outcome = train({**SMALL, "optimizer": optimizer, "weight_decay": 1e-4}, 1, CPU, few_digits)

    assert not outcome.diverged and outcome.epochs_trained == 1
    assert math.isfinite(outcome.train_loss_per_epoch[0])
    assert math.isfinite(outcome.validation_loss or math.nan)


@pytest.mark.parametrize(
    ("optimizer", "kind", "settings"),
    [
        ("sgd", torch.optim.SGD, {"momentum": 0.0, "nesterov": False}),
        ("momentum", torch.optim.SGD, {"momentum": 0.9, "nesterov": False}),
        ("nesterov", torch.optim.SGD, {"momentum": 0.9, "nesterov": True}),
        ("adam", torch.optim.Adam, {"betas": (0.9, 0.999)}),
        ("adamw", torch.optim.AdamW, {"betas": (0.9, 0.999)}),
        ("adagrad", torch.optim.Adagrad, {}),
        ("rmsprop", torch.optim.RMSprop, {"alpha": 0.99, "momentum": 0.0}),
    ],
)
def test_optimizer_defaults_and_weight_decay_reach_the_param_groups(
    optimizer: str, kind: type[torch.optim.Optimizer], settings: dict[str, Any]
) -> None:
    spec = TrainingSpec.from_config({"optimizer": optimizer, "weight_decay": 0.01})

    made = spec.make_optimizer([nn.Parameter(torch.zeros(1))])

    assert type(made) is kind
    group = made.param_groups[0]
    assert group["weight_decay"] == 0.01 and group["lr"] == 0.01
    for key, value in settings.items():
        assert group[key] == value, key


def test_explicit_momentum_betas_and_alpha_are_used() -> None:
    sgd = TrainingSpec.from_config({"optimizer": "sgd", "momentum": 0.9})
    assert sgd.momentum == 0.9
    assert sgd.make_optimizer([nn.Parameter(torch.zeros(1))]).param_groups[0]["nesterov"] is False
    rmsprop = TrainingSpec.from_config({"optimizer": "rmsprop", "momentum": 0.5, "alpha": 0.9})
    group = rmsprop.make_optimizer([nn.Parameter(torch.zeros(1))]).param_groups[0]
    assert (group["momentum"], group["alpha"]) == (0.5, 0.9)
    adam = TrainingSpec.from_config({"optimizer": "adam", "beta1": 0.8, "beta2": 0.99})
    assert adam.make_optimizer([nn.Parameter(torch.zeros(1))]).param_groups[0]["betas"] == (0.8, 0.99)
    assert TrainingSpec.from_config({"optimizer": "Nesterov"}).momentum == 0.9


def test_adamw_decays_decoupled_and_adam_through_the_gradient() -> None:
    # With a zero gradient Adam's L2 term is the whole (normalised) gradient: a full step of lr. AdamW
    # shrinks the weight by lr * weight_decay and its Adam step sees no gradient at all.
    assert one_parameter_step("adam", 0.01) == pytest.approx(1.0 - 0.1, rel=1e-4)
    assert one_parameter_step("adamw", 0.01) == pytest.approx(1.0 - 0.1 * 0.01, rel=1e-6)
    assert one_parameter_step("adam", 0.0) == one_parameter_step("adamw", 0.0) == 1.0


def test_adamw_and_adam_train_differently_with_weight_decay(few_digits: DatasetTensors) -> None:
    config = {**SMALL, "learning_rate": 0.003, "weight_decay": 0.1}

    adam = train({**config, "optimizer": "adam"}, 1, CPU, few_digits)
    adamw = train({**config, "optimizer": "adamw"}, 1, CPU, few_digits)

    assert adam.train_loss_per_epoch != adamw.train_loss_per_epoch


def test_values_may_be_numpy_scalars() -> None:
    config = {
        "learning_rate": np.float64(0.1),
        "batch_size": np.int64(32),
        "optimizer": np.str_("adamw"),
        "weight_decay": np.float32(0.5),
        "lr_schedule": np.str_("cyclic"),
        "cycle_epochs": np.int64(2),
    }

    spec = TrainingSpec.from_config(config)

    assert (spec.learning_rate, spec.batch_size, spec.optimizer) == (0.1, 32, "adamw")
    assert (spec.weight_decay, spec.lr_schedule, spec.cycle_epochs) == (0.5, "cyclic", 2.0)
    assert type(spec.learning_rate) is float and type(spec.batch_size) is int and type(spec.optimizer) is str


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"optimizer": "lbfgs"}, "unknown optimizer 'lbfgs': choose one of sgd, momentum, nesterov, adam"),
        (
            {"lr_schedule": "linear"},
            "unknown lr_schedule 'linear': choose one of constant, cosine, step, cyclic",
        ),
        ({"augmentation": "mixup"}, "unknown augmentation 'mixup': choose one of none, crop_flip, affine"),
        ({"momentum": 1.0}, r"momentum must be in \[0, 1\), got 1.0"),
        ({"optimizer": "nesterov", "momentum": 0.0}, "momentum must be positive for optimizer 'nesterov'"),
        ({"beta1": -0.1}, r"beta1 must be in \[0, 1\), got -0.1"),
        ({"beta2": 1.0}, "beta2"),
        ({"alpha": 1.5}, "alpha"),
        ({"weight_decay": -1e-4}, "weight_decay must not be negative, got -0.0001"),
        ({"weight_decay": "heavy"}, "weight_decay must be a number"),
        ({"step_gamma": 0.0}, r"step_gamma must be in \(0, 1\], got 0.0"),
        ({"step_gamma": 1.5}, "step_gamma"),
        ({"cycle_epochs": 0}, "cycle_epochs must be positive, got 0.0"),
    ],
)
def test_invalid_values_name_the_key(config: dict[str, Any], message: str) -> None:
    with pytest.raises(TrainingConfigError, match=message):
        TrainingSpec.from_config(config)


def test_invalid_values_fail_the_run(few_digits: DatasetTensors) -> None:
    with pytest.raises(TrainingConfigError, match="lr_schedule"):
        train({**SMALL, "lr_schedule": "exponential"}, 1, CPU, few_digits)


def test_batch_size_one_is_refused_with_batch_norm(few_digits: DatasetTensors) -> None:
    config = {**SMALL, "batch_norm": True, "batch_size": 1}
    model = build_model(config, few_digits.input_shape, few_digits.n_classes)
    assert any(isinstance(module, nn.BatchNorm1d) for module in model.modules())
    with pytest.raises(TrainingConfigError, match="batch_size must be at least 2 with batch_norm"):
        train(config, 1, CPU, few_digits)


# Learning-rate schedules.


def test_constant_schedule() -> None:
    for step in (0, 7, 99, 1000):
        assert learning_rate_factor("constant", step, 10, 10) == 1.0


def test_cosine_schedule_from_one_to_zero_per_step() -> None:
    assert learning_rate_factor("cosine", 0, 10, 10) == 1.0
    assert learning_rate_factor("cosine", 50, 10, 10) == pytest.approx(0.5)
    assert learning_rate_factor("cosine", 100, 10, 10) == pytest.approx(0.0, abs=1e-12)
    assert learning_rate_factor("cosine", 150, 10, 10) == pytest.approx(0.0, abs=1e-12)
    assert 0.5 < learning_rate_factor("cosine", 49, 10, 10) < learning_rate_factor("cosine", 48, 10, 10)


def test_step_schedule_at_half_and_three_quarters() -> None:
    def factor(step: int) -> float:
        return learning_rate_factor("step", step, 10, 10, step_gamma=0.5)

    assert [factor(step) for step in (0, 49, 50, 74, 75, 99, 100)] == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.25]
    # A horizon whose half is no whole step: the switch comes at the first step at or past it.
    assert learning_rate_factor("step", 7, 5, 3) == 1.0
    assert learning_rate_factor("step", 8, 5, 3) == pytest.approx(0.1)


def test_cyclic_schedule_is_triangular_from_the_low_end() -> None:
    def factor(step: int) -> float:
        return learning_rate_factor("cyclic", step, 10, 3, cycle_epochs=4)

    assert factor(0) == pytest.approx(CYCLIC_LOW) == pytest.approx(0.1)
    assert factor(10) == pytest.approx(0.55)  # a quarter cycle: half way up
    assert factor(20) == pytest.approx(1.0)  # half a cycle (two epochs): the peak
    assert factor(30) == pytest.approx(0.55)
    assert factor(40) == pytest.approx(0.1)  # a full cycle: low again
    assert factor(60) == pytest.approx(1.0)  # it repeats past the horizon


def test_schedule_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown lr_schedule 'linear'"):
        learning_rate_factor("linear", 0, 10, 10)
    with pytest.raises(ValueError, match="step"):
        learning_rate_factor("cosine", -1, 10, 10)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        learning_rate_factor("cosine", 0, 0, 10)


@pytest.mark.parametrize(
    ("schedule", "schedule_epochs", "factor"),
    [("constant", None, 1.0), ("cosine", None, 0.0), ("cosine", 4, 0.5), ("step", 4, 0.1)],
)
def test_the_run_ends_where_its_horizon_says(
    few_digits: DatasetTensors, schedule: str, schedule_epochs: int | None, factor: float
) -> None:
    config = {**SMALL, "lr_schedule": schedule}

    outcome = train(config, 2, CPU, few_digits, schedule_epochs=schedule_epochs)

    assert outcome.final_learning_rate == pytest.approx(0.01 * factor, abs=1e-12)
    assert outcome.to_info()["final_learning_rate"] == outcome.final_learning_rate


def test_schedule_epochs_below_epochs_is_an_error(few_digits: DatasetTensors) -> None:
    with pytest.raises(ValueError, match="schedule_epochs must be at least epochs"):
        train(SMALL, 2, CPU, few_digits, schedule_epochs=1)


def test_train_epoch_sets_the_rate_of_each_global_step(few_digits: DatasetTensors) -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    asked: list[int] = []

    def rate(step: int) -> float:
        asked.append(step)
        return 0.001 * step

    _, samples, steps = train_epoch(
        model, optimizer, few_digits.train_x, few_digits.train_y,
        batch_size=64, generator=torch.Generator().manual_seed(0), learning_rate=rate, first_step=10,
    )  # fmt: skip

    assert (samples, steps) == (200, 4)
    assert asked == [10, 11, 12, 13]
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.013)


# The dropped batch of one image.


@pytest.mark.parametrize(
    ("count", "batch_size", "steps"),
    [(64, 64, 1), (65, 64, 1), (66, 64, 2), (129, 64, 2), (1, 64, 1), (5, 1, 5), (200, 32, 7)],
)
def test_steps_per_epoch_drop_a_final_batch_of_one(count: int, batch_size: int, steps: int) -> None:
    assert steps_per_epoch(count, batch_size) == steps


def test_batch_norm_trains_when_one_image_is_left_over(few_digits: DatasetTensors) -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    inputs, targets = few_digits.train_x[:65], few_digits.train_y[:65]

    loss, samples, steps = train_epoch(
        model, optimizer, inputs, targets, batch_size=32, generator=torch.Generator().manual_seed(0)
    )

    assert (samples, steps) == (64, 2) and math.isfinite(loss)


# Augmentation.


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("kind", ["crop_flip", "affine"])
def test_augmentation_keeps_shape_dtype_and_memory_format(
    kind: str, memory_format: torch.memory_format, channels: int
) -> None:
    batch = torch.randn(6, channels, 12, 10).contiguous(memory_format=memory_format)
    augment = augmenter(kind, torch.Generator().manual_seed(0))
    assert augment is not None

    moved = augment(batch)

    assert moved.shape == batch.shape and moved.dtype == batch.dtype
    assert moved.is_contiguous(memory_format=memory_format)
    assert not torch.equal(moved, batch)


@pytest.mark.parametrize("kind", ["crop_flip", "affine"])
def test_augmentation_is_deterministic_per_seed(kind: str) -> None:
    batch = torch.randn(16, 1, 8, 8)

    def run(seed: int) -> torch.Tensor:
        augment = augmenter(kind, torch.Generator().manual_seed(seed))
        assert augment is not None
        return augment(batch)

    assert torch.equal(run(3), run(3))
    assert not torch.equal(run(3), run(4))


def test_augmenter_none_and_unknown() -> None:
    generator = torch.Generator()
    assert augmenter("none", generator) is None
    with pytest.raises(ValueError, match="unknown augmentation 'mixup'"):
        augmenter("mixup", generator)


def test_crop_padding_is_four_pixels_or_an_eighth_of_small_images() -> None:
    assert [crop_padding(size, size) for size in (32, 64, 28, 16, 8, 4)] == [4, 4, 3, 2, 1, 1]


def test_flip_only_keeps_a_symmetric_image_and_mirrors_others() -> None:
    half = torch.randn(4, 3, 8, 4)
    symmetric = torch.cat((half, half.flip(-1)), dim=-1)
    generator = torch.Generator().manual_seed(0)

    assert torch.equal(crop_flip(symmetric, generator, padding=0), symmetric)
    assert torch.equal(crop_flip(half, generator, padding=0, flip_probability=1.0), half.flip(-1))
    assert torch.equal(crop_flip(half, generator, padding=0, flip_probability=0.0), half)


def test_crop_shifts_each_image_by_at_most_the_padding() -> None:
    ones = torch.ones(64, 1, 8, 8)

    cropped = crop_flip(ones, torch.Generator().manual_seed(0), flip_probability=0.0)

    assert set(cropped.unique().tolist()) <= {0.0, 1.0}
    kept = cropped.sum(dim=(1, 2, 3))
    assert bool((kept >= 7 * 7).all())  # padding 1: at most one row and one column lost
    assert len(kept.unique()) > 1  # the offsets differ between images


def test_affine_of_zero_magnitude_keeps_the_images() -> None:
    batch = torch.randn(5, 3, 9, 7).contiguous(memory_format=torch.channels_last)

    same = random_affine(
        batch, torch.Generator().manual_seed(0), degrees=0.0, translate=0.0, scale=(1.0, 1.0)
    )

    torch.testing.assert_close(same, batch, atol=1e-5, rtol=0.0)


@pytest.mark.parametrize(("height", "width"), [(8, 8), (12, 7)])
def test_sampling_grid_is_affine_grids(height: int, width: int) -> None:
    theta = torch.eye(2, 3).expand(5, 2, 3) + 0.1 * torch.randn(
        5, 2, 3, generator=torch.Generator().manual_seed(0)
    )

    grid = sampling_grid(theta, height, width)

    expected = torch.nn.functional.affine_grid(theta, [5, 3, height, width], align_corners=False)
    torch.testing.assert_close(grid, expected)


def test_augmented_runs_are_deterministic_and_differ_from_plain(few_digits: DatasetTensors) -> None:
    plain = train(SMALL, 1, CPU, few_digits, seed=1)
    for kind in ("crop_flip", "affine"):
        config = {**SMALL, "augmentation": kind}
        first = train(config, 1, CPU, few_digits, seed=1)
        second = train(config, 1, CPU, few_digits, seed=1)
        assert first.train_loss_per_epoch == second.train_loss_per_epoch
        assert first.train_loss_per_epoch != plain.train_loss_per_epoch
        # Only training batches are augmented: evaluation is of the plain images.
        assert first.validation_loss is not None and math.isfinite(first.validation_loss)
