"""``--space-from-sweep RUN_DIR``: narrow a space to the region a finished sweep (or grid) found good.

The rule, per hyperparameter the study varied (``sweep.json``):

1. score each tested value by the mean final validation error (the job's loss) over its jobs: its repeats,
   and for a grid every combination it took part in. Jobs without a result (a worker died) do not count; a
   failed job counts with its loss of 1.0;
2. the *good* values are those whose score is within ``tolerance`` (absolute validation error, default
   0.02) of the best score;
3. a numeric range becomes the interval from the tested value just below the smallest good value to the
   tested value just above the largest good one; where a good value is the smallest (largest) tested, the
   space's own lower (upper) bound is kept, since the sweep did not look beyond it. The log scale stays;
4. a categorical keeps its good choices and those the study did not test (no evidence against them); one
   choice left makes it a constant;
5. the default stays where it is still legal, else it becomes the best value.

Conditions and forbidden clauses are adjusted to the narrowed values (:mod:`hpo_service.sweeps.space_edit`).
Hyperparameters the study did not vary, or that the space fixes, stay as they are.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ConfigSpace as CS

from hpo_service import run_files
from hpo_service.errors import SettingsError
from hpo_service.records import WORST_LOSS
from hpo_service.sweeps.space_edit import CATEGORICAL_TYPES, prune

PLAN_FILE = run_files.STUDY_PLAN


@dataclass(frozen=True)
class ValueScore:
    value: Any
    mean_error: float
    jobs: int


@dataclass(frozen=True)
class Narrowing:
    """The narrowed space, a line per hyperparameter the study varied, and the scores behind them."""

    space: CS.ConfigurationSpace
    changes: tuple[str, ...]
    scores: dict[str, tuple[ValueScore, ...]]
    sweep_dir: Path
    tolerance: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "sweep": str(self.sweep_dir),
            "tolerance": self.tolerance,
            "rule": "docs/sweeps.md#from-a-study-to-a-search",
            "scores": {
                name: [{"value": s.value, "mean_error": s.mean_error, "jobs": s.jobs} for s in scores]
                for name, scores in self.scores.items()
            },
            "changes": list(self.changes),
        }


def narrow_space(space: CS.ConfigurationSpace, sweep_dir: Path, tolerance: float) -> Narrowing:
    """``space`` narrowed by the study in ``sweep_dir`` (see the module text); raises SettingsError.

    The space's forbidden clauses (unbuildable architectures) are kept, so nothing unbuildable comes back.
    """
    scores = sweep_scores(sweep_dir)
    document = space.to_serialized_dict()
    entries = {entry["name"]: entry for entry in document["hyperparameters"]}
    changes = []
    for name, scored in scores.items():
        entry = entries.get(name)
        if entry is None:
            changes.append(f"{name}: not in this space; nothing to narrow")
            continue
        changes.append(narrow_entry(entry, scored, tolerance))
    try:
        narrowed = CS.ConfigurationSpace.from_serialized_dict(prune(document))
    except (ValueError, KeyError, TypeError) as error:
        raise SettingsError(
            f"--space-from-sweep {sweep_dir}: the narrowed space is not valid ({error})"
        ) from None
    return Narrowing(narrowed, tuple(changes), scores, sweep_dir, tolerance)


def sweep_scores(sweep_dir: Path) -> dict[str, tuple[ValueScore, ...]]:
    """Per varied hyperparameter, the mean final validation error of each tested value, in tested order."""
    plan = _read_json(sweep_dir / PLAN_FILE, sweep_dir)
    info_by_id = {
        tuple(line[0]): (line[2] or {}).get("sweep") for line in _read_lines(sweep_dir / run_files.CONFIGS)
    }
    losses: dict[str, dict[str, list[float]]] = {name: {} for name in plan["varied"]}
    for line in _read_lines(sweep_dir / run_files.RESULTS):
        info, result = info_by_id.get(tuple(line[0])), line[3]
        if info is None or result is None:
            continue
        loss = result.get("loss")
        loss = float(loss) if isinstance(loss, int | float) and math.isfinite(loss) else WORST_LOSS
        for name in info["panels"]:
            losses[name].setdefault(_key(info["values"][name]), []).append(loss)
    scores = {}
    for name, values in plan["varied"].items():
        tested = [(value, losses[name].get(_key(value), [])) for value in values]
        scores[name] = tuple(
            ValueScore(value, sum(found) / len(found), len(found)) for value, found in tested if found
        )
    if not any(scores.values()):
        raise SettingsError(f"--space-from-sweep {sweep_dir}: no finished job in the study yet")
    return scores


def narrow_entry(entry: dict[str, Any], scores: tuple[ValueScore, ...], tolerance: float) -> str:
    """Narrow one serialized hyperparameter in place; returns what changed, in words."""
    name, kind = entry["name"], entry["type"]
    if not scores:
        return f"{name}: no finished job; unchanged"
    best = min(scores, key=lambda score: score.mean_error)
    good = [score.value for score in scores if score.mean_error <= best.mean_error + tolerance]
    evidence = (
        f"best {best.value!r} ({best.mean_error:.4f}); within {tolerance:g}: {', '.join(map(repr, good))}"
    )
    tested = [score.value for score in scores]
    if kind in ("uniform_float", "uniform_int"):
        return f"{name}: {_narrow_range(entry, tested, good, best.value)} ({evidence})"
    if kind in CATEGORICAL_TYPES:
        return f"{name}: {_narrow_choices(entry, tested, good, best.value)} ({evidence})"
    return f"{name}: a {kind} hyperparameter in this space; unchanged ({evidence})"


def _narrow_range(entry: dict[str, Any], tested: list[Any], good: list[Any], best: Any) -> str:
    numbers = sorted(float(value) for value in tested)
    low_index, high_index = numbers.index(float(min(good))), numbers.index(float(max(good)))
    lower = numbers[low_index - 1] if low_index > 0 else entry["lower"]
    upper = numbers[high_index + 1] if high_index < len(numbers) - 1 else entry["upper"]
    lower, upper = max(lower, entry["lower"]), min(upper, entry["upper"])
    if entry["type"] == "uniform_int":
        lower, upper = math.ceil(lower), math.floor(upper)
    before = f"[{entry['lower']:g}, {entry['upper']:g}]"
    if not lower < upper:
        return f"{before} unchanged (the good values lie outside it)"
    if (lower, upper) == (entry["lower"], entry["upper"]):
        return f"{before} unchanged (the good values reach the tested ends)"
    entry["lower"], entry["upper"] = lower, upper
    if not lower <= entry["default_value"] <= upper:
        entry["default_value"] = min(
            max(int(best) if entry["type"] == "uniform_int" else float(best), lower), upper
        )
    return f"{before} -> [{lower:g}, {upper:g}]"


def _narrow_choices(entry: dict[str, Any], tested: list[Any], good: list[Any], best: Any) -> str:
    key = "choices" if entry["type"] == "categorical" else "sequence"
    choices = list(entry[key])
    kept = [choice for choice in choices if choice in good or choice not in tested]
    before = "{" + ", ".join(map(repr, choices)) + "}"
    if len(kept) == len(choices):
        return f"{before} unchanged"
    if len(kept) == 1:
        name = entry["name"]
        entry.clear()
        entry.update({"type": "constant", "name": name, "value": kept[0], "meta": None})
        return f"{before} -> constant {kept[0]!r}"
    entry[key] = kept
    if entry.get("weights") is not None:
        entry["weights"] = None
    if entry["default_value"] not in kept:
        entry["default_value"] = best if best in kept else kept[0]
    return f"{before} -> {{{', '.join(map(repr, kept))}}}"


def _key(value: Any) -> str:
    return json.dumps(value)


def _read_json(path: Path, sweep_dir: Path) -> Any:
    if not path.is_file():
        raise SettingsError(f"--space-from-sweep {sweep_dir}: no {path.name}; not a sweep or grid run dir")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise SettingsError(f"--space-from-sweep {path}: unreadable ({error})") from None


def _read_lines(path: Path) -> list[Any]:
    """JSON lines; a last line cut short (the run was interrupted while writing) is skipped."""
    if not path.is_file():
        return []
    lines = []
    for text in path.read_text(encoding="utf-8").splitlines():
        try:
            lines.append(json.loads(text))
        except ValueError:
            continue
    return lines
