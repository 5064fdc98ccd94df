"""What defines a run, defined once: the :class:`RunSpec` record, its command-line options (names, types,
defaults, help) and their ``HPO_*`` environment variables.

Every way of starting a run takes its run options from here: the master (``python -m hpo_service``),
``launch.local``, ``launch.slurm`` and the container roles; a launcher hands them on to the master with
:meth:`RunSpec.to_arguments`, the one place they are written back into a command line. Options of one
process (host, ports, TLS directory, device, threads, verbosity, the number of workers) stay with that
process's parser. The spec is written once, in ``run.json`` (``hpo_service.records.RunDescription``, the
spec's :meth:`RunSpec.to_record` beside the run's id and times), when the master creates the run. Every later
reader opens it there: a resumed master (``hpo_service.resume``), and each worker, which reads it from the
shared run directory or, without one, asks the run's master for it over the wire (``workers.run_source``).

Imports only the standard library and the option groups it includes: ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from hpo_service.bohb_options import OPTION_NAMES as BOHB_OPTION_NAMES
from hpo_service.bohb_options import BohbOptions, add_bohb_arguments, bohb_options_from_args
from hpo_service.names import OPTIMIZER_NAMES, SPACE_NAMES
from hpo_service.shapes import DATASET_SHAPES
from hpo_service.sweeps.options import (
    STUDY_OPTIMIZERS,
    SweepOptions,
    add_sweep_arguments,
    sweep_options_from_args,
)


@dataclass(frozen=True)
class RunSpec:
    """The settings that define a run (its search, not the processes that carry it out)."""

    optimizer: str = "bohb"
    min_budget: float = 1.0
    max_budget: float = 27.0
    eta: float = 3.0
    n_iterations: int = 8
    seed: int = 0
    space: str = "default"
    dataset: str = "digits"
    # Train on the first N training images only (None: all of them).
    train_limit: int | None = None
    # Workers resume promoted configurations from checkpoints (--no-continuation: every job from scratch).
    continuation: bool = True
    sweep: SweepOptions = SweepOptions()
    bohb: BohbOptions = BohbOptions()

    @classmethod
    def of(cls, settings: Any) -> RunSpec:
        """The spec of settings that carry the run's fields by name (the master's, a launcher's)."""
        return cls(**{field.name: getattr(settings, field.name) for field in fields(cls)})

    @classmethod
    def from_fields(cls, values: Mapping[str, Any]) -> RunSpec:
        """The spec of a mapping that holds the fields by name (and maybe others, left out)."""
        return cls(**{field.name: values[field.name] for field in fields(cls)})

    def values(self) -> dict[str, Any]:
        """Field name -> value (not recursive: ``sweep`` and ``bohb`` stay records)."""
        return {field.name: getattr(self, field.name) for field in fields(self)}

    def to_record(self) -> dict[str, Any]:
        """The spec as ``run.json`` holds it: builtins only. BOHB's settings only for BOHB (``null``
        otherwise, as runs have always recorded them); the study options only for a sweep or grid."""
        record: dict[str, Any] = {option.field: getattr(self, option.field) for option in OPTIONS}
        record["continuation"] = self.continuation
        record["bohb"] = self.bohb.to_record() if self.optimizer == "bohb" else None
        record["sweep"] = self.sweep.to_record() if self.optimizer in STUDY_OPTIMIZERS else None
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any], warm_start: tuple[Any, ...] = ()) -> RunSpec:
        """The spec of a ``run.json`` record; a field a run recorded before it existed takes its default
        (``dataset`` null, as very early runs wrote it, is the digits). Values are not checked here."""
        values: dict[str, Any] = {}
        for option in OPTIONS:
            value = record.get(option.field)
            if value is not None:
                values[option.field] = value if option.type is str else option.type(value)
        return cls(
            **values,
            continuation=record.get("continuation", True) is not False,
            bohb=BohbOptions.from_record(record.get("bohb"), warm_start),
            sweep=SweepOptions.from_record(record.get("sweep")),
        )

    def to_arguments(self) -> list[str]:
        """The command-line options that give a master this spec; floats as ``repr`` (exact round trip)."""
        arguments: list[str] = []
        for option in OPTIONS:
            value = getattr(self, option.field)
            if value is None:  # an option whose default is "not given"
                continue
            arguments += [option.flag, repr(value) if isinstance(value, float) else str(value)]
        arguments += [] if self.continuation else [NO_CONTINUATION]
        return arguments + self.sweep.to_arguments() + self.bohb.to_arguments()


@dataclass(frozen=True)
class Option:
    """One run option that takes a value: ``--max-budget`` sets ``RunSpec.max_budget``."""

    flag: str
    help: str
    type: Callable[[str], Any] = str
    choices: tuple[str, ...] | None = None

    @property
    def field(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_")

    @property
    def default(self) -> Any:
        return getattr(RunSpec, self.field)


OPTIONS = (
    Option(
        "--optimizer",
        "a search (bohb, hyperband, randomsearch) or a study (sweep, grid)",
        choices=OPTIMIZER_NAMES,
    ),
    Option("--min-budget", "smallest budget, in epochs (at least 1)", float),
    Option("--max-budget", "largest budget, in epochs", float),
    Option("--eta", "successive-halving ratio (> 1)", float),
    Option("--n-iterations", "successive-halving iterations (brackets)", int),
    Option("--seed", "seed of the configuration sampler and of the workers' training", int),
    Option(
        "--space",
        f"search space: a preset ({', '.join(SPACE_NAMES)}), a YAML space file (docs/search-spaces.md) or a "
        "ConfigSpace JSON file such as a run's configspace.json",
    ),
    Option(
        "--dataset",
        "dataset the workers train on (digits is embedded and needs no network); its input shape decides "
        "which architectures the space excludes",
        choices=tuple(DATASET_SHAPES),
    ),
    Option("--train-limit", "train on the first N training images only (quick trials; default: all)", int),
)  # fmt: skip
NO_CONTINUATION = "--no-continuation"
CONTINUATION_HELP = (
    "workers train every job from scratch (independent budgets) instead of resuming promoted "
    "configurations from their checkpoint on the next smaller budget"
)
# Options of the included groups that a container role takes from one HPO_* variable each.
SWEEP_FLAGS = ("--base", "--vary", "--repeats", "--max-jobs", "--space-from-sweep")
GROUP_FLAGS = (*SWEEP_FLAGS, *BOHB_OPTION_NAMES.values())


def environment_name(flag: str) -> str:
    """``--max-budget`` -> ``HPO_MAX_BUDGET``: the variable that gives the option to a container role."""
    return "HPO_" + flag.removeprefix("--").replace("-", "_").upper()


# HPO_* variable -> run option, for the container roles (``HPO_CONTINUATION`` and ``HPO_WARM_START`` are read
# as a switch and as a list of run names by ``launch.container``).
ENVIRONMENT = {environment_name(flag): flag for flag in (*(option.flag for option in OPTIONS), *GROUP_FLAGS)}


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Every run option, in a group of its own, then the sweep and BOHB groups."""
    group = parser.add_argument_group("the run (recorded in RUN_DIR/run.json; --resume reads them there)")
    for option in OPTIONS:
        group.add_argument(
            option.flag, type=option.type, choices=option.choices, default=option.default, help=option.help
        )
    # No default on the action: the help would show "(default: True)" for a switch that turns it off.
    group.add_argument(
        NO_CONTINUATION,
        dest="continuation",
        action="store_false",
        default=argparse.SUPPRESS,
        help=CONTINUATION_HELP,
    )
    add_sweep_arguments(parser)
    add_bohb_arguments(parser)


def spec_from_args(args: argparse.Namespace) -> RunSpec:
    """The spec parsed by a parser that :func:`add_run_arguments` built (values not yet checked)."""
    scalars = {option.field: getattr(args, option.field) for option in OPTIONS}
    return RunSpec(
        **scalars,
        continuation=getattr(args, "continuation", RunSpec.continuation),
        sweep=sweep_options_from_args(args),
        bohb=bohb_options_from_args(args),
    )
