"""The neutral records every analysis works on, whatever the run directory was read from.

A run directory written by HpBandSter (``results.pkl``, or the JSON logs ``configs.json`` and
``results.json``) becomes one :class:`RunData`: one :class:`JobRecord` per finished job, the sampled
configurations, and what ``run.json`` says about the run (:class:`RunMetadata`). Times are seconds since
the run's first submission, so runs read from a pickle and from the logs compare equal.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ConfigId = tuple[int, int, int]

# Status of a job whose result is ``None``: the worker raised or died (HpBandSter records an exception).
CRASHED = "crashed"
OK = "ok"


@dataclass(frozen=True)
class JobRecord:
    """One evaluation of one configuration on one budget.

    ``loss`` is ``None`` when the job crashed (no result) or reported a non-finite loss; ``status`` is
    ``info["status"]`` when the worker wrote one, ``"crashed"`` for a job without result, ``"failed"`` for
    a non-finite loss without a status of its own, and ``"ok"`` otherwise. Times are seconds since the
    run's first submission.
    """

    config_id: ConfigId
    budget: float
    loss: float | None
    status: str
    reason: str | None
    info: dict[str, Any]
    submitted: float
    started: float
    finished: float
    exception: str | None = None

    @property
    def test_error(self) -> float | None:
        """``info["test_error"]`` when the worker reported a finite one."""
        return finite_or_none(self.info.get("test_error"))


@dataclass(frozen=True)
class RunMetadata:
    """What ``run.json`` (or, failing that, HpBandSter's own ``Result``) says about the run."""

    optimizer: str = "unknown"
    run_id: str | None = None
    min_budget: float | None = None
    max_budget: float | None = None
    eta: float | None = None
    n_iterations: int | None = None
    seed: int | None = None
    dataset: str | None = None
    space: str | None = None


@dataclass(frozen=True)
class RunData:
    """Everything read from one run directory. ``jobs`` are ordered by finish time."""

    run_dir: Path
    source: str
    metadata: RunMetadata
    jobs: tuple[JobRecord, ...]
    configs: dict[ConfigId, dict[str, Any]] = field(default_factory=dict)
    config_info: dict[ConfigId, dict[str, Any]] = field(default_factory=dict)
    # Wall-clock time (seconds since the epoch) of the first submission, when the source records it.
    time_origin: float | None = None

    @property
    def optimizer(self) -> str:
        return self.metadata.optimizer

    @property
    def budgets(self) -> tuple[float, ...]:
        """The distinct budgets that jobs ran on, ascending."""
        return tuple(sorted({job.budget for job in self.jobs}))


def finite_or_none(value: Any) -> float | None:
    """``value`` as a float when it is a finite real number (numpy scalars too, not a bool), else ``None``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    number = float(value)
    return number if math.isfinite(number) else None
