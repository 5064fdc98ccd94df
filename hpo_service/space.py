"""Search spaces: presets by name, ConfigSpace JSON and YAML files, and dataset-aware forbidden clauses.

Hyperparameter names are the contract with the workers (``docs/hyperparameters.md``). A space is built for
a dataset's input shape: :func:`forbid_unbuildable` adds forbidden clauses so that no configuration whose
feature map collapses below 1x1 (or whose last map is too large to flatten sensibly) is ever sampled.
"""

from __future__ import annotations

import json
from pathlib import Path

import ConfigSpace as CS

from hpo_service.buildable import (
    ARCHITECTURE_DEFAULTS,
    MAX_MAP_AREA,
    forbid_unbuildable,
    unbuildable_reason,
)
from hpo_service.errors import SettingsError
from hpo_service.presets import PRESETS, InputShape
from hpo_service.shapes import DATASET_SHAPES
from hpo_service.space_file import read_yaml_space

__all__ = [
    "ARCHITECTURE_DEFAULTS",
    "MAX_MAP_AREA",
    "SPACE_NAMES",
    "build_space",
    "check_space_spec",
    "dataset_input_shape",
    "default_space",
    "forbid_unbuildable",
    "load_space",
    "unbuildable_reason",
    "write_space",
]

SPACE_NAMES = tuple(PRESETS)
YAML_SUFFIXES = (".yaml", ".yml")


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
