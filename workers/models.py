"""The model builder: a LeNet-style CNN (or an MLP) from a configuration of the search space.

The configuration keys are the contract with :mod:`hpo_service.space`; keys a configuration leaves out
(inactive or from an older space) take the defaults of :class:`ArchitectureSpec`. New architecture
hyperparameters go into :class:`ArchitectureSpec` (a field, its parsing, its use in :func:`build_from_spec`).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

MAX_CONV_LAYERS = 3
POOL_SIZE = 2


class ConfigurationError(ValueError):
    """The configuration itself cannot be trained (its own fault, not the worker's): a failed result."""


class ModelBuildError(ConfigurationError):
    """The architecture of a configuration is invalid or cannot be built for the input shape."""


def read_int(
    config: Mapping[str, Any], key: str, default: int, error: type[ConfigurationError] = ConfigurationError
) -> int:
    """``config[key]`` as an int (integral floats such as ``16.0`` accepted), else ``default``."""
    value = config.get(key, default)
    if isinstance(value, bool):
        raise error(f"{key} must be an integer, got {value!r}")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    try:
        return operator.index(value)
    except TypeError:
        raise error(f"{key} must be an integer, got {value!r}") from None


def read_float(
    config: Mapping[str, Any], key: str, default: float, error: type[ConfigurationError] = ConfigurationError
) -> float:
    """``config[key]`` as a finite float, else ``default``."""
    value = config.get(key, default)
    if isinstance(value, bool):
        raise error(f"{key} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise error(f"{key} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise error(f"{key} must be finite, got {value!r}")
    return number


@dataclass(frozen=True)
class ArchitectureSpec:
    """The architecture hyperparameters of one configuration, validated."""

    conv_layers: int = 2
    # Filters of each conv layer; only the first ``conv_layers`` are used.
    filters: tuple[int, ...] = (16,) * MAX_CONV_LAYERS
    kernel_size: int = 3
    fc_units: int = 128
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.conv_layers <= MAX_CONV_LAYERS:
            raise ModelBuildError(
                f"conv_layers must be between 0 and {MAX_CONV_LAYERS}, got {self.conv_layers}"
            )
        if len(self.filters) < self.conv_layers:
            raise ModelBuildError(f"{self.conv_layers} conv layers need {self.conv_layers} filter counts")
        for index, count in enumerate(self.filters[: self.conv_layers], start=1):
            if count < 1:
                raise ModelBuildError(f"filters_{index} must be positive, got {count}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            # "Same" padding (kernel // 2) keeps the feature map's size only for odd kernels.
            raise ModelBuildError(f"kernel_size must be a positive odd integer, got {self.kernel_size}")
        if self.fc_units < 1:
            raise ModelBuildError(f"fc_units must be positive, got {self.fc_units}")
        if not 0.0 <= self.dropout < 1.0:
            raise ModelBuildError(f"dropout must be in [0, 1), got {self.dropout}")

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ArchitectureSpec:
        """The spec of a configuration; absent keys take the defaults, keys it does not know are ignored."""
        defaults = cls()
        conv_layers = read_int(config, "conv_layers", defaults.conv_layers, ModelBuildError)
        filters = tuple(
            read_int(config, f"filters_{index}", default, ModelBuildError)
            for index, default in enumerate(defaults.filters, start=1)
        )
        return cls(
            conv_layers=conv_layers,
            filters=filters,
            kernel_size=read_int(config, "kernel_size", defaults.kernel_size, ModelBuildError),
            fc_units=read_int(config, "fc_units", defaults.fc_units, ModelBuildError),
            dropout=read_float(config, "dropout", defaults.dropout, ModelBuildError),
        )


def build_model(config: Mapping[str, Any], input_shape: tuple[int, int, int], n_classes: int) -> nn.Module:
    """The network of ``config`` for ``input_shape`` (C, H, W) images and ``n_classes`` classes."""
    return build_from_spec(ArchitectureSpec.from_config(config), input_shape, n_classes)


def build_from_spec(spec: ArchitectureSpec, input_shape: tuple[int, int, int], n_classes: int) -> nn.Module:
    """Conv blocks (conv, 2x2 max pool while the map is at least 2x2, ReLU), then a two-layer classifier."""
    channels, height, width = _check_input(input_shape, n_classes)
    layers: list[nn.Module] = []
    for count in spec.filters[: spec.conv_layers]:
        layers.append(nn.Conv2d(channels, count, spec.kernel_size, padding=spec.kernel_size // 2))
        if min(height, width) >= POOL_SIZE:
            # Pooling before the ReLU gives the same output and gradients (both are monotone) for less work.
            layers.append(nn.MaxPool2d(POOL_SIZE))
            height, width = height // POOL_SIZE, width // POOL_SIZE
        layers.append(nn.ReLU())
        channels = count
    # "Same" padding and pooling only maps of at least 2x2 keep every map at 1x1 or more: no collapse.
    features = channels * height * width
    layers.append(nn.Flatten())
    layers += _dropout(spec.dropout)
    layers += [nn.Linear(features, spec.fc_units), nn.ReLU()]
    layers += _dropout(spec.dropout)
    layers.append(nn.Linear(spec.fc_units, n_classes))
    return nn.Sequential(*layers)


def _check_input(input_shape: tuple[int, int, int], n_classes: int) -> tuple[int, int, int]:
    if len(input_shape) != 3 or any(size < 1 for size in input_shape):
        raise ModelBuildError(f"input_shape must be three positive sizes (C, H, W), got {input_shape}")
    if n_classes < 2:
        raise ModelBuildError(f"n_classes must be at least 2, got {n_classes}")
    channels, height, width = (int(size) for size in input_shape)
    return channels, height, width


def _dropout(probability: float) -> list[nn.Module]:
    # No module at all for 0: nothing to compute, and the printed model stays readable.
    return [nn.Dropout(probability)] if probability > 0 else []


def parameter_count(model: nn.Module) -> int:
    """Trainable parameters of ``model``."""
    return sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)


def uses_convolutions(model: nn.Module) -> bool:
    """Whether ``model`` has conv layers (which run faster on channels-last tensors)."""
    return any(isinstance(module, nn.Conv2d) for module in model.modules())
