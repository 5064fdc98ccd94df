"""What the analyses need to know about the hyperparameters: name, kind, range, log scale.

Read from the run dir's ``configspace.json`` (ConfigSpace's JSON, parsed with :mod:`json`: no ConfigSpace
import) when there is one, else inferred from the sampled configurations, as for plain HpBandSter runs
that did not save their space. Also resolves the names users type (``lr``, a unique prefix) to a
hyperparameter.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from analysis.data import RunData, finite_or_none
from hpo_service import run_files
from hpo_service.vocabulary import ALIASES

logger = logging.getLogger(__name__)

SPACE_FILE = run_files.SPACE
NUMERIC = "numeric"
CATEGORICAL = "categorical"


@dataclass(frozen=True)
class Parameter:
    """One hyperparameter. ``choices`` holds a categorical's values in their declared order."""

    name: str
    kind: str
    log: bool = False
    lower: float | None = None
    upper: float | None = None
    choices: tuple[Any, ...] = ()
    integer: bool = False


class UnknownParameterError(ValueError):
    """A name that matches no hyperparameter, or several."""


def run_parameters(run: RunData) -> tuple[Parameter, ...]:
    """The hyperparameters of ``run``: from ``configspace.json`` when readable, else inferred."""
    path = run.run_dir / SPACE_FILE
    if path.is_file():
        try:
            return parameters_from_json(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, UnicodeDecodeError, KeyError, TypeError) as error:
            logger.warning("%s: unreadable (%s); inferring the hyperparameters from the configs", path, error)
    return infer_parameters(run.configs.values())


def parameters_from_json(space: Mapping[str, Any]) -> tuple[Parameter, ...]:
    parameters = []
    for entry in space["hyperparameters"]:
        kind = str(entry["type"])
        name = str(entry["name"])
        if kind in ("categorical", "ordinal"):
            values = entry.get("choices") or entry.get("sequence") or ()
            parameters.append(Parameter(name, CATEGORICAL, choices=tuple(values)))
        elif kind == "constant":
            parameters.append(Parameter(name, CATEGORICAL, choices=(entry.get("value"),)))
        else:
            parameters.append(
                Parameter(
                    name,
                    NUMERIC,
                    log=bool(entry.get("log", False)),
                    lower=finite_or_none(entry.get("lower")),
                    upper=finite_or_none(entry.get("upper")),
                    integer="int" in kind,
                )
            )
    return tuple(parameters)


def infer_parameters(configs: Iterable[Mapping[str, Any]]) -> tuple[Parameter, ...]:
    """Numeric when every value is a number (log scale when positive and spanning over two decades)."""
    values: dict[str, list[Any]] = {}
    for config in configs:
        for name, value in config.items():
            values.setdefault(name, []).append(value)
    parameters = []
    for name, seen in values.items():
        numbers = [finite_or_none(value) for value in seen]
        if all(number is not None for number in numbers):
            low, high = min(numbers), max(numbers)  # type: ignore[type-var]
            assert low is not None and high is not None
            log = low > 0 and high / low > 100
            integer = all(isinstance(value, int) for value in seen)
            parameters.append(Parameter(name, NUMERIC, log=log, lower=low, upper=high, integer=integer))
        else:
            choices = tuple(dict.fromkeys(seen))
            parameters.append(Parameter(name, CATEGORICAL, choices=choices))
    return tuple(sorted(parameters, key=lambda parameter: parameter.name))


def resolve_parameter(name: str, parameters: Iterable[Parameter]) -> Parameter:
    """The parameter called ``name``, its alias (``lr``), or the one whose name starts with ``name``."""
    by_name = {parameter.name: parameter for parameter in parameters}
    if name in by_name:
        return by_name[name]
    alias = ALIASES.get(name.lower())
    if alias in by_name:
        return by_name[alias]
    matches = [known for known in by_name if known.startswith(name)]
    if len(matches) == 1:
        return by_name[matches[0]]
    known = ", ".join(sorted(by_name)) or "none"
    if matches:
        raise UnknownParameterError(f"{name!r} is ambiguous: {', '.join(sorted(matches))}")
    raise UnknownParameterError(f"no hyperparameter {name!r}; this run has: {known}")


def scaled(parameter: Parameter, value: Any) -> float:
    """``value`` on the scale the parameter is searched on: log10 for log parameters, the choice index
    for categoricals; NaN when the value is missing (an inactive conditional parameter)."""
    if value is None:
        return math.nan
    if parameter.kind == CATEGORICAL:
        return float(parameter.choices.index(value)) if value in parameter.choices else math.nan
    number = finite_or_none(value)
    if number is None:
        return math.nan
    if parameter.log:
        return math.log10(number) if number > 0 else math.nan
    return number
