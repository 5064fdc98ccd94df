"""A worker's continuation policy: the schedule horizon of each job and where checkpoints go.

Continuation needs two things from the run: its largest budget (every job's learning-rate schedule spans it,
so that a configuration resumed on a larger budget takes the steps an uninterrupted run would) and the run
directory the master writes (checkpoints are shared through it). Both come with the run's spec
(``workers.run_source``). Continuation is off, and every job trains from scratch with its own budget as the
horizon, when the spec says so (the master's ``--no-continuation``). A worker that got the spec from the
master over the wire (no shared run directory) keeps the run's horizon but resumes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from hpo_service.run_spec import RunSpec
from workers.checkpoints import CheckpointStore

logger = logging.getLogger(__name__)


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


def continuation_plan(spec: RunSpec, run_dir: Path | None) -> ContinuationPlan:
    """The plan of every job of a run with ``spec``; ``run_dir``: the shared run directory (None: none)."""
    if not spec.continuation:
        logger.info("continuation off: every job trains from scratch over its own budget")
        return ContinuationPlan()
    max_epochs = budget_to_epochs(spec.max_budget)
    if run_dir is None:
        logger.warning("no shared run dir: schedules span %d epochs, but no job resumes", max_epochs)
        return ContinuationPlan(max_epochs=max_epochs)
    logger.info("continuation on: schedules span %d epochs, checkpoints in %s", max_epochs, run_dir)
    return ContinuationPlan(max_epochs=max_epochs, store=CheckpointStore(run_dir))
