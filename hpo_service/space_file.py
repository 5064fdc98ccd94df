"""The short YAML form of a search space (``--space my-space.yaml``); the format is in docs/search-spaces.md.

```yaml
hyperparameters:
  learning_rate: {range: [1.0e-4, 0.1], log: true, default: 0.01}
  batch_size: {range: [16, 128], log: true}        # integer bounds: an integer hyperparameter
  dropout: {range: [0, 0.5], type: float}
  optimizer: {choices: [sgd, momentum, adam], default: sgd}
  conv_layers: 2                                    # a plain value: a constant
  filters_1: {range: [8, 64], log: true}
  filters_2: {range: [8, 64], log: true}
  momentum: {range: [0.5, 0.99]}
conditions:
  momentum: {optimizer: [momentum]}                 # active only when optimizer is one of these
  filters_2: {conv_layers: ">= 2"}                  # or a comparison with a numeric parent
forbid_unbuildable: true                            # default: exclude architectures that cannot be built
```

Every error names the file and the key (or, for YAML syntax, the line).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import ConfigSpace as CS
import yaml
from ConfigSpace.exceptions import CyclicDependancyError

from hpo_service.buildable import (
    architecture_values,
    check_architecture_values,
    check_names,
    forbid_unbuildable,
)
from hpo_service.errors import SettingsError
from hpo_service.presets import InputShape

TOP_LEVEL_KEYS = {"hyperparameters", "conditions", "forbid_unbuildable"}
PARAMETER_KEYS = {"range", "log", "default", "type", "choices"}
COMPARISON = re.compile(r"^\s*(>=|<=|==|!=|>|<)\s*(\S+)\s*$")


class SpaceFileError(SettingsError):
    """A search-space file is malformed; the message names the file and the key or line."""


def read_yaml_space(path: Path, input_shape: InputShape = None) -> CS.ConfigurationSpace:
    """The space described by the YAML file at ``path``, with unbuildable architectures forbidden."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "unknown place"
        raise SpaceFileError(f"--space {path}: not valid YAML at {where}: {error.problem}") from error
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise SpaceFileError(f"--space {path}: cannot be read ({error})") from error
    return space_from_document(document, f"--space {path}", input_shape)


def space_from_document(document: Any, source: str, input_shape: InputShape = None) -> CS.ConfigurationSpace:
    """The space of a parsed YAML ``document``; ``source`` names it in errors."""
    if not isinstance(document, dict):
        raise SpaceFileError(f"{source}: expected a mapping with a 'hyperparameters' key")
    unknown = set(document) - TOP_LEVEL_KEYS
    if unknown:
        raise SpaceFileError(f"{source}: unknown key(s) {sorted(unknown)}; allowed: {sorted(TOP_LEVEL_KEYS)}")
    parameters = document.get("hyperparameters")
    if not isinstance(parameters, dict) or not parameters:
        raise SpaceFileError(f"{source}: 'hyperparameters' must be a non-empty mapping of name: definition")
    space = CS.ConfigurationSpace()
    for name, definition in parameters.items():
        space.add(_parameter(str(name), definition, f"{source}: hyperparameters.{name}"))
    _add_conditions(space, document.get("conditions") or {}, source)
    forbid = document.get("forbid_unbuildable", True)
    if not isinstance(forbid, bool):
        raise SpaceFileError(f"{source}: forbid_unbuildable must be true or false, got {forbid!r}")
    check_architecture_values(architecture_values(space), source)
    if forbid and input_shape is not None:
        forbid_unbuildable(space, input_shape, label=source)
    check_names(space, source)
    return space


def _parameter(name: str, definition: Any, where: str) -> Any:
    if not isinstance(definition, dict):
        if isinstance(definition, list | type(None)):
            raise SpaceFileError(
                f"{where}: give a value, {{range: ...}} or {{choices: ...}}, got {definition!r}"
            )
        return CS.Constant(name, definition)
    unknown = set(definition) - PARAMETER_KEYS
    if unknown:
        raise SpaceFileError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(PARAMETER_KEYS)}")
    if ("range" in definition) == ("choices" in definition):
        raise SpaceFileError(f"{where}: give exactly one of 'range' and 'choices'")
    try:
        if "choices" in definition:
            return _categorical(name, definition, where)
        return _numeric(name, definition, where)
    except SpaceFileError:
        raise
    except (ValueError, TypeError) as error:
        raise SpaceFileError(f"{where}: {error}") from error


def _categorical(name: str, definition: dict[str, Any], where: str) -> Any:
    choices = definition["choices"]
    if not isinstance(choices, list) or not choices:
        raise SpaceFileError(f"{where}: choices must be a non-empty list, got {choices!r}")
    if len(set(map(repr, choices))) != len(choices):
        raise SpaceFileError(f"{where}: choices must be distinct, got {choices!r}")
    if definition.get("log") or "type" in definition:
        raise SpaceFileError(f"{where}: 'log' and 'type' apply to ranges, not to choices")
    default = definition.get("default", choices[0])
    if default not in choices:
        raise SpaceFileError(f"{where}: default {default!r} is not one of the choices {choices!r}")
    return CS.Categorical(name, choices, default=default)


def _numeric(name: str, definition: dict[str, Any], where: str) -> Any:
    bounds = definition["range"]
    if not isinstance(bounds, list) or len(bounds) != 2:
        raise SpaceFileError(f"{where}: range must be [low, high], got {bounds!r}")
    low, high = (_number(bound, f"{where}.range") for bound in bounds)
    if not low < high:
        raise SpaceFileError(f"{where}: range needs low < high, got [{low}, {high}]")
    log = definition.get("log", False)
    if not isinstance(log, bool):
        raise SpaceFileError(f"{where}: log must be true or false, got {log!r}")
    if log and low <= 0:
        raise SpaceFileError(f"{where}: a log range must be positive, got [{low}, {high}]")
    kind = definition.get("type", "int" if all(isinstance(b, int) for b in (low, high)) else "float")
    default = definition.get("default")
    if default is not None:
        default = _number(default, f"{where}.default")
        if not low <= default <= high:
            raise SpaceFileError(f"{where}: default {default} is outside the range [{low}, {high}]")
    if kind == "int":
        if not all(float(value).is_integer() for value in (low, high)):
            raise SpaceFileError(f"{where}: an int range needs integer bounds, got [{low}, {high}]")
        int_default = None if default is None else round(default)
        return CS.Integer(name, (int(low), int(high)), log=log, default=int_default)
    if kind != "float":
        raise SpaceFileError(f"{where}: type must be 'int' or 'float', got {kind!r}")
    return CS.Float(name, (float(low), float(high)), log=log, default=default)


def _number(value: Any, where: str) -> int | float:
    # YAML 1.1 reads "1e-4" (no dot) as a string: accept numbers written either way.
    if isinstance(value, bool):
        raise SpaceFileError(f"{where}: expected a number, got {value!r}")
    if isinstance(value, int | float):
        number: int | float = value
    else:
        try:
            number = float(str(value))
        except ValueError:
            raise SpaceFileError(f"{where}: expected a number, got {value!r}") from None
    if not math.isfinite(number):
        raise SpaceFileError(f"{where}: expected a finite number, got {value!r}")
    return number


def _add_conditions(space: CS.ConfigurationSpace, conditions: Any, source: str) -> None:
    if not isinstance(conditions, dict):
        raise SpaceFileError(f"{source}: 'conditions' must map a hyperparameter to {{parent: values}}")
    for child_name, parents in conditions.items():
        where = f"{source}: conditions.{child_name}"
        if child_name not in space:
            raise SpaceFileError(f"{where}: no hyperparameter named {child_name!r}")
        if not isinstance(parents, dict) or not parents:
            raise SpaceFileError(f"{where}: expected {{parent: [values]}} or {{parent: '>= 2'}}")
        parts = [
            _condition(space, space[child_name], str(parent), rule, f"{where}.{parent}")
            for parent, rule in parents.items()
        ]
        try:
            space.add(parts[0] if len(parts) == 1 else CS.AndConjunction(*parts))
        except CyclicDependancyError:
            cycle = f"the conditions form a cycle ({child_name} depends on itself)"
            raise SpaceFileError(f"{where}: {cycle}") from None
        except (ValueError, TypeError) as error:
            raise SpaceFileError(f"{where}: {error}") from error


def _condition(space: CS.ConfigurationSpace, child: Any, parent_name: str, rule: Any, where: str) -> Any:
    if parent_name not in space:
        raise SpaceFileError(f"{where}: no hyperparameter named {parent_name!r}")
    parent = space[parent_name]
    try:
        if isinstance(rule, list):
            if not rule:
                raise SpaceFileError(f"{where}: the list of parent values is empty")
            return CS.InCondition(child, parent, rule)
        match = COMPARISON.match(str(rule)) if isinstance(rule, str) else None
        if match is None:
            return CS.EqualsCondition(child, parent, rule)
        return _comparison(child, parent, match.group(1), _number(match.group(2), where), where)
    except SpaceFileError:
        raise
    except (ValueError, TypeError) as error:
        raise SpaceFileError(f"{where}: {error}") from error


def _comparison(child: Any, parent: Any, operator: str, value: float, where: str) -> Any:
    integer_parent = isinstance(parent, CS.UniformIntegerHyperparameter)
    if integer_parent:
        value = int(value) if float(value).is_integer() else value
    if operator == ">":
        return CS.GreaterThanCondition(child, parent, value)
    if operator == "<":
        return CS.LessThanCondition(child, parent, value)
    if operator == "==":
        return CS.EqualsCondition(child, parent, value)
    if operator == "!=":
        return CS.NotEqualsCondition(child, parent, value)
    if not integer_parent:
        raise SpaceFileError(f"{where}: '{operator}' needs an integer parent; use '>' or '<' with floats")
    return (
        CS.GreaterThanCondition(child, parent, value - 1)
        if operator == ">="
        else CS.LessThanCondition(child, parent, value + 1)
    )
