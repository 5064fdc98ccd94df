"""BOHB's settings (HpBandSter's names, defaults and meaning) and ``--warm-start``: one frozen record,
its command-line options, and its ``run.json`` form, shared by the master and every launcher."""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from hpo_service.errors import SettingsError

# Option -> MasterSettings.bohb field, in the order of HpBandSter's BOHB arguments.
OPTION_NAMES = {
    "min_points_in_model": "--min-points-in-model",
    "top_n_percent": "--top-n-percent",
    "num_samples": "--num-samples",
    "random_fraction": "--random-fraction",
    "bandwidth_factor": "--bandwidth-factor",
    "min_bandwidth": "--min-bandwidth",
}


@dataclass(frozen=True)
class BohbOptions:
    """HpBandSter's BOHB settings (``hpbandster.optimizers.BOHB``), and the runs to warm-start it from."""

    # Results on one budget before its model is built; None: the space's hyperparameters + 1 (the fewest a
    # KDE needs; HpBandSter raises smaller values to it). The model needs about twice this many results.
    min_points_in_model: int | None = None
    # Percentage of the results on a budget that form the "good" density l(x); the rest form g(x).
    top_n_percent: int = 15
    # Candidates drawn from l(x) per model-based configuration; the one with the best l(x)/g(x) is taken.
    num_samples: int = 64
    # Fraction of configurations sampled at random even when a model exists.
    random_fraction: float = 1 / 3
    # Candidates are drawn with the continuous bandwidths of l(x) widened by this factor.
    bandwidth_factor: float = 3.0
    # Smallest bandwidth used when drawing candidates (keeps diversity when all good values agree).
    min_bandwidth: float = 1e-3
    # Earlier runs (searches, sweeps, grids) whose results enter the model before the first sample.
    warm_start: tuple[Path, ...] = ()

    def __post_init__(self) -> None:
        if self.min_points_in_model is not None and self.min_points_in_model < 1:
            raise SettingsError(f"--min-points-in-model must be at least 1, got {self.min_points_in_model}")
        if not 1 <= self.top_n_percent <= 99:
            raise SettingsError(f"--top-n-percent must be in 1..99, got {self.top_n_percent}")
        if self.num_samples < 1:
            raise SettingsError(f"--num-samples must be at least 1, got {self.num_samples}")
        if not 0 <= self.random_fraction <= 1:
            raise SettingsError(f"--random-fraction must be in 0..1, got {self.random_fraction:g}")
        if not (math.isfinite(self.bandwidth_factor) and self.bandwidth_factor > 0):
            raise SettingsError(f"--bandwidth-factor must be positive, got {self.bandwidth_factor:g}")
        if not (math.isfinite(self.min_bandwidth) and self.min_bandwidth > 0):
            raise SettingsError(f"--min-bandwidth must be positive, got {self.min_bandwidth:g}")
        object.__setattr__(self, "warm_start", tuple(Path(path) for path in self.warm_start))

    def given(self) -> list[str]:
        """The options set to something other than their default (refused for other optimizers)."""
        default = BohbOptions()
        names = [
            option for name, option in OPTION_NAMES.items() if getattr(self, name) != getattr(default, name)
        ]
        return names + (["--warm-start"] if self.warm_start else [])

    def model_arguments(self) -> dict[str, Any]:
        """Keyword arguments of HpBandSter's BOHB (and its config generator)."""
        return {name: getattr(self, name) for name in OPTION_NAMES}

    def to_record(self) -> dict[str, Any]:
        """The settings as ``run.json`` holds them (the warm start is recorded on its own, with its use)."""
        return self.model_arguments()

    @classmethod
    def from_record(cls, record: Mapping[str, Any] | None, warm_start: tuple[Path, ...] = ()) -> BohbOptions:
        """The settings of a ``run.json`` record; a run recorded before these options existed has defaults."""
        known = {field.name for field in fields(cls)} - {"warm_start"}
        values = {name: value for name, value in (record or {}).items() if name in known}
        return cls(**values, warm_start=warm_start)

    def to_arguments(self) -> list[str]:
        """The options for ``python -m hpo_service`` (defaults left out)."""
        default = BohbOptions()
        arguments: list[str] = []
        for name, option in OPTION_NAMES.items():
            value = getattr(self, name)
            if value != getattr(default, name):
                arguments += [option, repr(value) if isinstance(value, float) else str(value)]
        if self.warm_start:
            arguments += ["--warm-start", *(str(path) for path in self.warm_start)]
        return arguments


def add_bohb_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of :class:`BohbOptions`, in their own group of ``parser``."""
    group = parser.add_argument_group(
        "BOHB's model (--optimizer bohb; HpBandSter's names and defaults; docs/search-quality.md)"
    )
    group.add_argument(
        "--min-points-in-model",
        type=int,
        default=None,
        metavar="N",
        help="results on one budget before its model is built (default: hyperparameters + 1, the fewest a "
        "KDE needs; the first model needs about twice this many)",
    )
    group.add_argument(
        "--top-n-percent",
        type=int,
        default=BohbOptions.top_n_percent,
        metavar="PERCENT",
        help="percentage of results on a budget that count as good (1..99)",
    )
    group.add_argument(
        "--num-samples",
        type=int,
        default=BohbOptions.num_samples,
        metavar="N",
        help="candidates drawn from the good density per model-based configuration",
    )
    group.add_argument(
        "--random-fraction",
        type=float,
        default=BohbOptions.random_fraction,
        metavar="FRACTION",
        help="fraction of configurations sampled at random even when a model exists (0..1)",
    )
    group.add_argument(
        "--bandwidth-factor",
        type=float,
        default=BohbOptions.bandwidth_factor,
        metavar="FACTOR",
        help="candidates are drawn with the good density's bandwidths widened by this factor",
    )
    group.add_argument(
        "--min-bandwidth",
        type=float,
        default=BohbOptions.min_bandwidth,
        metavar="BANDWIDTH",
        help="smallest bandwidth when drawing candidates",
    )
    group.add_argument(
        "--warm-start", type=Path, nargs="+", default=[], metavar="RUN_DIR",
        help="earlier runs (searches, sweeps, grids) of a compatible space whose results enter BOHB's model "
        "before its first sample; they are not jobs of this run",
    )  # fmt: skip


def bohb_options_from_args(args: argparse.Namespace) -> BohbOptions:
    return BohbOptions(
        min_points_in_model=args.min_points_in_model,
        top_n_percent=args.top_n_percent,
        num_samples=args.num_samples,
        random_fraction=args.random_fraction,
        bandwidth_factor=args.bandwidth_factor,
        min_bandwidth=args.min_bandwidth,
        warm_start=tuple(args.warm_start),
    )
