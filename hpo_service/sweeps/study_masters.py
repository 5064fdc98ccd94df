"""Sweeps and grids as HpBandSter optimizers: a config generator that hands out a plan's jobs in order,
and one iteration with a single stage that holds all of them at the study's budget.

Everything else is the service's HpBandSter master
(:class:`~hpo_service.hpbandster.fixed_master.FixedMaster`): the same dispatcher and wire conversion, the
same JSON result log and pickle, the same handling of dead and late workers. A single stage has no barrier,
so every worker stays busy until the plan runs out; a job whose worker died is recorded as crashed (loss
infinite, exception set), as for BOHB.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
from hpbandster.core.base_config_generator import base_config_generator
from hpbandster.core.base_iteration import BaseIteration
from hpbandster.core.master import Master

from hpo_service.hpbandster.fixed_master import FixedMaster
from hpo_service.sweeps.plan import StudyJob, SweepPlan


class PlanGenerator(base_config_generator):
    """Returns the plan's jobs one by one: ``(config with its seed, {"sweep": ...})``."""

    def __init__(self, plan: SweepPlan, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pending: deque[StudyJob] = deque(plan.jobs())

    def get_config(self, budget: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        if not self.pending:
            raise RuntimeError("the study's plan has no job left")
        job = self.pending.popleft()
        return dict(job.config), dict(job.info)


class SingleStage(BaseIteration):
    """One stage: every configuration on one budget; no configuration advances anywhere."""

    def _advance_to_next_stage(self, config_ids: Any, losses: Any) -> Any:
        return np.zeros(len(config_ids), dtype=bool)


class SweepMaster(FixedMaster):
    """One-factor-at-a-time sweep over a base configuration (the plan says which configurations)."""

    def __init__(
        self,
        configspace: Any = None,
        *,
        plan: SweepPlan,
        min_budget: float | None = None,
        max_budget: float | None = None,
        eta: float | None = None,
        **kwargs: Any,
    ) -> None:
        # configspace and the budgets are the registry's common arguments; the plan already holds both.
        del configspace, min_budget, max_budget
        self.plan = plan
        super().__init__(config_generator=PlanGenerator(plan), **kwargs)
        self.config.update(
            {"eta": eta, "min_budget": plan.budget, "max_budget": plan.budget, "budgets": [plan.budget]}
        )

    def get_next_iteration(self, iteration: int, iteration_kwargs: Any = None) -> BaseIteration:
        return SingleStage(
            HPB_iter=iteration,
            num_configs=[self.plan.job_count],
            budgets=[self.plan.budget],
            config_sampler=self.config_generator.get_config,
            **(iteration_kwargs or {}),
        )

    def run(self, n_iterations: int = 1, min_n_workers: int = 1, iteration_kwargs: Any = None) -> Any:
        """The whole plan is one iteration, whatever ``n_iterations`` says (none more when a resumed run
        already rebuilt it: :mod:`hpo_service.resume`)."""
        del n_iterations
        return super().run(
            n_iterations=0 if self.iterations else 1,
            min_n_workers=min_n_workers,
            iteration_kwargs=iteration_kwargs or {},
        )


class GridMaster(SweepMaster):
    """Every combination of the varied values (the plan says which configurations)."""


# Added to the registry (hpo_service.hpbandster.optimizers.OPTIMIZERS), which passes ``plan=`` for these.
SWEEP_OPTIMIZERS: dict[str, type[Master]] = {"sweep": SweepMaster, "grid": GridMaster}
