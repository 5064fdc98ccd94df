"""A worker's continuation policy: the schedule horizon of each job and where checkpoints go.

Continuation needs two things from the run: its largest budget (every job's learning-rate schedule spans it,
so that a configuration resumed on a larger budget takes the steps an uninterrupted run would) and the run
directory the master writes (checkpoints are shared through it). The worker reads both from
``RUN_DIR/run.json`` at its first job, when the master has certainly written it. Continuation is off, and
every job trains from scratch with its own budget as the horizon, when the worker was started with
``--no-continuation``, when ``run.json`` records ``"continuation": false`` (the master's
``--no-continuation``), or when the worker has no readable ``run.json`` (a worker on another machine
without the shared run directory: give it ``--max-budget`` so its schedules still span the run's largest
budget; it then trains each job from scratch).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpo_service import run_files
from workers.checkpoints import CheckpointStore

logger = logging.getLogger(__name__)

RUN_DESCRIPTION = run_files.RUN_DESCRIPTION


def budget_to_epochs(budget: float) -> int:
    """Budgets are epochs; HpBandSter's geometric budgets are floats like 2.9999999999999996."""
    return max(1, round(budget))


@dataclass(frozen=True)
class ContinuationPlan:
    """What a job does about continuation: ``max_epochs`` (None: each job its own horizon) and ``store``
    (None: nothing saved or resumed)."""

    max_epochs: int | None = None
    store: CheckpointStore | None = None

    def horizon(self, epochs: int) -> int:
        """The schedule horizon of a job of ``epochs`` epochs."""
        return epochs if self.max_epochs is None else max(self.max_epochs, epochs)

    def saves(self, epochs: int) -> bool:
        """Whether a job ending after ``epochs`` epochs saves a checkpoint: only a larger budget resumes."""
        return self.store is not None and self.max_epochs is not None and epochs < self.max_epochs


class ContinuationSource:
    """The worker's :class:`ContinuationPlan`, worked out at its first job and then kept.

    ``enabled`` is the worker's own setting; ``max_budget`` (epochs) overrides the run's ``run.json``.
    """

    def __init__(
        self, run_dir: Path | None, *, enabled: bool = True, max_budget: float | None = None
    ) -> None:
        self.run_dir = run_dir
        self.enabled = enabled
        self.max_budget = max_budget
        self._plan: ContinuationPlan | None = None

    def plan(self) -> ContinuationPlan:
        if self._plan is None:
            self._plan = self._resolve()
        return self._plan

    def _resolve(self) -> ContinuationPlan:
        description = read_run_description(self.run_dir) if self.run_dir is not None else None
        max_budget = self.max_budget
        if max_budget is None and description is not None:
            max_budget = float(description["max_budget"])
        run_allows = description is None or description.get("continuation", True) is not False
        if not (self.enabled and run_allows):
            logger.info("continuation off: every job trains from scratch over its own budget")
            return ContinuationPlan()
        if max_budget is None:
            logger.warning(
                "continuation off: no %s in the run dir (%s) and no --max-budget; every job trains from "
                "scratch with its own budget as the schedule horizon", RUN_DESCRIPTION, self.run_dir,
            )  # fmt: skip
            return ContinuationPlan()
        max_epochs = budget_to_epochs(max_budget)
        if description is None or self.run_dir is None:
            logger.warning("no shared run dir: schedules span %d epochs, but no job resumes", max_epochs)
            return ContinuationPlan(max_epochs=max_epochs)
        logger.info("continuation on: schedules span %d epochs, checkpoints in %s", max_epochs, self.run_dir)
        return ContinuationPlan(max_epochs=max_epochs, store=CheckpointStore(self.run_dir))


def read_run_description(run_dir: Path) -> dict[str, Any] | None:
    """``RUN_DIR/run.json`` as a dict with a numeric ``max_budget``; None when missing or unusable."""
    path = run_dir / RUN_DESCRIPTION
    try:
        description = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        logger.debug("cannot read %s: %s", path, error)
        return None
    if not isinstance(description, dict) or not isinstance(description.get("max_budget"), (int, float)):
        logger.warning("%s holds no max_budget; ignoring it", path)
        return None
    return description
