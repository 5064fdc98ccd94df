"""Which architectures of a search space can be built for a dataset's input shape, and which values the
model builder accepts at all: shared by the presets and space files (``hpo_service.space``,
``hpo_service.space_file``), the study planner and the workers' contract (``docs/hyperparameters.md``).
"""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Iterable, Sequence
from typing import Any

import ConfigSpace as CS

from hpo_service.errors import SettingsError
from hpo_service.shapes import PADDINGS, POOLINGS, collapse_reason, feature_map_sizes
from hpo_service.vocabulary import HYPERPARAMETER_NAMES, MAX_CONV_LAYERS

# The last conv map may hold at most 16x16 values per channel: beyond, the first linear layer needs up to
# tens of millions of weights (128 filters x 32x32 x 1024 units = 134M), slow to train and never better here.
MAX_MAP_AREA = 256
# What the model builder uses for an architecture key that a space does not have.
ARCHITECTURE_DEFAULTS: dict[str, Any] = {
    "conv_layers": 2,
    "kernel_size": 3,
    "stride": 1,
    "padding": "same",
    "pooling": "max",
}
# More values than this for one architecture key (an integer range) cannot be enumerated into clauses.
MAX_ENUMERATED_VALUES = 64


def forbid_unbuildable(
    space: CS.ConfigurationSpace,
    input_shape: tuple[int, int, int],
    *,
    max_map_area: int = MAX_MAP_AREA,
    label: str = "space",
) -> int:
    """Forbid every architecture of ``space`` that cannot be built (or is too large) for ``input_shape``.

    Enumerates the values of the architecture keys the space varies (the others take their constant or the
    builder's default); returns the number of clauses added. Raises :class:`SettingsError` when not a
    single architecture of the space works for this input.
    """
    choices = architecture_values(space)
    check_architecture_values(choices, label)
    varied = [key for key, values in choices.items() if key in space and len(values) > 1]
    others = [key for key in ARCHITECTURE_DEFAULTS if key != "conv_layers"]
    clauses: list[CS.ForbiddenAndConjunction | CS.ForbiddenInClause | CS.ForbiddenEqualsClause] = []
    buildable = 0
    for combination in itertools.product(*(choices[key] for key in others)):
        fixed = dict(zip(others, combination, strict=True))
        bad_layers = []
        for layers in choices["conv_layers"]:
            if _unbuildable_reason(input_shape, {**fixed, "conv_layers": layers}, max_map_area):
                bad_layers.append(layers)
            else:
                buildable += 1
        if bad_layers:
            clause = _clause(space, varied, fixed, bad_layers, choices["conv_layers"])
            if clause is None:
                reason = _unbuildable_reason(
                    input_shape, {**fixed, "conv_layers": bad_layers[0]}, max_map_area
                )
                raise SettingsError(f"{label} cannot be built for input {_shape(input_shape)}: {reason}")
            clauses.append(clause)
    if buildable == 0:
        raise SettingsError(f"{label}: no architecture of it can be built for input {_shape(input_shape)}")
    if clauses:
        _add_clauses(space, clauses, input_shape, label)
    return len(clauses)


def _add_clauses(
    space: CS.ConfigurationSpace, clauses: list[Any], input_shape: tuple[int, int, int], label: str
) -> None:
    from ConfigSpace.exceptions import ForbiddenValueError

    try:
        space.add(clauses)
    except ForbiddenValueError:
        # ConfigSpace refuses clauses that forbid the default configuration: name the values at fault.
        default = {name: parameter.default_value for name, parameter in space.items()}
        architecture = {key: default[key] for key in ARCHITECTURE_DEFAULTS if key in default}
        reason = unbuildable_reason(input_shape, default)
        raise SettingsError(
            f"{label}: the default configuration ({_pairs(architecture)}) cannot be built for input "
            f"{_shape(input_shape)}: {reason}; give a default that can"
        ) from None


def check_architecture_values(choices: dict[str, list[Any]], label: str) -> None:
    """Refuse architecture values the model builder cannot use (``docs/hyperparameters.md``), before the
    feature-map arithmetic divides by them."""
    limits = {"conv_layers": (0, MAX_CONV_LAYERS), "kernel_size": (1, None), "stride": (1, None)}
    for key, (low, high) in limits.items():
        for value in choices[key]:
            number = _integer(value)
            if number is None or number < low or (high is not None and number > high):
                allowed = f"{low}..{high}" if high is not None else f"an integer >= {low}"
                raise SettingsError(f"{label}: {key} must be {allowed}, got {value!r}")
    for key, allowed_values in (("padding", PADDINGS), ("pooling", POOLINGS)):
        for value in choices[key]:
            if value not in allowed_values:
                allowed = ", ".join(allowed_values)
                raise SettingsError(f"{label}: {key} must be one of {allowed}, got {value!r}")


def check_names(space: CS.ConfigurationSpace, label: str) -> None:
    """Refuse a hyperparameter the workers do not read: a typo would silently train with the default."""
    for name in space:
        if name not in HYPERPARAMETER_NAMES:
            close = difflib.get_close_matches(name, sorted(HYPERPARAMETER_NAMES), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else " (docs/hyperparameters.md lists them)"
            raise SettingsError(f"{label}: no worker reads a hyperparameter named {name!r}{hint}")


def _integer(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _pairs(values: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value!r}" for key, value in values.items())


def unbuildable_reason(
    input_shape: tuple[int, int, int], config: dict[str, Any], max_map_area: int = MAX_MAP_AREA
) -> str | None:
    """Why ``config``'s architecture is forbidden for ``input_shape``, or None (absent keys: defaults)."""
    architecture = {key: config.get(key, default) for key, default in ARCHITECTURE_DEFAULTS.items()}
    return _unbuildable_reason(input_shape, architecture, max_map_area)


def _unbuildable_reason(
    input_shape: tuple[int, int, int], architecture: dict[str, Any], max_map_area: int
) -> str | None:
    reason = collapse_reason(input_shape, architecture)
    if reason is not None or int(architecture["conv_layers"]) == 0:
        return reason
    _, height, width = input_shape
    sizes = feature_map_sizes(
        height, width, conv_layers=int(architecture["conv_layers"]),
        kernel_size=int(architecture["kernel_size"]), stride=int(architecture["stride"]),
        padding=str(architecture["padding"]), pooling=str(architecture["pooling"]),
    )  # fmt: skip
    last_height, last_width = sizes[-1]
    if last_height * last_width > max_map_area:
        return (
            f"the last feature map is {last_height}x{last_width}, more than {max_map_area} values per channel"
        )
    return None


def _clause(
    space: CS.ConfigurationSpace,
    varied: Sequence[str],
    fixed: dict[str, Any],
    bad_layers: list[Any],
    all_layers: Sequence[Any],
) -> Any:
    """The clause forbidding ``bad_layers`` conv layers with the ``fixed`` values; None if nothing varies."""
    parts: list[Any] = [
        CS.ForbiddenEqualsClause(space[key], fixed[key]) for key in varied if key != "conv_layers"
    ]
    if "conv_layers" in varied and len(bad_layers) < len(all_layers):
        parts.append(CS.ForbiddenInClause(space["conv_layers"], bad_layers))
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else CS.ForbiddenAndConjunction(*parts)


def architecture_values(space: CS.ConfigurationSpace) -> dict[str, list[Any]]:
    """The values each architecture key can take in ``space``."""
    return {key: _values(space, key) for key in ARCHITECTURE_DEFAULTS}


def _values(space: CS.ConfigurationSpace, key: str) -> list[Any]:
    """The values ``key`` can take in ``space`` (its default alone when the space does not have it)."""
    if key not in space:
        return [ARCHITECTURE_DEFAULTS[key]]
    parameter = space[key]
    if isinstance(parameter, CS.Constant):
        return [parameter.value]
    if isinstance(parameter, CS.CategoricalHyperparameter):
        return list(parameter.choices)
    if isinstance(parameter, CS.OrdinalHyperparameter):
        return list(parameter.sequence)
    if isinstance(parameter, CS.UniformIntegerHyperparameter):
        lower, upper = int(parameter.lower), int(parameter.upper)
        if upper - lower < MAX_ENUMERATED_VALUES:
            return list(range(lower, upper + 1))
    raise SettingsError(
        f"hyperparameter {key!r} must be a constant, a categorical or a small integer range "
        f"(at most {MAX_ENUMERATED_VALUES} values) so that unbuildable architectures can be excluded"
    )


def _shape(input_shape: Iterable[int]) -> str:
    return "x".join(str(size) for size in input_shape)
