"""The records that cross the process boundary between master and workers.

A job goes out as (config_id, config, budget), which a worker reads as a :class:`JobRequest`; a result
comes back as HpBandSter's ``{"loss": float, "info": dict}`` (an :class:`EvaluationResult`). Both hold
builtins only (see :mod:`hpo_service.wire`). ``info`` always carries ``status`` and ``reason`` so a
failure is a recorded result, not silence.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpo_service.run_spec import RunSpec


class JobStatus(str, enum.Enum):
    """Outcome class of one evaluation, written as ``info["status"]``."""

    OK = "ok"
    # The configuration's own fault: non-finite loss, cannot be built for the input, out of memory.
    FAILED = "failed"
    # Something outside the configuration: data missing, worker fault.
    ERROR = "error"
    # Ran longer than the run's job timeout and was stopped (the master records it; worst loss).
    TIMEOUT = "timeout"
    # No result at all: the worker raised outside the trainer or died with the job (HpBandSter records the
    # exception); the master's progress log and analysis name such a job so.
    CRASHED = "crashed"


# The loss reported for a configuration that failed: the worst possible validation error.
WORST_LOSS = 1.0


@dataclass(frozen=True)
class JobRequest:
    """One job as a worker receives it: which configuration (HpBandSter's id: iteration, bracket, index),
    its hyperparameter values and the budget in epochs. The wire carries the three as builtins."""

    config_id: tuple[int, int, int]
    config: Mapping[str, Any]
    budget: float

    @classmethod
    def from_wire(cls, config_id: Any, config: Any, budget: Any) -> JobRequest:
        first, second, third = (int(part) for part in config_id)
        return cls((first, second, third), dict(config), float(budget))


@dataclass(frozen=True)
class EvaluationResult:
    """What a worker reports for one job; ``to_wire`` gives HpBandSter's result dict."""

    loss: float
    status: JobStatus = JobStatus.OK
    reason: str | None = None
    info: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def failure(
        cls, reason: str, status: JobStatus = JobStatus.FAILED, info: Mapping[str, Any] | None = None
    ) -> EvaluationResult:
        return cls(loss=WORST_LOSS, status=status, reason=reason, info=dict(info or {}))

    def to_wire(self) -> dict[str, Any]:
        """HpBandSter's result dict; a non-finite loss becomes the worst loss so BOHB's model stays sane."""
        loss = float(self.loss)
        status, reason = self.status, self.reason
        if not math.isfinite(loss):
            loss, status = WORST_LOSS, JobStatus.FAILED
            reason = reason or "non-finite loss"
        info = dict(self.info)
        info["status"] = status.value
        info["reason"] = reason
        return {"loss": loss, "info": info}


@dataclass(frozen=True)
class RunDescription:
    """``run.json``: the run's spec (:class:`~hpo_service.run_spec.RunSpec`, written once when the master
    creates the run), its id and times, and where BOHB's warm start came from. Every process of the run
    reads the spec from here; analysis reads what HpBandSter's logs do not hold. The file is flat JSON: the
    spec's record with ``run_id``, ``started``, ``finished`` and ``warm_start`` beside it."""

    run_id: str
    spec: RunSpec
    started: float | None = None
    finished: float | None = None
    # Where BOHB's warm start came from (hpo_service.warm_start.WarmStart.record); None without one.
    warm_start: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            **self.spec.to_record(),
            "started": self.started,
            "finished": self.finished,
            "warm_start": self.warm_start,
        }

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> RunDescription:
        """A ``run.json`` as any version wrote it (fields added since take their defaults); the
        warm-start runs become the spec's ``--warm-start`` again."""
        warm_start = record.get("warm_start") or None
        sources = tuple(Path(source["run_dir"]) for source in (warm_start or {}).get("runs", []))
        return cls(
            run_id=str(record["run_id"]),
            spec=RunSpec.from_record(record, sources),
            started=record.get("started"),
            finished=record.get("finished"),
            warm_start=warm_start,
        )
