"""Learning-rate schedules as pure functions of the optimizer step.

The trainer asks :func:`learning_rate_factor` for the factor on the peak learning rate before every step and
writes it into the optimizer's parameter groups. No ``torch.optim.lr_scheduler`` objects: the whole state is
one step counter, which is trivial to checkpoint and makes a resumed run take the very same steps as an
uninterrupted one.

The horizon is the number of epochs the schedule spans (a run's epochs unless the caller plans a longer
run): ``cosine`` and ``step`` are defined by the fraction of the horizon done, ``cyclic`` repeats every
``cycle_epochs`` epochs regardless of the horizon.
"""

from __future__ import annotations

import math

from hpo_service.vocabulary import SCHEDULES

# The low end of the cyclic schedule, as a fraction of the peak learning rate.
CYCLIC_LOW = 0.1


def learning_rate_factor(
    schedule: str,
    step: int,
    steps_per_epoch: int,
    horizon_epochs: int,
    *,
    step_gamma: float = 0.1,
    cycle_epochs: float = 4.0,
) -> float:
    """The factor on the peak learning rate for optimizer step ``step`` (0 for the first step).

    - ``constant``: 1.
    - ``cosine``: ``(1 + cos(pi * t)) / 2`` with ``t`` the fraction of the horizon done (per step, not per
      epoch), from 1 at the first step down to 0 at the end of the horizon; it stays 0 beyond.
    - ``step``: 1, then ``step_gamma`` from 50 % of the horizon and ``step_gamma ** 2`` from 75 %.
    - ``cyclic``: triangular (Smith 2017, "Cyclical learning rates for training neural networks"): up
      linearly from :data:`CYCLIC_LOW` to 1 over half a cycle of ``cycle_epochs`` epochs, back down over
      the other half, starting at the low end.
    """
    if step < 0:
        raise ValueError(f"step must not be negative, got {step}")
    if steps_per_epoch < 1 or horizon_epochs < 1:
        raise ValueError(
            f"steps_per_epoch and horizon_epochs must be at least 1, got {steps_per_epoch}, {horizon_epochs}"
        )
    total = steps_per_epoch * horizon_epochs
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(step / total, 1.0)))
    if schedule == "step":
        # Integer comparisons: the switch lands on exactly the step at 50 % / 75 %, free of rounding.
        if 4 * step >= 3 * total:
            return step_gamma**2
        return step_gamma if 2 * step >= total else 1.0
    if schedule == "cyclic":
        if cycle_epochs <= 0:
            raise ValueError(f"cycle_epochs must be positive, got {cycle_epochs}")
        position = (step / (cycle_epochs * steps_per_epoch)) % 1.0
        triangle = 1.0 - abs(2.0 * position - 1.0)
        return CYCLIC_LOW + (1.0 - CYCLIC_LOW) * triangle
    raise ValueError(f"unknown lr_schedule {schedule!r}: choose one of {', '.join(SCHEDULES)}")
