"""The configurations and seeds of one study, checked against the search space before anything runs.

- **base**: the space's default configuration with the ``--base`` values over it;
- **sweep** (one-factor-at-a-time): each ``--vary`` hyperparameter takes its values alone, the others stay at
  the base; a configuration that two sweeps share (both at their base value) runs once and counts for both;
- **grid**: every combination of the ``--vary`` values.

A configuration is completed against the space's conditions: hyperparameters that a varied value switches
off are dropped, ones it switches on take the space's default. A varied hyperparameter must be active in
each of its configurations (varying ``momentum`` on a base with ``optimizer=adam`` is refused, with the
``--base`` that would fix it), and every configuration must be legal and not forbidden.

Each configuration runs once per seed (``seed + k``, k < repeats), repeat by repeat; the seed travels in the
configuration as the key ``seed`` (not a hyperparameter: the workers train with it), so configuration ids
differ per repeat. ``config_info["sweep"]`` says which hyperparameter values and repeat a job stands for.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import ConfigSpace as CS

from hpo_service.errors import SettingsError
from hpo_service.presets import InputShape
from hpo_service.space import unbuildable_reason
from hpo_service.sweeps.options import SweepOptions
from hpo_service.sweeps.values import parse_value, parse_values, resolve_name, split_assignment
from hpo_service.wire import to_builtins

SEED_KEY = "seed"
SWEEP = "sweep"
GRID = "grid"


@dataclass(frozen=True)
class StudyConfiguration:
    """One configuration of the study (without seed), the varied values it stands for, and the
    hyperparameters whose sweep it belongs to (all varied ones for a grid)."""

    config: Mapping[str, Any]
    values: Mapping[str, Any]
    panels: tuple[str, ...]


@dataclass(frozen=True)
class StudyJob:
    """One job: the configuration as sent to the worker (with its seed) and its ``config_info``."""

    config: dict[str, Any]
    info: dict[str, Any]


@dataclass(frozen=True)
class SweepPlan:
    kind: str
    base: Mapping[str, Any]
    varied: tuple[tuple[str, tuple[Any, ...]], ...]
    seeds: tuple[int, ...]
    configurations: tuple[StudyConfiguration, ...]
    budget: float

    @property
    def repeats(self) -> int:
        return len(self.seeds)

    @property
    def job_count(self) -> int:
        return len(self.configurations) * len(self.seeds)

    def jobs(self) -> Iterator[StudyJob]:
        """Repeat by repeat, so that a study cut short has every configuration on its first seeds."""
        for repeat, seed in enumerate(self.seeds):
            for configuration in self.configurations:
                info = {
                    "kind": self.kind,
                    "values": dict(configuration.values),
                    "panels": list(configuration.panels),
                    "repeat": repeat,
                    "seed": seed,
                }
                yield StudyJob({**configuration.config, SEED_KEY: seed}, {"sweep": info})

    def to_dict(self) -> dict[str, Any]:
        """What ``sweep.json`` holds: enough for analysis and for ``--space-from-sweep``."""
        return {
            "kind": self.kind,
            "base": dict(self.base),
            "varied": {name: list(values) for name, values in self.varied},
            "repeats": self.repeats,
            "seeds": list(self.seeds),
            "budget": self.budget,
            "configurations": len(self.configurations),
            "jobs": self.job_count,
        }


def build_plan(
    space: CS.ConfigurationSpace,
    options: SweepOptions,
    *,
    kind: str,
    seed: int,
    budget: float,
    input_shape: InputShape = None,
) -> SweepPlan:
    """The study ``options`` describe on ``space`` (see the module text); raises SettingsError."""
    if kind not in (SWEEP, GRID):
        raise ValueError(f"kind must be {SWEEP!r} or {GRID!r}, not {kind!r}")
    if SEED_KEY in space:
        raise SettingsError(f"the space has a hyperparameter named {SEED_KEY!r}, which studies use for seeds")
    if not options.vary:
        raise SettingsError(f"--optimizer {kind} needs at least one --vary NAME=V1,V2,...")
    base = base_configuration(space, options.base, input_shape)
    varied = varied_values(space, options.vary)
    if kind == SWEEP:
        configurations = one_at_a_time(space, base, varied, input_shape)
    else:
        configurations = grid(space, base, varied, input_shape)
    seeds = tuple(seed + repeat for repeat in range(options.repeats))
    plan = SweepPlan(kind, base, varied, seeds, configurations, float(budget))
    check_size(plan, options)
    return plan


def base_configuration(
    space: CS.ConfigurationSpace, assignments: Sequence[str], input_shape: InputShape = None
) -> dict[str, Any]:
    given: dict[str, Any] = {}
    for assignment in assignments:
        name, text = split_assignment(assignment, "--base")
        if name == SEED_KEY:
            raise SettingsError("--base seed: the seeds come from --seed and --repeats")
        name = resolve_name(space, name, "--base")
        if name in given:
            raise SettingsError(f"--base {name}: given twice")
        given[name] = parse_value(space[name], text, "--base")
    base = complete(space, given)
    for name in given:
        if name not in base:
            raise SettingsError(
                f"--base {name}: inactive in the base configuration ({_needs(space, name, base)})"
            )
    check_configuration(space, base, "--base", input_shape)
    return base


def varied_values(
    space: CS.ConfigurationSpace, assignments: Sequence[str]
) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    varied: dict[str, tuple[Any, ...]] = {}
    for assignment in assignments:
        name, spec = split_assignment(assignment, "--vary")
        name = resolve_name(space, name, "--vary")
        if name in varied:
            raise SettingsError(f"--vary {name}: given twice; list all its values in one --vary")
        varied[name] = parse_values(space[name], spec, "--vary")
    return tuple(varied.items())


def one_at_a_time(
    space: CS.ConfigurationSpace,
    base: Mapping[str, Any],
    varied: Sequence[tuple[str, tuple[Any, ...]]],
    input_shape: InputShape,
) -> tuple[StudyConfiguration, ...]:
    found: dict[str, StudyConfiguration] = {}
    for name, values in varied:
        if name not in base:
            raise SettingsError(
                f"--vary {name}: inactive in the base configuration ({_needs(space, name, base)}); "
                "set its parent with --base"
            )
        for value in values:
            config = complete(space, {**base, name: value})
            label = f"--vary {name}={value}"
            check_configuration(space, config, label, input_shape)
            _add(found, config, {name: value}, (name,))
    return tuple(found.values())


def grid(
    space: CS.ConfigurationSpace,
    base: Mapping[str, Any],
    varied: Sequence[tuple[str, tuple[Any, ...]]],
    input_shape: InputShape,
) -> tuple[StudyConfiguration, ...]:
    names = tuple(name for name, _ in varied)
    found: dict[str, StudyConfiguration] = {}
    for combination in itertools.product(*(values for _, values in varied)):
        values = dict(zip(names, combination, strict=True))
        config = complete(space, {**base, **values})
        label = "grid point " + ", ".join(f"{name}={value}" for name, value in values.items())
        for name in names:
            if name not in config:
                raise SettingsError(f"{label}: {name} is inactive there ({_needs(space, name, config)})")
        check_configuration(space, config, label, input_shape)
        _add(found, config, values, names)
    return tuple(found.values())


def _add(
    found: dict[str, StudyConfiguration],
    config: dict[str, Any],
    values: dict[str, Any],
    panels: tuple[str, ...],
) -> None:
    key = json.dumps(config, sort_keys=True)
    known = found.get(key)
    if known is None:
        found[key] = StudyConfiguration(config, values, panels)
    else:
        merged_panels = known.panels + tuple(panel for panel in panels if panel not in known.panels)
        found[key] = StudyConfiguration(known.config, {**known.values, **values}, merged_panels)


def complete(space: CS.ConfigurationSpace, given: Mapping[str, Any]) -> dict[str, Any]:
    """``given`` reduced to the hyperparameters active under it, the space's defaults for active ones it
    lacks. The space lists parents before children, so one pass decides every condition."""
    config: dict[str, Any] = {}
    for name, hyperparameter in space.items():
        if all(_satisfied(condition, config) for condition in space.parent_conditions_of[name]):
            config[name] = given[name] if name in given else to_builtins(hyperparameter.default_value)
    return config


def _satisfied(condition: Any, config: Mapping[str, Any]) -> bool:
    try:
        return bool(condition.satisfied_by_value(config))
    except KeyError:  # a parent that is itself inactive
        return False


def _needs(space: CS.ConfigurationSpace, name: str, config: Mapping[str, Any]) -> str:
    conditions = space.parent_conditions_of[name]
    described = " and ".join(str(condition).replace(f"{name} | ", "") for condition in conditions)
    parents = sorted({parent.name for parent in space.parents_of[name]})
    holds = ", ".join(f"{parent}={config[parent]!r}" for parent in parents if parent in config)
    return f"{name} needs {described}" + (f"; here {holds}" if holds else "")


def check_configuration(
    space: CS.ConfigurationSpace, config: Mapping[str, Any], label: str, input_shape: InputShape = None
) -> None:
    """Refuse a configuration the space does not allow (illegal value, forbidden architecture)."""
    try:
        CS.Configuration(space, values=dict(config)).check_valid_configuration()
    except (ValueError, KeyError) as error:
        reason = unbuildable_reason(input_shape, dict(config)) if input_shape is not None else None
        detail = reason or str(error).splitlines()[0]
        raise SettingsError(f"{label}: the space does not allow this configuration ({detail})") from None


def check_size(plan: SweepPlan, options: SweepOptions) -> None:
    if plan.job_count <= options.max_jobs or options.force:
        return
    sizes = " x ".join(str(len(values)) for _, values in plan.varied)
    shape = f"{sizes} values" if plan.kind == GRID else f"{len(plan.configurations)} configurations"
    raise SettingsError(
        f"{plan.kind} of {shape} x {plan.repeats} repeat{'s' if plan.repeats > 1 else ''} = "
        f"{plan.job_count} jobs is above the limit of "
        f"{options.max_jobs}; pass --force (or --max-jobs {plan.job_count}) to run it"
    )
