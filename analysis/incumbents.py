"""The incumbent (best configuration so far) and its trajectory over the run's wall time.

Rules, both counting only finite losses (a crashed job or a non-finite loss never becomes incumbent):

- ``"max-budget"`` (HpBandSter's rule, as in ``Result.get_incumbent_id``): only jobs on the *incumbent
  budget* count, the largest budget on which some job has a finite loss. (HpBandSter looks only at its
  configured ``max_budget`` and finds nothing while no job has finished there; its
  ``get_incumbent_trajectory(all_budgets=False)`` raises ``NameError``.)
- ``"any-budget"``: every job counts; the incumbent is the lowest loss on any budget. Unlike HpBandSter's
  ``all_budgets=True``, a job on a larger budget does not win just because its budget is larger.

Ties go to the job that finished first, so the incumbent is the last point of its trajectory.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from analysis.data import ConfigId, JobRecord, RunData

MAX_BUDGET = "max-budget"
ANY_BUDGET = "any-budget"
RULES = (MAX_BUDGET, ANY_BUDGET)


@dataclass(frozen=True)
class Trajectory:
    """The best loss over time: one point per improvement, in finish-time order.

    ``times[i]`` is when (seconds since the first submission) the job that set ``losses[i]`` finished;
    the incumbent holds until ``times[i + 1]``, the last one until ``end_time`` (the run's last finished
    job). ``test_losses[i]`` is that job's ``info["test_error"]`` or ``None``.
    """

    rule: str
    times: tuple[float, ...]
    losses: tuple[float, ...]
    config_ids: tuple[ConfigId, ...]
    budgets: tuple[float, ...]
    test_losses: tuple[float | None, ...]
    end_time: float

    def __len__(self) -> int:
        return len(self.times)


def incumbent_budget(jobs: Iterable[JobRecord]) -> float | None:
    """The largest budget with at least one finite loss, or ``None`` if no job has one."""
    budgets = [job.budget for job in jobs if job.loss is not None]
    return max(budgets) if budgets else None


def eligible_jobs(run: RunData, rule: str) -> list[JobRecord]:
    """The jobs with a finite loss that count for ``rule``, in finish-time order."""
    if rule not in RULES:
        raise ValueError(f"unknown incumbent rule {rule!r}; choose one of {', '.join(RULES)}")
    finite = [job for job in run.jobs if job.loss is not None]
    if rule == MAX_BUDGET:
        budget = incumbent_budget(finite)
        finite = [job for job in finite if job.budget == budget]
    return sorted(finite, key=lambda job: job.finished)


def find_incumbent(run: RunData, rule: str = MAX_BUDGET) -> JobRecord | None:
    """The job with the lowest finite loss under ``rule`` (the first to finish among equals), or ``None``."""
    best: JobRecord | None = None
    for job in eligible_jobs(run, rule):
        if best is None or _loss(job) < _loss(best):
            best = job
    return best


def incumbent_trajectory(run: RunData, rule: str = MAX_BUDGET) -> Trajectory:
    """The monotone non-increasing best loss over finish time under ``rule`` (see the module text)."""
    improvements: list[JobRecord] = []
    for job in eligible_jobs(run, rule):
        if not improvements or _loss(job) < _loss(improvements[-1]):
            improvements.append(job)
    return Trajectory(
        rule=rule,
        times=tuple(job.finished for job in improvements),
        losses=tuple(_loss(job) for job in improvements),
        config_ids=tuple(job.config_id for job in improvements),
        budgets=tuple(job.budget for job in improvements),
        test_losses=tuple(job.test_error for job in improvements),
        end_time=max((job.finished for job in run.jobs), default=0.0),
    )


def _loss(job: JobRecord) -> float:
    assert job.loss is not None  # eligible jobs have finite losses
    return job.loss
