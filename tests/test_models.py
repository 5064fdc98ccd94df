"""The model builder: every architecture of the space builds, runs and trains for each input shape."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from workers.models import (
    ArchitectureSpec,
    ConfigurationError,
    ModelBuildError,
    build_model,
    parameter_count,
    uses_convolutions,
)

INPUT_SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32)]
N_CLASSES = 10


def forward_backward(model: nn.Module, input_shape: tuple[int, int, int], batch: int = 4) -> torch.Tensor:
    inputs = torch.randn(batch, *input_shape)
    logits = model(inputs)
    logits.sum().backward()
    return logits


@pytest.mark.parametrize("input_shape", INPUT_SHAPES)
@pytest.mark.parametrize("conv_layers", [0, 1, 2, 3])
@pytest.mark.parametrize("kernel_size", [3, 5])
def test_every_depth_and_kernel_builds_runs_and_backpropagates(
    input_shape: tuple[int, int, int], conv_layers: int, kernel_size: int
) -> None:
    config = {
        "conv_layers": conv_layers,
        "filters_1": 8,
        "filters_2": 12,
        "filters_3": 6,
        "kernel_size": kernel_size,
        "fc_units": 32,
        "dropout": 0.25,
    }
    model = build_model(config, input_shape, N_CLASSES)

    logits = forward_backward(model, input_shape)

    assert logits.shape == (4, N_CLASSES)
    assert all(parameter.grad is not None for parameter in model.parameters())
    assert uses_convolutions(model) == (conv_layers > 0)
    assert sum(isinstance(module, nn.Conv2d) for module in model.modules()) == conv_layers


def test_pooling_stops_at_one_pixel_so_three_layers_fit_8x8_digits() -> None:
    model = build_model({"conv_layers": 3, "filters_3": 7, "kernel_size": 5}, (1, 8, 8), N_CLASSES)

    first_linear = next(module for module in model.modules() if isinstance(module, nn.Linear))

    # 8 -> 4 -> 2 -> 1: the classifier sees the 7 filters of a 1x1 map.
    assert first_linear.in_features == 7
    assert sum(isinstance(module, nn.MaxPool2d) for module in model.modules()) == 3


def test_pooling_is_skipped_once_the_map_is_1x1() -> None:
    model = build_model({"conv_layers": 3, "filters_3": 5}, (2, 2, 2), N_CLASSES)

    assert sum(isinstance(module, nn.MaxPool2d) for module in model.modules()) == 1
    assert forward_backward(model, (2, 2, 2)).shape == (4, N_CLASSES)


def test_absent_keys_take_the_defaults() -> None:
    spec = ArchitectureSpec.from_config({})

    assert spec == ArchitectureSpec(
        conv_layers=2, filters=(16, 16, 16), kernel_size=3, fc_units=128, dropout=0.0
    )


def test_training_keys_and_inactive_filters_are_ignored() -> None:
    config = {"conv_layers": 1, "filters_1": 4, "filters_3": 0, "learning_rate": 0.1, "optimizer": "adam"}

    model = build_model(config, (1, 8, 8), N_CLASSES)

    assert sum(isinstance(module, nn.Conv2d) for module in model.modules()) == 1


def test_integral_floats_and_numpy_integers_are_accepted() -> None:
    config: dict[str, Any] = {"conv_layers": np.int64(1), "filters_1": 4.0, "kernel_size": np.int32(5)}

    spec = ArchitectureSpec.from_config(config)

    assert (spec.conv_layers, spec.filters[0], spec.kernel_size) == (1, 4, 5)


def test_no_dropout_modules_without_dropout() -> None:
    without = build_model({"dropout": 0.0}, (1, 8, 8), N_CLASSES)
    with_dropout = build_model({"dropout": 0.5}, (1, 8, 8), N_CLASSES)

    assert not any(isinstance(module, nn.Dropout) for module in without.modules())
    assert sum(isinstance(module, nn.Dropout) for module in with_dropout.modules()) == 2


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"conv_layers": 4}, "conv_layers"),
        ({"conv_layers": -1}, "conv_layers"),
        ({"conv_layers": 2, "filters_2": 0}, "filters_2"),
        ({"filters_1": -3}, "filters_1"),
        ({"kernel_size": 4}, "kernel_size"),
        ({"kernel_size": 0}, "kernel_size"),
        ({"fc_units": 0}, "fc_units"),
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": -0.1}, "dropout"),
        ({"dropout": float("nan")}, "dropout"),
        ({"filters_1": 2.5}, "filters_1"),
        ({"filters_1": "many"}, "filters_1"),
        ({"conv_layers": True}, "conv_layers"),
    ],
)
def test_invalid_configs_are_model_build_errors_naming_the_key(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ModelBuildError, match=message):
        build_model(config, (1, 8, 8), N_CLASSES)


@pytest.mark.parametrize(
    ("input_shape", "n_classes"),
    [((1, 0, 8), 10), ((1, 8), 10), ((1, 8, 8), 1)],
)
def test_impossible_inputs_are_model_build_errors(input_shape: tuple[int, ...], n_classes: int) -> None:
    with pytest.raises(ModelBuildError):
        build_model({}, input_shape, n_classes)  # type: ignore[arg-type]


def test_model_build_error_is_a_configuration_error_and_a_value_error() -> None:
    assert issubclass(ModelBuildError, ConfigurationError)
    assert issubclass(ModelBuildError, ValueError)


def test_parameter_count_of_a_tiny_cnn() -> None:
    model = build_model({"conv_layers": 1, "filters_1": 2, "kernel_size": 3, "fc_units": 4}, (1, 4, 4), 3)

    # conv 2 x (1 x 3 x 3) + 2 = 20; pooled map 2 x 2 x 2 = 8 features; fc 8 x 4 + 4 = 36; out 4 x 3 + 3 = 15.
    assert parameter_count(model) == 71


def test_parameter_count_of_an_mlp_and_frozen_parameters_do_not_count() -> None:
    model = build_model({"conv_layers": 0, "fc_units": 3}, (1, 2, 2), 2)

    # fc 4 x 3 + 3 = 15; out 3 x 2 + 2 = 8.
    assert parameter_count(model) == 23
    next(model.parameters()).requires_grad_(False)
    assert parameter_count(model) == 23 - 12
