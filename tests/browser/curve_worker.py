"""A fake worker that also reports a learning curve per epoch, as real workers do, so the dashboard's
curve view has something to draw. Run as ``python tests/browser/curve_worker.py --run-id ID --run-dir DIR``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hpo_service.records import EvaluationResult, JobRequest  # noqa: E402
from tests.support.fake_worker import FakeWorker, fake_loss, main  # noqa: E402


def fake_curve(config: dict[str, Any], budget: float) -> list[float]:
    """Validation error per epoch, falling to the job's loss on its last epoch."""
    loss = fake_loss(config, budget)
    epochs = max(int(round(budget)), 1)
    return [loss + 0.2 * (epochs - epoch) / epochs for epoch in range(1, epochs + 1)]


class CurveWorker(FakeWorker):
    def evaluate(self, job: JobRequest) -> EvaluationResult:
        result = super().evaluate(job)
        info = dict(result.info)
        info["validation_error_per_epoch"] = fake_curve(dict(job.config), job.budget)
        return EvaluationResult(loss=result.loss, info=info)


if __name__ == "__main__":
    sys.exit(main(worker_class=CurveWorker))
