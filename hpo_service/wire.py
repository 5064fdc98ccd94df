"""The one place where values are made safe for the Pyro4 wire and for JSON.

HpBandSter 0.7.4 with numpy 2 / ConfigSpace 1.x puts numpy scalars into configurations
(``numpy.str_``, ``numpy.int64``, ``numpy.bool``) and budgets (``numpy.float64``). Pyro4's serpent
serializer cannot send them and the dispatcher thread dies silently, so every value that crosses a
process boundary or goes into a log is passed through :func:`to_builtins` first. Pyro4 keeps its
serpent serializer: pickle on the wire lets anyone who reaches a port run code.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from typing import Any

import numpy as np


def to_builtins(value: Any) -> Any:
    """Return ``value`` as plain Python: ``str``, ``int``, ``float``, ``bool``, ``None``, lists, dicts.

    Tuples become lists (serpent and JSON do that anyway), mapping keys become strings unless they are
    already builtin scalars. Tensors and arrays with ``tolist`` are converted; anything else unknown is an
    error rather than a silent hang on the other side of the wire.
    """
    if isinstance(value, enum.Enum):
        # Enums (e.g. JobStatus) travel as their value.
        return to_builtins(value.value)
    if value is None or isinstance(value, bool | str):
        # numpy.str_ subclasses str: rebuild it so serpent sees a plain str.
        return str(value) if isinstance(value, str) and type(value) is not str else value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.str_ | np.bytes_):
        return str(value)
    if isinstance(value, Mapping):
        return {_key(key): to_builtins(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_builtins(item) for item in value]
    if isinstance(value, np.ndarray) or hasattr(value, "tolist"):
        return to_builtins(value.tolist())
    raise TypeError(f"cannot send a value of type {type(value).__name__} over the wire: {value!r}")


def _key(key: Any) -> str | int | float | bool | None:
    converted = to_builtins(key)
    if converted is None or isinstance(converted, str | int | float | bool):
        return converted
    return str(converted)


def budget_to_builtin(budget: Any) -> float:
    """Budgets are epochs; HpBandSter computes them as ``numpy.float64``."""
    value = float(budget)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"budget must be a positive finite number, got {budget!r}")
    return value


def json_safe(value: Any) -> Any:
    """Like :func:`to_builtins`, and non-finite floats become ``None`` so the JSON logs stay strict JSON."""
    converted = to_builtins(value)
    return _replace_non_finite(converted)


def _replace_non_finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _replace_non_finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_replace_non_finite(item) for item in value]
    return value
