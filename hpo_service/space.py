"""Search spaces: the default CNN space, and reading/writing ConfigSpace JSON.

Hyperparameter names are the contract with the model builder and trainer (``workers``):
``learning_rate``, ``batch_size``, ``optimizer``, ``momentum`` (SGD only), ``conv_layers``,
``filters_1..3`` (active up to ``conv_layers``), ``kernel_size``, ``dropout``, ``fc_units``.
"""

from __future__ import annotations

import json
from pathlib import Path

import ConfigSpace as CS

from hpo_service.errors import SettingsError

SPACE_NAMES = ("default",)
MAX_CONV_LAYERS = 3


def default_space(seed: int | None = None) -> CS.ConfigurationSpace:
    """LeNet-style CNN: 1-3 conv layers, filters 8-64 (log), kernel 3 or 5, FC units, dropout, SGD/Adam."""
    space = CS.ConfigurationSpace(seed=seed)
    learning_rate = CS.Float("learning_rate", (1e-4, 1e-1), default=1e-2, log=True)
    batch_size = CS.Integer("batch_size", (16, 256), default=64, log=True)
    optimizer = CS.Categorical("optimizer", ["sgd", "adam"], default="sgd")
    momentum = CS.Float("momentum", (0.0, 0.99), default=0.9)
    conv_layers = CS.Integer("conv_layers", (1, MAX_CONV_LAYERS), default=2)
    filters = [
        CS.Integer(f"filters_{index}", (8, 64), default=16, log=True)
        for index in range(1, MAX_CONV_LAYERS + 1)
    ]
    kernel_size = CS.Categorical("kernel_size", [3, 5], default=3)
    dropout = CS.Float("dropout", (0.0, 0.5), default=0.0)
    fc_units = CS.Integer("fc_units", (16, 256), default=128, log=True)
    space.add(
        [
            learning_rate,
            batch_size,
            optimizer,
            momentum,
            conv_layers,
            *filters,
            kernel_size,
            dropout,
            fc_units,
        ]
    )
    space.add(CS.EqualsCondition(momentum, optimizer, "sgd"))
    # filters_k exists only when there are at least k conv layers (filters_1 always does).
    space.add(
        [CS.GreaterThanCondition(filters[index], conv_layers, index) for index in range(1, MAX_CONV_LAYERS)]
    )
    return space


def load_space(spec: str, seed: int | None = None) -> CS.ConfigurationSpace:
    """A named space (``default``) or a ConfigSpace JSON file, e.g. a previous run's ``configspace.json``."""
    if spec in SPACE_NAMES:
        return default_space(seed)
    path = Path(spec)
    if not path.is_file():
        raise SettingsError(f"--space {spec!r}: neither a known space ({', '.join(SPACE_NAMES)}) nor a file")
    try:
        space = CS.ConfigurationSpace.from_json(path)
    except (ValueError, KeyError, TypeError, json.JSONDecodeError) as error:
        raise SettingsError(f"--space {spec}: not a ConfigSpace JSON file ({error})") from error
    if seed is not None:
        space.seed(seed)
    return space


def write_space(space: CS.ConfigurationSpace, path: Path) -> None:
    space.to_json(path, indent=2)
