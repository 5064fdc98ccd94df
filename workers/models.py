"""The model builder: a LeNet-style CNN (or an MLP) from a configuration of the search space.

The configuration keys are the contract of ``docs/hyperparameters.md`` ("Architecture"); keys a
configuration leaves out (inactive or from an older space) take the defaults of :class:`ArchitectureSpec`.
New architecture hyperparameters go into :class:`ArchitectureSpec` (a field, its parsing, its use in
:func:`build_from_spec`). The feature-map arithmetic is :mod:`hpo_service.shapes`, shared with the space.
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from torch import nn

from hpo_service.shapes import PADDINGS, POOL_SIZE, POOLINGS, collapse_reason, feature_map_sizes
from hpo_service.vocabulary import INITS, MAX_CONV_LAYERS, MAX_LINEAR_LAYERS

__all__ = [
    "ACTIVATIONS",
    "INITS",
    "MAX_CONV_LAYERS",
    "MAX_LINEAR_LAYERS",
    "PADDINGS",
    "POOLINGS",
    "POOL_SIZE",
    "ArchitectureSpec",
    "ConfigurationError",
    "ModelBuildError",
    "build_from_spec",
    "build_model",
    "parameter_count",
    "read_bool",
    "read_choice",
    "read_float",
    "read_int",
    "uses_convolutions",
]

DEFAULT_FILTERS = 16
DEFAULT_UNITS = 128
LEAKY_RELU_SLOPE = 0.01  # PyTorch's default, also the ``param`` of its leaky_relu gain

# "linear" is no module at all: nothing to compute, and the printed model stays readable.
ACTIVATIONS: dict[str, Callable[[], nn.Module] | None] = {
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "leaky_relu": lambda: nn.LeakyReLU(LEAKY_RELU_SLOPE),
    "tanh": nn.Tanh,
    "softsign": nn.Softsign,
    "linear": None,
}
GainName = Literal["linear", "relu", "leaky_relu", "tanh"]
# The nn.init.calculate_gain name of each activation. It knows no ELU or softsign: ELU takes ReLU's gain
# (He init, as in Clevert et al. 2016), softsign the gain of tanh, the saturating function it resembles.
GAIN_NAMES: dict[str, GainName] = {
    "relu": "relu",
    "elu": "relu",
    "leaky_relu": "leaky_relu",
    "tanh": "tanh",
    "softsign": "tanh",
    "linear": "linear",
}
NORMAL_INIT_STD = 0.01


class ConfigurationError(ValueError):
    """The configuration itself cannot be trained (its own fault, not the worker's): a failed result."""


class ModelBuildError(ConfigurationError):
    """The architecture of a configuration is invalid or cannot be built for the input shape."""


def read_int(
    config: Mapping[str, Any], key: str, default: int, error: type[ConfigurationError] = ConfigurationError
) -> int:
    """``config[key]`` as an int (integral floats such as ``16.0`` accepted), else ``default``."""
    value = config.get(key, default)
    if isinstance(value, (bool, np.bool_)):
        raise error(f"{key} must be an integer, got {value!r}")
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        number = float(value)
        if number.is_integer():  # also false for inf and nan
            return int(number)
        raise error(f"{key} must be an integer, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise error(f"{key} must be an integer, got {value!r}") from None


def read_float(
    config: Mapping[str, Any], key: str, default: float, error: type[ConfigurationError] = ConfigurationError
) -> float:
    """``config[key]`` as a finite float, else ``default``."""
    value = config.get(key, default)
    if isinstance(value, (bool, np.bool_)):
        raise error(f"{key} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise error(f"{key} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise error(f"{key} must be finite, got {value!r}")
    return number


def read_bool(
    config: Mapping[str, Any], key: str, default: bool, error: type[ConfigurationError] = ConfigurationError
) -> bool:
    """``config[key]`` as a bool (bools, 0/1 and "true"/"false": how spaces encode them), else ``default``."""
    value = config.get(key, default)
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise error(f"{key} must be a boolean (true or false), got {value!r}")


def read_choice(
    config: Mapping[str, Any],
    key: str,
    default: str,
    choices: Sequence[str],
    error: type[ConfigurationError] = ConfigurationError,
) -> str:
    """``config[key]`` as one of ``choices`` (a plain ``str``, also from ``numpy.str_``), else ``default``."""
    value = config.get(key, default)
    _check_choice(key, str(value) if isinstance(value, str) else value, choices, error)
    return str(value)


def _check_choice(key: str, value: Any, choices: Sequence[str], error: type[ConfigurationError]) -> None:
    if not isinstance(value, str) or value not in choices:
        raise error(f"{key} must be one of {', '.join(choices)}; got {value!r}")


@dataclass(frozen=True)
class ArchitectureSpec:
    """The architecture hyperparameters of one configuration, validated.

    ``filters`` and ``units`` hold the widths of the conv and hidden linear layers; longer tuples are cut to
    ``conv_layers`` and ``linear_layers``, so that two specs of the same network compare equal.
    """

    conv_layers: int = 2
    filters: tuple[int, ...] = (DEFAULT_FILTERS,) * MAX_CONV_LAYERS
    kernel_size: int = 3
    stride: int = 1
    padding: str = "same"
    pooling: str = "max"
    activation: str = "relu"
    batch_norm: bool = False
    linear_layers: int = 1
    units: tuple[int, ...] = (DEFAULT_UNITS,) * MAX_LINEAR_LAYERS
    dropout: float = 0.0
    init: str = "default"

    def __post_init__(self) -> None:
        for layers_key, key, least, most in (
            ("conv_layers", "filters", 0, MAX_CONV_LAYERS),
            ("linear_layers", "units", 1, MAX_LINEAR_LAYERS),
        ):
            count, widths = getattr(self, layers_key), getattr(self, key)
            if not least <= count <= most:
                raise ModelBuildError(f"{layers_key} must be between {least} and {most}, got {count}")
            if len(widths) < count:
                raise ModelBuildError(f"{count} {layers_key} need {count} {key}, got {widths}")
            for index, width in enumerate(widths[:count], start=1):
                if width < 1:
                    raise ModelBuildError(f"{key}_{index} must be positive, got {width}")
            object.__setattr__(self, key, tuple(widths[:count]))
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            # "Same" padding (kernel // 2) keeps the feature map's size only for odd kernels.
            raise ModelBuildError(f"kernel_size must be a positive odd integer, got {self.kernel_size}")
        if self.stride < 1:
            raise ModelBuildError(f"stride must be positive, got {self.stride}")
        for key, choices in (
            ("padding", PADDINGS),
            ("pooling", POOLINGS),
            ("activation", tuple(ACTIVATIONS)),
            ("init", INITS),
        ):
            _check_choice(key, getattr(self, key), choices, ModelBuildError)
        if not isinstance(self.batch_norm, bool):
            raise ModelBuildError(f"batch_norm must be a bool, got {self.batch_norm!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ModelBuildError(f"dropout must be in [0, 1), got {self.dropout}")

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ArchitectureSpec:
        """The spec of a configuration; absent keys take the defaults, keys it does not know are ignored."""
        defaults = cls()
        config = _expand_channel_pair(config)
        conv_layers = read_int(config, "conv_layers", defaults.conv_layers, ModelBuildError)
        linear_layers = read_int(config, "linear_layers", defaults.linear_layers, ModelBuildError)
        return cls(
            conv_layers=conv_layers,
            filters=_read_widths(config, "filters", min(conv_layers, MAX_CONV_LAYERS), DEFAULT_FILTERS),
            kernel_size=read_int(config, "kernel_size", defaults.kernel_size, ModelBuildError),
            stride=read_int(config, "stride", defaults.stride, ModelBuildError),
            padding=read_choice(config, "padding", defaults.padding, PADDINGS, ModelBuildError),
            pooling=read_choice(config, "pooling", defaults.pooling, POOLINGS, ModelBuildError),
            activation=read_choice(
                config, "activation", defaults.activation, tuple(ACTIVATIONS), ModelBuildError
            ),
            batch_norm=read_bool(config, "batch_norm", defaults.batch_norm, ModelBuildError),
            linear_layers=linear_layers,
            units=_read_widths(
                config, "units", min(linear_layers, MAX_LINEAR_LAYERS), DEFAULT_UNITS, legacy="fc_units"
            ),
            dropout=read_float(config, "dropout", defaults.dropout, ModelBuildError),
            init=read_choice(config, "init", defaults.init, INITS, ModelBuildError),
        )


def _expand_channel_pair(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """``channel_pair: "16/32"`` (the fashion-cnn study) means 16 filters in the first conv layer, 32 in the
    others; explicit ``filters_i`` keys still win."""
    if "channel_pair" not in config:
        return config
    pair = str(config["channel_pair"])
    first, _, second = pair.partition("/")
    if not (first.isdigit() and second.isdigit()):
        raise ModelBuildError(f"channel_pair must look like '16/32', got {pair!r}")
    return {"filters_1": int(first), "filters": int(second), **config}


def _read_widths(
    config: Mapping[str, Any], key: str, count: int, default: int, legacy: str | None = None
) -> tuple[int, ...]:
    """``{key}_1`` … ``{key}_{count}``, each falling back to ``key``, then ``legacy``, then ``default``.

    Only the active layers' keys are read (an inactive ``filters_3`` may hold anything); a bad shared width
    is reported under its own key, not under the layer that fell back to it.
    """
    widths = []
    for index in range(1, count + 1):
        source = next((name for name in (f"{key}_{index}", key, legacy) if name and name in config), None)
        width = default if source is None else read_int(config, source, default, ModelBuildError)
        if width < 1:
            raise ModelBuildError(f"{source} must be positive, got {width}")
        widths.append(width)
    return tuple(widths)


def build_model(config: Mapping[str, Any], input_shape: tuple[int, int, int], n_classes: int) -> nn.Module:
    """The network of ``config`` for ``input_shape`` (C, H, W) images and ``n_classes`` classes."""
    return build_from_spec(ArchitectureSpec.from_config(config), input_shape, n_classes)


def build_from_spec(spec: ArchitectureSpec, input_shape: tuple[int, int, int], n_classes: int) -> nn.Module:
    """Conv blocks (conv, batch norm, activation, 2x2 pooling; max pooling before the activation, the same
    function), then hidden linear blocks (linear, batch norm, activation, dropout) and the output layer."""
    channels, height, width = _check_input(input_shape, n_classes)
    geometry: dict[str, Any] = {
        "conv_layers": spec.conv_layers,
        "kernel_size": spec.kernel_size,
        "stride": spec.stride,
        "padding": spec.padding,
        "pooling": spec.pooling,
    }
    reason = collapse_reason((channels, height, width), geometry)
    if reason is not None:
        raise ModelBuildError(reason)
    sizes = feature_map_sizes(height, width, **geometry)
    height, width = sizes[-1] if sizes else (height, width)

    # Batch norm's shift makes the bias of the layer before it redundant.
    bias = not spec.batch_norm
    layers: list[nn.Module] = []
    for count in spec.filters:
        padding = spec.kernel_size // 2 if spec.padding == "same" else 0
        conv = nn.Conv2d(channels, count, spec.kernel_size, spec.stride, padding, bias=bias)
        layers.append(_initialised(conv, spec))
        block = _norm_and_activation(spec, nn.BatchNorm2d, count)
        if spec.pooling == "max":
            # Every activation here is non-decreasing, so it commutes with taking a maximum: pooling first
            # gives the same values and gradients, with the activation on a quarter of the pixels (measured
            # ~12 % faster training of lenet-small on CPU). Batch norm stays first (its scale may be < 0).
            position = len(block) - (ACTIVATIONS[spec.activation] is not None)
            block.insert(position, nn.MaxPool2d(POOL_SIZE))
        elif spec.pooling == "avg":
            block.append(nn.AvgPool2d(POOL_SIZE))
        layers += block
        channels = count
    layers.append(nn.Flatten())
    features = channels * height * width
    for units in spec.units:
        layers.append(_initialised(nn.Linear(features, units, bias=bias), spec))
        layers += _norm_and_activation(spec, nn.BatchNorm1d, units)
        if spec.dropout > 0:  # no module for 0: nothing to compute
            layers.append(nn.Dropout(spec.dropout))
        features = units
    # No activation follows the output layer: its initialisation gain is the linear one.
    layers.append(_initialised(nn.Linear(features, n_classes), spec, gain_name="linear"))
    return nn.Sequential(*layers)


def _check_input(input_shape: tuple[int, int, int], n_classes: int) -> tuple[int, int, int]:
    if len(input_shape) != 3 or any(size < 1 for size in input_shape):
        raise ModelBuildError(f"input_shape must be three positive sizes (C, H, W), got {input_shape}")
    if n_classes < 2:
        raise ModelBuildError(f"n_classes must be at least 2, got {n_classes}")
    channels, height, width = (int(size) for size in input_shape)
    return channels, height, width


def _norm_and_activation(
    spec: ArchitectureSpec, norm: Callable[[int], nn.Module], features: int
) -> list[nn.Module]:
    activation = ACTIVATIONS[spec.activation]
    return ([norm(features)] if spec.batch_norm else []) + ([activation()] if activation is not None else [])


def _initialised(
    layer: nn.Conv2d | nn.Linear, spec: ArchitectureSpec, gain_name: GainName | None = None
) -> nn.Module:
    """``layer`` with the weights of ``spec.init`` (from torch's global RNG, seeded by the caller)."""
    if spec.init == "default":
        return layer
    name = gain_name or GAIN_NAMES[spec.activation]
    param = LEAKY_RELU_SLOPE if name == "leaky_relu" else None
    if spec.init == "kaiming":
        nn.init.kaiming_normal_(layer.weight, a=param or 0.0, mode="fan_in", nonlinearity=name)
    elif spec.init == "xavier":
        nn.init.xavier_uniform_(layer.weight, gain=nn.init.calculate_gain(name, param))
    else:
        nn.init.normal_(layer.weight, 0.0, NORMAL_INIT_STD)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


def parameter_count(model: nn.Module) -> int:
    """Trainable parameters of ``model``."""
    return sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)


def uses_convolutions(model: nn.Module) -> bool:
    """Whether ``model`` has conv layers (which run faster on channels-last tensors)."""
    return any(isinstance(module, nn.Conv2d) for module in model.modules())
