"""What the master's settings and ``run_master`` call for studies and ``--space-from-sweep``.

Settings check a study when they are built (``check_study``), so a mistake is one line and exit code 2
before any process starts; ``run_master`` then narrows the space (``apply_space_from_sweep``), builds the
plan again and records it (``prepare_sweep``), and passes it to the optimizer (``optimizer_arguments``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol

import ConfigSpace as CS

from hpo_service import run_files
from hpo_service.errors import SettingsError
from hpo_service.space import dataset_input_shape, load_space
from hpo_service.sweeps.options import STUDY_OPTIMIZERS, SweepOptions
from hpo_service.sweeps.plan import SweepPlan, build_plan

logger = logging.getLogger(__name__)

PLAN_FILE = run_files.STUDY_PLAN
NARROWING_FILE = run_files.SPACE_FROM_SWEEP


def is_study(optimizer: str) -> bool:
    return optimizer in STUDY_OPTIMIZERS


class StudySettings(Protocol):
    """What a study needs of the master's settings (``MasterSettings`` has it; a Protocol, not an import,
    so that settings may import this module without a cycle)."""

    @property
    def optimizer(self) -> str: ...
    @property
    def space(self) -> str: ...
    @property
    def dataset(self) -> str: ...
    @property
    def seed(self) -> int: ...
    @property
    def max_budget(self) -> float: ...
    @property
    def sweep(self) -> SweepOptions: ...


def check_study(settings: StudySettings) -> None:
    """Refuse study options without a study, and a study (or a narrowing) that cannot be built."""
    options = settings.sweep
    if not is_study(settings.optimizer) and options.study_options_given:
        raise SettingsError(
            "--base, --vary, --repeats, --max-jobs and --force apply to --optimizer sweep or grid only"
        )
    if not is_study(settings.optimizer) and options.space_from_sweep is None:
        return
    space = load_space(settings.space, dataset=settings.dataset)
    space = apply_space_from_sweep(settings, space)
    prepare_sweep(settings, space)


def apply_space_from_sweep(
    settings: StudySettings, space: CS.ConfigurationSpace, run_dir: Path | None = None
) -> CS.ConfigurationSpace:
    """``space`` narrowed by ``--space-from-sweep`` (unchanged without it); with ``run_dir``, the evidence
    and the changes are logged and written to ``run_dir/space-from-sweep.json``."""
    sweep_dir = settings.sweep.space_from_sweep
    if sweep_dir is None:
        return space
    from hpo_service.sweeps.narrow import narrow_space

    narrowing = narrow_space(space, sweep_dir, settings.sweep.tolerance)
    if run_dir is not None:
        for change in narrowing.changes:
            logger.info("--space-from-sweep: %s", change)
        run_files.write_json(run_dir / NARROWING_FILE, narrowing.to_dict())
        narrowing.space.seed(settings.seed)
    return narrowing.space


def prepare_sweep(
    settings: StudySettings, space: CS.ConfigurationSpace, run_dir: Path | None = None
) -> SweepPlan | None:
    """The study's plan (None unless the optimizer is a sweep or grid); with ``run_dir``, written to
    ``run_dir/sweep.json``."""
    if not is_study(settings.optimizer):
        return None
    plan = build_plan(
        space,
        settings.sweep,
        kind=settings.optimizer,
        seed=settings.seed,
        budget=settings.max_budget,
        input_shape=dataset_input_shape(settings.dataset),
    )
    if run_dir is not None:
        run_files.write_json(run_dir / PLAN_FILE, plan.to_dict())
        logger.info(
            "%s: %d configurations x %d repeats (seeds %s) = %d jobs of %g epochs",
            plan.kind, len(plan.configurations), plan.repeats, ", ".join(map(str, plan.seeds)),
            plan.job_count, plan.budget,
        )  # fmt: skip
    return plan


def optimizer_arguments(plan: SweepPlan | None) -> dict[str, Any]:
    """Extra keyword arguments of the optimizer: the plan for a study, nothing otherwise."""
    return {} if plan is None else {"plan": plan}
