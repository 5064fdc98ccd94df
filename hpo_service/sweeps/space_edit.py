"""Keep a serialized ConfigSpace consistent after its hyperparameters were narrowed.

Narrowing a parent can decide its conditions: ``momentum | optimizer == 'sgd'`` never holds once
``optimizer`` keeps only ``adam`` (momentum is dropped, and what hangs on it), and always holds once it keeps
only ``sgd`` (the condition is dropped). Forbidden clauses that name removed values can never fire and are
dropped; ``in`` clauses keep the values that are still legal. Works on the dict of
``ConfigurationSpace.to_serialized_dict`` (format 0.4 of ConfigSpace 1.x).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

ALWAYS = "always"
NEVER = "never"
CATEGORICAL_TYPES = ("categorical", "ordinal")
NUMERIC_TYPES = ("uniform_float", "uniform_int", "normal_float", "normal_int", "beta_float", "beta_int")

Entry = dict[str, Any]


def prune(document: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``document`` whose conditions and forbidden clauses fit its hyperparameters."""
    entries = {entry["name"]: dict(entry) for entry in document["hyperparameters"]}
    conditions: list[Any] = list(document.get("conditions", []))
    while True:
        kept, never = [], set()
        for condition in conditions:
            verdict = condition_verdict(condition, entries)
            if verdict == NEVER:
                never.add(condition["child"])
            elif verdict != ALWAYS:
                kept.append(verdict)
        conditions = kept
        if not never:
            break
        for name in never:
            entries.pop(name, None)
    forbiddens = []
    seen = set()
    for clause in document.get("forbiddens", []):
        verdict = forbidden_verdict(clause, entries)
        key = json.dumps(verdict, sort_keys=True)
        if verdict != NEVER and key not in seen:
            seen.add(key)
            forbiddens.append(verdict)
    return {
        **document,
        "hyperparameters": [entry for entry in document["hyperparameters"] if entry["name"] in entries],
        "conditions": conditions,
        "forbiddens": forbiddens,
    }


def domain(entry: Entry) -> tuple[str, Any]:
    """``("set", values)`` for categoricals and constants, ``("range", (lower, upper))`` for numbers."""
    kind = entry["type"]
    if kind == "constant":
        return "set", [entry["value"]]
    if kind in CATEGORICAL_TYPES:
        return "set", list(entry.get("choices") or entry.get("sequence") or [])
    if kind in NUMERIC_TYPES:
        return "range", (entry["lower"], entry["upper"])
    return "other", None


def condition_verdict(condition: Mapping[str, Any], entries: Mapping[str, Entry]) -> Any:
    """ALWAYS, NEVER, or the condition (updated) that still decides."""
    kind = condition["type"]
    if kind in ("AND", "OR"):
        return _conjunction(condition, [condition_verdict(part, entries) for part in condition["conditions"]])
    parent = entries.get(condition["parent"])
    if parent is None:
        return NEVER
    shape, values = domain(parent)
    if shape == "set":
        return _on_set(condition, values)
    if shape == "range":
        return _on_range(condition, *values)
    return dict(condition)


def _conjunction(condition: Mapping[str, Any], parts: list[Any]) -> Any:
    deciding, absorbing = (ALWAYS, NEVER) if condition["type"] == "AND" else (NEVER, ALWAYS)
    if absorbing in parts:
        return absorbing
    remaining = [part for part in parts if part != deciding]
    if not remaining:
        return deciding
    if len(remaining) == 1:
        return remaining[0]
    return {**condition, "conditions": remaining}


def _on_set(condition: Mapping[str, Any], choices: list[Any]) -> Any:
    kind = condition["type"]
    if kind in ("EQ", "NEQ"):
        if choices == [condition["value"]]:
            return ALWAYS if kind == "EQ" else NEVER
        if condition["value"] not in choices:
            return NEVER if kind == "EQ" else ALWAYS
        return dict(condition)
    if kind == "IN":
        values = [value for value in condition["values"] if value in choices]
        if not values:
            return NEVER
        if all(choice in values for choice in choices):
            return ALWAYS
        return {**condition, "values": values}
    return dict(condition)


def _on_range(condition: Mapping[str, Any], lower: float, upper: float) -> Any:
    kind = condition["type"]
    if kind == "IN":
        values = [item for item in condition["values"] if lower <= item <= upper]
        return {**condition, "values": values} if values else NEVER
    value: Any = condition.get("value")
    if value is None:
        return dict(condition)
    if kind == "GT":
        return ALWAYS if lower > value else NEVER if upper <= value else dict(condition)
    if kind == "LT":
        return ALWAYS if upper < value else NEVER if lower >= value else dict(condition)
    if kind == "EQ" and not lower <= value <= upper:
        return NEVER
    if kind == "NEQ" and not lower <= value <= upper:
        return ALWAYS
    return dict(condition)


def forbidden_verdict(clause: Mapping[str, Any], entries: Mapping[str, Entry]) -> Any:
    """NEVER (the clause can no longer fire) or the clause with the values that are still legal."""
    kind = clause["type"]
    if kind == "AND":
        parts = [forbidden_verdict(part, entries) for part in clause["clauses"]]
        return NEVER if NEVER in parts else {**clause, "clauses": parts}
    names = [clause[key] for key in ("name", "left", "right") if key in clause]
    if any(name not in entries for name in names):
        return NEVER
    if kind not in ("EQUALS", "IN"):
        return dict(clause)
    shape, legal = domain(entries[clause["name"]])

    def allowed(value: Any) -> bool:
        if shape == "set":
            return value in legal
        if shape == "range":
            return legal[0] <= value <= legal[1]
        return True

    if kind == "EQUALS":
        return dict(clause) if allowed(clause["value"]) else NEVER
    values = [value for value in clause["values"] if allowed(value)]
    return {**clause, "values": values} if values else NEVER
