"""Search spaces: presets by name, ConfigSpace JSON and YAML files, and dataset-aware forbidden clauses.

Hyperparameter names are the contract with the workers (``docs/hyperparameters.md``). A space is built for
a dataset's input shape: :func:`forbid_unbuildable` adds forbidden clauses so that no configuration whose
feature map collapses below 1x1 (or whose last map is too large to flatten sensibly) is ever sampled.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import ConfigSpace as CS

from hpo_service.errors import SettingsError
from hpo_service.presets import PRESETS, InputShape
from hpo_service.shapes import DATASET_SHAPES, collapse_reason, feature_map_sizes

SPACE_NAMES = tuple(PRESETS)
YAML_SUFFIXES = (".yaml", ".yml")
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


def dataset_input_shape(dataset: str | None) -> InputShape:
    """The input shape of a known dataset, else None (the space is then built without forbidden clauses)."""
    return DATASET_SHAPES.get(dataset) if dataset else None


def build_space(name: str, input_shape: InputShape = None, seed: int | None = None) -> CS.ConfigurationSpace:
    """The preset ``name`` for images of ``input_shape`` (C, H, W), unbuildable architectures forbidden."""
    if name not in PRESETS:
        raise SettingsError(f"unknown search space {name!r}; choose one of {', '.join(SPACE_NAMES)}")
    space = PRESETS[name](input_shape)
    if input_shape is not None:
        forbid_unbuildable(space, input_shape, label=f"space {name!r}")
    if seed is not None:
        space.seed(seed)
    return space


def default_space(seed: int | None = None) -> CS.ConfigurationSpace:
    return build_space("default", seed=seed)


def load_space(spec: str, seed: int | None = None, dataset: str | None = None) -> CS.ConfigurationSpace:
    """A preset, a YAML space file or a ConfigSpace JSON file (e.g. a previous run's ``configspace.json``).

    Presets and YAML files get the forbidden clauses of ``dataset``'s input shape; a JSON file is taken as
    it is (a run's ``configspace.json`` already holds its clauses).
    """
    input_shape = dataset_input_shape(dataset)
    if spec in PRESETS:
        return build_space(spec, input_shape, seed)
    path = Path(spec)
    if not path.is_file():
        raise SettingsError(f"--space {spec!r}: neither a known space ({', '.join(SPACE_NAMES)}) nor a file")
    if path.suffix.lower() in YAML_SUFFIXES:
        from hpo_service.space_file import read_yaml_space

        space = read_yaml_space(path, input_shape)
    else:
        space = _read_json_space(path)
    if seed is not None:
        space.seed(seed)
    return space


def check_space_spec(spec: str, dataset: str | None = None) -> None:
    """Fail early, before any process starts: load the space as the master will (a bad file is refused)."""
    load_space(spec, dataset=dataset)


def _read_json_space(path: Path) -> CS.ConfigurationSpace:
    try:
        return CS.ConfigurationSpace.from_json(path)
    except json.JSONDecodeError as error:
        raise SettingsError(f"--space {path}: not valid JSON (line {error.lineno}: {error.msg})") from error
    except (ValueError, KeyError, TypeError) as error:
        raise SettingsError(f"--space {path}: not a ConfigSpace JSON file ({error!r})") from error


def write_space(space: CS.ConfigurationSpace, path: Path) -> None:
    space.to_json(path, indent=2)


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
    choices = {key: _values(space, key) for key in ARCHITECTURE_DEFAULTS}
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
        space.add(clauses)
    return len(clauses)


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
