"""The model builder: every architecture of the space builds, runs and trains for each input shape."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from hpo_service.shapes import collapse_reason, feature_map_sizes
from workers.models import (
    ACTIVATIONS,
    INITS,
    MAX_LINEAR_LAYERS,
    PADDINGS,
    POOLINGS,
    ArchitectureSpec,
    ConfigurationError,
    ModelBuildError,
    build_model,
    parameter_count,
    uses_convolutions,
)

INPUT_SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32)]
N_CLASSES = 10
ACTIVATION_TYPES = (nn.ReLU, nn.ELU, nn.LeakyReLU, nn.Tanh, nn.Softsign)
# Small widths keep the whole file at a few seconds on a CPU.
SMALL = {"filters_1": 4, "filters_2": 6, "filters_3": 5, "units": 8}
# One choice changed at a time from the defaults: every value of every categorical key, plus odd geometry.
CHOICES: list[tuple[str, Any]] = [
    *(("activation", name) for name in ACTIVATIONS),
    *(("pooling", name) for name in POOLINGS),
    *(("padding", name) for name in PADDINGS),
    *(("init", name) for name in INITS),
    ("batch_norm", True),
    ("batch_norm", False),
    ("kernel_size", 1),
    ("kernel_size", 7),
    ("stride", 2),
    ("linear_layers", 3),
    ("dropout", 0.3),
]


def count(model: nn.Module, *types: type[nn.Module]) -> int:
    return sum(isinstance(module, types) for module in model.modules())


def first_linear(model: nn.Module) -> nn.Linear:
    return next(module for module in model.modules() if isinstance(module, nn.Linear))


def forward_backward(model: nn.Module, input_shape: tuple[int, int, int], batch: int = 4) -> torch.Tensor:
    inputs = torch.randn(batch, *input_shape)
    logits = model(inputs)
    logits.sum().backward()
    return logits


@pytest.mark.parametrize("input_shape", INPUT_SHAPES)
@pytest.mark.parametrize("conv_layers", [0, 2])
@pytest.mark.parametrize(("key", "value"), CHOICES)
def test_every_choice_builds_and_backpropagates_unless_the_shapes_say_it_collapses(
    input_shape: tuple[int, int, int], conv_layers: int, key: str, value: Any
) -> None:
    config = {**SMALL, "conv_layers": conv_layers, key: value}
    spec = ArchitectureSpec.from_config(config)
    reason = collapse_reason(input_shape, config)
    if reason is not None:
        with pytest.raises(ModelBuildError, match="collapses"):
            build_model(config, input_shape, N_CLASSES)
        return

    model = build_model(config, input_shape, N_CLASSES)
    logits = forward_backward(model, input_shape)

    assert logits.shape == (4, N_CLASSES)
    assert all(parameter.grad is not None for parameter in model.parameters())
    assert uses_convolutions(model) == (conv_layers > 0)
    assert count(model, nn.Conv2d) == conv_layers
    assert count(model, nn.Linear) == spec.linear_layers + 1
    assert count(model, nn.BatchNorm2d) == (conv_layers if spec.batch_norm else 0)
    assert count(model, nn.BatchNorm1d) == (spec.linear_layers if spec.batch_norm else 0)
    activations = 0 if spec.activation == "linear" else conv_layers + spec.linear_layers
    assert count(model, *ACTIVATION_TYPES) == activations
    assert count(model, nn.MaxPool2d, nn.AvgPool2d) == (0 if spec.pooling == "none" else conv_layers)
    assert count(model, nn.Dropout) == (spec.linear_layers if spec.dropout > 0 else 0)
    # The classifier's input is what the shared shape arithmetic (the space's) says the conv stack yields.
    channels, height, width = input_shape
    sizes = feature_map_sizes(
        height, width, conv_layers=conv_layers, kernel_size=spec.kernel_size, stride=spec.stride,
        padding=spec.padding, pooling=spec.pooling,
    )  # fmt: skip
    if sizes:
        channels, (height, width) = spec.filters[-1], sizes[-1]
    assert first_linear(model).in_features == channels * height * width


@pytest.mark.parametrize("input_shape", INPUT_SHAPES)
@pytest.mark.parametrize("conv_layers", [1, 3])
@pytest.mark.parametrize("kernel_size", [3, 5])
def test_every_depth_and_kernel_builds_runs_and_backpropagates(
    input_shape: tuple[int, int, int], conv_layers: int, kernel_size: int
) -> None:
    config = {**SMALL, "conv_layers": conv_layers, "kernel_size": kernel_size, "dropout": 0.25}
    model = build_model(config, input_shape, N_CLASSES)

    assert forward_backward(model, input_shape).shape == (4, N_CLASSES)
    assert count(model, nn.Conv2d) == conv_layers


def test_blocks_are_in_the_documented_order() -> None:
    config = {**SMALL, "conv_layers": 1, "linear_layers": 2, "batch_norm": True, "dropout": 0.5}

    model = build_model(config, (1, 8, 8), N_CLASSES)

    assert [type(module) for module in model] == [
        *(nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.ReLU),
        nn.Flatten,
        *(nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Dropout) * 2,
        nn.Linear,
    ]


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_max_pooling_before_the_activation_is_the_same_function(activation: str) -> None:
    config = {**SMALL, "conv_layers": 2, "activation": activation, "batch_norm": activation == "tanh"}
    model = build_model(config, (1, 8, 8), N_CLASSES)
    # The textbook order: each max pool moved back behind the activation that follows it.
    layers = list(model)
    for index, layer in enumerate(layers[:-1]):
        if isinstance(layer, nn.MaxPool2d) and isinstance(layers[index + 1], ACTIVATION_TYPES):
            layers[index], layers[index + 1] = layers[index + 1], layer
    textbook = nn.Sequential(*layers)
    inputs = torch.randn(6, 1, 8, 8, requires_grad=True)

    outputs = [network(inputs) for network in (model, textbook)]
    gradients = [torch.autograd.grad(output.square().sum(), inputs)[0] for output in outputs]

    torch.testing.assert_close(outputs[0], outputs[1])
    torch.testing.assert_close(gradients[0], gradients[1])
    if activation != "linear":
        assert [type(module) for module in model] != [type(module) for module in textbook]


def test_average_pooling_stays_after_the_activation() -> None:
    model = build_model({**SMALL, "conv_layers": 1, "pooling": "avg"}, (1, 8, 8), N_CLASSES)
    assert [type(module) for module in model][:3] == [nn.Conv2d, nn.ReLU, nn.AvgPool2d]


def test_three_same_padded_layers_fit_8x8_digits() -> None:
    model = build_model({"conv_layers": 3, "filters_3": 7, "kernel_size": 5}, (1, 8, 8), N_CLASSES)

    # 8 -> 4 -> 2 -> 1: the classifier sees the 7 filters of a 1x1 map.
    assert first_linear(model).in_features == 7
    assert count(model, nn.MaxPool2d) == 3


@pytest.mark.parametrize(
    ("config", "input_shape", "layer"),
    [
        ({"conv_layers": 3, "kernel_size": 7, "padding": "valid"}, (1, 8, 8), 2),
        ({"conv_layers": 2, "padding": "valid"}, (1, 8, 8), 2),
        ({"conv_layers": 3}, (2, 2, 2), 2),  # pooling no longer stops at 1x1
        ({"conv_layers": 3, "stride": 2}, (3, 32, 32), 3),
        ({"conv_layers": 1, "pooling": "none", "kernel_size": 5, "padding": "valid"}, (1, 4, 4), 1),
    ],
)
def test_collapsing_architectures_are_refused_naming_the_layer_and_sizes(
    config: dict[str, Any], input_shape: tuple[int, int, int], layer: int
) -> None:
    with pytest.raises(ModelBuildError, match="collapses") as raised:
        build_model(config, input_shape, N_CLASSES)

    assert f"conv layer {layer} of {config['conv_layers']}" in str(raised.value)
    assert f"input {input_shape[1]}x{input_shape[2]}" in str(raised.value)


def test_absent_keys_take_the_defaults() -> None:
    spec = ArchitectureSpec.from_config({})

    assert spec == ArchitectureSpec(
        conv_layers=2, filters=(16, 16), kernel_size=3, stride=1, padding="same", pooling="max",
        activation="relu", batch_norm=False, linear_layers=1, units=(128,), dropout=0.0, init="default",
    )  # fmt: skip
    assert spec == ArchitectureSpec()


def test_widths_fall_back_to_the_shared_key_then_the_legacy_one() -> None:
    config = {"conv_layers": 3, "filters": 5, "filters_2": 7, "linear_layers": 3, "units": 6, "units_2": 9}

    spec = ArchitectureSpec.from_config({**config, "fc_units": 100})
    model = build_model(config, (1, 8, 8), N_CLASSES)

    assert spec.filters == (5, 7, 5)
    assert spec.units == (6, 9, 6)
    assert [module.out_channels for module in model.modules() if isinstance(module, nn.Conv2d)] == [5, 7, 5]
    linears = [module.out_features for module in model.modules() if isinstance(module, nn.Linear)]
    assert linears == [6, 9, 6, N_CLASSES]
    assert ArchitectureSpec.from_config({"linear_layers": 2, "fc_units": 11}).units == (11, 11)
    assert ArchitectureSpec.from_config({"units_1": 3, "fc_units": 11}).units == (3,)
    assert ArchitectureSpec.from_config({"conv_layers": 3, "filters_3": 2}).filters == (16, 16, 2)


def test_training_keys_and_inactive_widths_are_ignored() -> None:
    config = {
        "conv_layers": 1,
        "filters_1": 4,
        "filters_3": "many",
        "linear_layers": 2,
        "units_3": 0,
        "learning_rate": 0.1,
        "optimizer": "adam",
    }

    model = build_model(config, (1, 8, 8), N_CLASSES)

    assert count(model, nn.Conv2d) == 1
    assert count(model, nn.Linear) == 3


def test_the_deepest_classifier_builds() -> None:
    model = build_model({"conv_layers": 0, "linear_layers": MAX_LINEAR_LAYERS, "units": 4}, (1, 8, 8), 3)

    assert count(model, nn.Linear) == MAX_LINEAR_LAYERS + 1
    assert forward_backward(model, (1, 8, 8)).shape == (4, 3)


def test_numpy_scalars_are_accepted_and_stored_as_builtins() -> None:
    config: dict[str, Any] = {
        "conv_layers": np.int64(1),
        "filters_1": 4.0,
        "kernel_size": np.int32(5),
        "stride": np.float32(2.0),
        "activation": np.str_("elu"),
        "padding": np.str_("valid"),
        "batch_norm": np.bool_(True),
        "dropout": np.float64(0.25),
    }

    spec = ArchitectureSpec.from_config(config)

    assert (spec.conv_layers, spec.filters, spec.kernel_size, spec.stride) == (1, (4,), 5, 2)
    assert (spec.activation, spec.padding, spec.batch_norm, spec.dropout) == ("elu", "valid", True, 0.25)
    assert type(spec.activation) is str
    assert type(spec.batch_norm) is bool


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, True), (False, False), (np.bool_(True), True), (1, True), (0, False), (np.int64(1), True)]
    + [("true", True), ("false", False), ("True", True)],
)
def test_batch_norm_accepts_the_encodings_of_a_bool(value: Any, expected: bool) -> None:
    assert ArchitectureSpec.from_config({"batch_norm": value}).batch_norm is expected


def test_batch_norm_drops_the_redundant_bias_of_the_layer_before_it() -> None:
    model = build_model({**SMALL, "conv_layers": 1, "batch_norm": True}, (1, 8, 8), N_CLASSES)

    conv, hidden, output = (m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    assert conv.bias is None
    assert hidden.bias is None
    assert output.bias is not None


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"conv_layers": 4}, "conv_layers"),
        ({"conv_layers": -1}, "conv_layers"),
        ({"conv_layers": 2, "filters_2": 0}, "filters_2"),
        ({"filters_1": -3}, "filters_1"),
        ({"filters": 0}, "filters must be positive"),
        ({"units": 0}, "units must be positive"),
        ({"fc_units": 0}, "fc_units"),
        ({"linear_layers": 2, "units_2": -1}, "units_2"),
        ({"linear_layers": 0}, "linear_layers"),
        ({"linear_layers": MAX_LINEAR_LAYERS + 1}, "linear_layers"),
        ({"kernel_size": 4}, "kernel_size"),
        ({"kernel_size": 0}, "kernel_size"),
        ({"stride": 0}, "stride"),
        ({"stride": 1.5}, "stride"),
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": -0.1}, "dropout"),
        ({"dropout": float("nan")}, "dropout"),
        ({"dropout": np.True_}, "dropout"),
        ({"filters_1": 2.5}, "filters_1"),
        ({"filters_1": "many"}, "filters_1"),
        ({"filters_1": float("inf")}, "filters_1"),
        ({"conv_layers": True}, "conv_layers"),
        ({"conv_layers": np.True_}, "conv_layers"),
        ({"batch_norm": "maybe"}, "batch_norm"),
        ({"batch_norm": 2}, "batch_norm"),
        ({"batch_norm": 0.5}, "batch_norm"),
    ],
)
def test_invalid_configs_are_model_build_errors_naming_the_key(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ModelBuildError, match=message):
        build_model(config, (1, 8, 8), N_CLASSES)


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("activation", "swish", "relu, elu, leaky_relu, tanh, softsign, linear"),
        ("pooling", "median", "max, avg, none"),
        ("padding", "full", "same, valid"),
        ("init", "orthogonal", "default, kaiming, xavier, normal"),
        ("activation", np.str_("swish"), "relu"),
        ("activation", 3, "relu"),
        ("pooling", None, "max"),
    ],
)
def test_unknown_choices_name_the_key_the_value_and_the_choices(key: str, value: Any, allowed: str) -> None:
    with pytest.raises(ModelBuildError) as raised:
        build_model({key: value}, (1, 8, 8), N_CLASSES)

    message = str(raised.value)
    assert key in message
    assert str(value) in message
    assert allowed in message


def test_direct_construction_is_validated_too() -> None:
    with pytest.raises(ModelBuildError, match="activation"):
        ArchitectureSpec(activation="swish")
    with pytest.raises(ModelBuildError, match="batch_norm"):
        ArchitectureSpec(batch_norm=1)  # type: ignore[arg-type]
    assert ArchitectureSpec(conv_layers=1, linear_layers=2) == ArchitectureSpec.from_config(
        {"conv_layers": 1, "linear_layers": 2}
    )


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


# Weight statistics of each init. The MLP's first layer has fan-in 256 and fan-out 256, the output layer
# fan-in 256 (no activation after it: gain 1); the conv layer has fan-in 3 x 5 x 5 = 75.
FAN_IN, CONV_FAN_IN = 256, 75
GAINS = {
    "relu": math.sqrt(2),
    "elu": math.sqrt(2),
    "leaky_relu": math.sqrt(2 / (1 + 0.01**2)),
    "tanh": 5 / 3,
    "softsign": 5 / 3,
    "linear": 1.0,
}


def init_layers(init: str, activation: str) -> tuple[nn.Conv2d, nn.Linear, nn.Linear]:
    torch.manual_seed(0)
    config = {"conv_layers": 1, "filters": 64, "kernel_size": 5, "pooling": "none", "units": FAN_IN}
    conv_model = build_model({**config, "init": init, "activation": activation}, (3, 4, 4), N_CLASSES)
    mlp_config = {"conv_layers": 0, "units": FAN_IN, "init": init, "activation": activation}
    mlp = build_model(mlp_config, (1, 16, 16), N_CLASSES)
    hidden, output = (module for module in mlp.modules() if isinstance(module, nn.Linear))
    return next(m for m in conv_model.modules() if isinstance(m, nn.Conv2d)), hidden, output


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_kaiming_init_is_normal_with_fan_in_and_the_activations_gain(activation: str) -> None:
    conv, hidden, output = init_layers("kaiming", activation)

    gain = GAINS[activation]
    assert hidden.weight.std().item() == pytest.approx(gain / math.sqrt(FAN_IN), rel=0.05)
    assert conv.weight.std().item() == pytest.approx(gain / math.sqrt(CONV_FAN_IN), rel=0.1)
    assert output.weight.std().item() == pytest.approx(1 / math.sqrt(FAN_IN), rel=0.1)
    assert all(not layer.bias.any() for layer in (conv, hidden, output) if layer.bias is not None)


@pytest.mark.parametrize("activation", ["relu", "tanh", "linear"])
def test_xavier_init_is_uniform_with_the_activations_gain(activation: str) -> None:
    _, hidden, output = init_layers("xavier", activation)

    bound = GAINS[activation] * math.sqrt(6 / (FAN_IN + FAN_IN))
    assert hidden.weight.abs().max().item() <= bound
    assert hidden.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)
    output_bound = math.sqrt(6 / (FAN_IN + N_CLASSES))
    assert output.weight.std().item() == pytest.approx(output_bound / math.sqrt(3), rel=0.1)
    assert not hidden.bias.any()


def test_normal_init_has_std_001_and_zero_biases() -> None:
    conv, hidden, output = init_layers("normal", "relu")

    for layer in (conv, hidden, output):
        assert layer.weight.std().item() == pytest.approx(0.01, rel=0.1)
        assert abs(layer.weight.mean().item()) < 0.002
        assert not layer.bias.any()


def test_default_init_is_pytorchs_with_nonzero_biases() -> None:
    conv, hidden, _ = init_layers("default", "tanh")

    # PyTorch's default: uniform within 1 / sqrt(fan_in) (kaiming_uniform with a = sqrt(5)).
    assert hidden.weight.abs().max().item() <= 1 / math.sqrt(FAN_IN)
    assert hidden.bias.any()
    assert conv.bias is not None and conv.bias.any()


@pytest.mark.parametrize("init", INITS)
def test_initialisation_follows_the_callers_seed(init: str) -> None:
    config = {**SMALL, "conv_layers": 1, "init": init}

    def weights(seed: int) -> list[torch.Tensor]:
        torch.manual_seed(seed)
        return list(build_model(config, (1, 8, 8), N_CLASSES).state_dict().values())

    assert all(torch.equal(a, b) for a, b in zip(weights(3), weights(3), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(weights(3), weights(4), strict=True))


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


def test_channel_pair_sets_the_first_and_the_other_conv_widths() -> None:
    model = build_model({"conv_layers": 3, "channel_pair": "16/32"}, (1, 28, 28), N_CLASSES)
    widths = [module.out_channels for module in model.modules() if isinstance(module, nn.Conv2d)]
    assert widths == [16, 32, 32]
    with pytest.raises(ModelBuildError, match="channel_pair"):
        build_model({"channel_pair": "wide"}, (1, 28, 28), N_CLASSES)


def test_the_builder_knows_every_activation_the_spaces_offer() -> None:
    from hpo_service import vocabulary

    assert tuple(ACTIVATIONS) == vocabulary.ACTIVATIONS
