"""``NAME=V1,V2,...`` and ``NAME=log:LOW:HIGH:N`` read against a search space.

Values are parsed to the hyperparameter's type (a float, an integer, one of a categorical's choices) and
must be legal in the space; every mistake is a :class:`~hpo_service.errors.SettingsError` whose message
names the option, the hyperparameter and what is wrong, in one line.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import ConfigSpace as CS
import numpy as np

from hpo_service.errors import SettingsError
from hpo_service.vocabulary import ALIASES
from hpo_service.wire import to_builtins

SPACINGS = ("log", "lin")
TRUE_WORDS = ("true", "yes", "on", "1")
FALSE_WORDS = ("false", "no", "off", "0")


def split_assignment(text: str, option: str) -> tuple[str, str]:
    """``NAME=SPEC`` -> ``(NAME, SPEC)``; both must be non-empty."""
    name, equals, spec = text.partition("=")
    if not equals or not name.strip() or not spec.strip():
        raise SettingsError(
            f"{option} {text!r}: expected NAME=VALUE (--vary: NAME=V1,V2,... or NAME=log:LOW:HIGH:N)"
        )
    return name.strip(), spec.strip()


def resolve_name(space: CS.ConfigurationSpace, name: str, option: str) -> str:
    """The space's hyperparameter called ``name``, or the one its alias (``lr``) stands for."""
    if name in space:
        return name
    alias = ALIASES.get(name.lower())
    if alias is not None and alias in space:
        return alias
    raise SettingsError(f"{option} {name}: no such hyperparameter in the space; it has {', '.join(space)}")


def parse_values(hyperparameter: Any, spec: str, option: str) -> tuple[Any, ...]:
    """The values of ``spec`` (``V1,V2,...``, ``log:LOW:HIGH:N`` or ``lin:LOW:HIGH:N``) for the
    hyperparameter, in the order given, each legal; a value given twice is refused."""
    name = hyperparameter.name
    head = spec.split(":", 1)[0].lower()
    if head in SPACINGS:
        values = spaced_values(hyperparameter, spec, option)
    else:
        values = tuple(parse_value(hyperparameter, item.strip(), option) for item in spec.split(","))
    seen: list[Any] = []
    for value in values:
        if value in seen:
            raise SettingsError(f"{option} {name}: value {value!r} is given twice")
        seen.append(value)
    return values


def spaced_values(hyperparameter: Any, spec: str, option: str) -> tuple[Any, ...]:
    """``log:LOW:HIGH:N`` (geometric) or ``lin:LOW:HIGH:N`` (arithmetic), both ends included; integers are
    rounded and must stay distinct."""
    name = hyperparameter.name
    parts = spec.split(":")
    usage = f"{option} {name}={spec}: expected log:LOW:HIGH:N or lin:LOW:HIGH:N"
    if len(parts) != 4:
        raise SettingsError(usage)
    if not isinstance(hyperparameter, CS.UniformFloatHyperparameter | CS.UniformIntegerHyperparameter):
        raise SettingsError(f"{option} {name}={spec}: spaced values need a numeric range; list the values")
    try:
        low, high, count = float(parts[1]), float(parts[2]), int(parts[3])
    except ValueError:
        raise SettingsError(usage) from None
    if count < 2 or not low < high:
        raise SettingsError(f"{option} {name}={spec}: need N >= 2 and LOW < HIGH")
    if parts[0].lower() == "log":
        if low <= 0:
            raise SettingsError(f"{option} {name}={spec}: log spacing needs LOW > 0")
        raw = np.geomspace(low, high, count)
    else:
        raw = np.linspace(low, high, count)
    texts = [f"{round(value)}" if _is_integer(hyperparameter) else f"{value:.12g}" for value in raw]
    if len(set(texts)) < len(texts):
        raise SettingsError(f"{option} {name}={spec}: {count} values do not stay distinct as integers")
    return tuple(parse_value(hyperparameter, text, option) for text in texts)


def parse_value(hyperparameter: Any, text: str, option: str) -> Any:
    """``text`` as a legal value of ``hyperparameter`` (builtin type), else a one-line SettingsError."""
    name = hyperparameter.name
    if not text:
        raise SettingsError(f"{option} {name}: empty value")
    if isinstance(hyperparameter, CS.Constant):
        value = to_builtins(hyperparameter.value)
        if _same(value, text):
            return value
        raise SettingsError(f"{option} {name}={text}: {name} is fixed at {value!r} in this space")
    if isinstance(hyperparameter, CS.CategoricalHyperparameter | CS.OrdinalHyperparameter):
        return _choice(hyperparameter, text, option)
    if isinstance(hyperparameter, CS.UniformFloatHyperparameter | CS.UniformIntegerHyperparameter):
        return _number(hyperparameter, text, option)
    raise SettingsError(
        f"{option} {name}: hyperparameters of type {type(hyperparameter).__name__} cannot be set"
    )


def _choice(hyperparameter: Any, text: str, option: str) -> Any:
    choices: Sequence[Any] = to_builtins(
        hyperparameter.choices
        if isinstance(hyperparameter, CS.CategoricalHyperparameter)
        else hyperparameter.sequence
    )
    for choice in choices:
        if _same(choice, text):
            return choice
    listed = ", ".join(str(choice) for choice in choices)
    raise SettingsError(f"{option} {hyperparameter.name}={text}: not one of the space's choices ({listed})")


def _number(hyperparameter: Any, text: str, option: str) -> int | float:
    name = hyperparameter.name
    try:
        number = float(text)
    except ValueError:
        raise SettingsError(f"{option} {name}={text}: not a number") from None
    if not math.isfinite(number):
        raise SettingsError(f"{option} {name}={text}: not a finite number")
    value: int | float = number
    if _is_integer(hyperparameter):
        if not number.is_integer():
            raise SettingsError(f"{option} {name}={text}: not an integer")
        value = int(number)
    lower, upper = to_builtins(hyperparameter.lower), to_builtins(hyperparameter.upper)
    if not lower <= value <= upper:
        raise SettingsError(
            f"{option} {name}={text}: outside the space's range [{lower:g}, {upper:g}] "
            "(give a --space whose range holds it)"
        )
    return value


def _is_integer(hyperparameter: Any) -> bool:
    return isinstance(hyperparameter, CS.UniformIntegerHyperparameter)


def _same(value: Any, text: str) -> bool:
    """Whether ``text`` names ``value``: booleans by word, numbers by value (``5``, ``5.0``), else by str."""
    if isinstance(value, bool):
        return text.lower() in (TRUE_WORDS if value else FALSE_WORDS)
    if isinstance(value, int | float):
        try:
            return float(text) == value
        except ValueError:
            return False
    return str(value) == text
