"""The command-line options of sweeps and grids, shared by the master's CLI and the local launcher."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpo_service.errors import SettingsError

# Registry names of the study optimizers (hpo_service.sweeps.study_masters.SWEEP_OPTIMIZERS).
STUDY_OPTIMIZERS = ("sweep", "grid")
# Most jobs (configurations x repeats) a study may have unless forced.
MAX_JOBS = 100
# --space-from-sweep keeps the values whose mean final validation error is within this of the best.
TOLERANCE = 0.02


@dataclass(frozen=True)
class SweepOptions:
    """``--base``, ``--vary``, ``--repeats``, ``--max-jobs``, ``--force``, ``--space-from-sweep`` and
    ``--sweep-tolerance`` as given (values are parsed against the space by :mod:`hpo_service.sweeps.plan`).

    Each ``base``/``vary`` entry is one ``NAME=...`` assignment.
    """

    base: tuple[str, ...] = ()
    vary: tuple[str, ...] = ()
    repeats: int = 1
    max_jobs: int = MAX_JOBS
    force: bool = False
    space_from_sweep: Path | None = None
    tolerance: float = TOLERANCE

    def __post_init__(self) -> None:
        if self.repeats < 1:
            raise SettingsError(f"--repeats must be at least 1, got {self.repeats}")
        if self.max_jobs < 1:
            raise SettingsError(f"--max-jobs must be at least 1, got {self.max_jobs}")
        if not self.tolerance >= 0:
            raise SettingsError(f"--sweep-tolerance must be at least 0, got {self.tolerance:g}")
        if self.space_from_sweep is not None and not self.space_from_sweep.is_dir():
            raise SettingsError(f"--space-from-sweep {self.space_from_sweep}: no such run directory")

    @property
    def study_options_given(self) -> bool:
        """Whether any option that only a sweep or grid uses was given."""
        return bool(self.base or self.vary) or self.repeats != 1 or self.force or self.max_jobs != MAX_JOBS

    def to_record(self) -> dict[str, Any]:
        """The study's options as ``run.json`` holds them (``--space-from-sweep`` makes a new run's space
        and is not kept: the space is in the run dir)."""
        return {
            "base": list(self.base),
            "vary": list(self.vary),
            "repeats": self.repeats,
            "max_jobs": self.max_jobs,
            "force": self.force,
            "tolerance": self.tolerance,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any] | None) -> SweepOptions:
        """The options of a ``run.json`` record; defaults for a run that recorded none."""
        if not record:
            return cls()
        return cls(
            base=tuple(record.get("base", ())),
            vary=tuple(record.get("vary", ())),
            repeats=int(record.get("repeats", 1)),
            max_jobs=int(record.get("max_jobs", MAX_JOBS)),
            force=bool(record.get("force", False)),
            tolerance=float(record.get("tolerance", TOLERANCE)),
        )

    def to_arguments(self) -> list[str]:
        """The options for ``python -m hpo_service`` (defaults left out)."""
        arguments: list[str] = []
        if self.base:
            arguments += ["--base", *self.base]
        for assignment in self.vary:
            arguments += ["--vary", assignment]
        if self.repeats != 1:
            arguments += ["--repeats", str(self.repeats)]
        if self.max_jobs != MAX_JOBS:
            arguments += ["--max-jobs", str(self.max_jobs)]
        if self.force:
            arguments.append("--force")
        if self.space_from_sweep is not None:
            arguments += ["--space-from-sweep", str(self.space_from_sweep)]
        if self.tolerance != TOLERANCE:
            arguments += ["--sweep-tolerance", repr(self.tolerance)]
        return arguments


def add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of :class:`SweepOptions`, in their own group of ``parser``."""
    group = parser.add_argument_group(
        "sweeps and grids (--optimizer sweep|grid; docs/sweeps.md)",
        "one budget (--max-budget epochs), every configuration x seed dispatched at once",
    )
    group.add_argument(
        "--base",
        nargs="+",
        action="extend",
        default=[],
        metavar="NAME=VALUE",
        help="the base configuration: these values over the space's defaults",
    )
    group.add_argument(
        "--vary",
        action="append",
        default=[],
        metavar="NAME=V1,V2,...",
        help="values of one hyperparameter (repeatable); NAME=log:LOW:HIGH:N for N log-spaced values, "
        "lin:LOW:HIGH:N for evenly spaced ones. sweep: each NAME alone, the others at the base; grid: all "
        "combinations",
    )
    group.add_argument(
        "--repeats", type=int, default=1, help="training seeds per configuration: --seed, --seed + 1, ..."
    )
    group.add_argument(
        "--max-jobs",
        type=int,
        default=MAX_JOBS,
        help="most jobs (configurations x repeats) a study may have without --force",
    )
    group.add_argument("--force", action="store_true", help="run a study larger than --max-jobs")
    group.add_argument(
        "--space-from-sweep",
        type=Path,
        default=None,
        metavar="RUN_DIR",
        help="narrow --space to the values this sweep found good (any optimizer, e.g. bohb after a sweep)",
    )
    group.add_argument(
        "--sweep-tolerance", type=float, default=TOLERANCE, metavar="ERROR",
        help="--space-from-sweep keeps values whose mean final validation error is within this of the best",
    )  # fmt: skip


def sweep_options_from_args(args: argparse.Namespace) -> SweepOptions:
    return SweepOptions(
        base=split_assignments(args.base),
        vary=split_assignments(args.vary),
        repeats=args.repeats,
        max_jobs=args.max_jobs,
        force=args.force,
        space_from_sweep=args.space_from_sweep,
        tolerance=args.sweep_tolerance,
    )


def split_assignments(tokens: list[str]) -> tuple[str, ...]:
    """Assignments from command-line tokens; a token may hold several separated by spaces (compose's
    ``HPO_VARY="lr=0.1,0.01 kernel_size=3,5"`` arrives as one)."""
    return tuple(part for token in tokens for part in token.split())
