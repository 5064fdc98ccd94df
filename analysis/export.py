"""Every job of every run as flat rows, for spreadsheets and pandas: ``--csv`` and ``--json``.

One row per job: the run, config id, budget, status, losses, timings, model facts, then one column per
hyperparameter (empty where the parameter is inactive). A hyperparameter named like a fixed column gets
the prefix ``config.``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from analysis.data import RunData
from analysis.summary import format_config_id, summarize
from analysis.timeline import worker_timeline

# Fixed columns; the values of the job's info are looked up by the same name when not computed here.
COLUMNS = (
    "run",
    # The run's optimizer (bohb, hyperband, ...); ``optimizer`` is a hyperparameter in many spaces.
    "run_optimizer",
    "config_id",
    "iteration",
    "budget",
    "status",
    "reason",
    "loss",
    "validation_error",
    "test_error",
    "submitted",
    "started",
    "finished",
    "duration",
    "wall_seconds",
    "train_seconds",
    "samples_per_second",
    "epochs_trained",
    "parameter_count",
    "device",
    "worker",
    "model_based_pick",
)


def job_rows(runs: Mapping[str, RunData]) -> tuple[list[str], list[dict[str, Any]]]:
    """The columns and one row per job of each run (``runs``: label -> run)."""
    parameter_names: dict[str, None] = {}
    for run in runs.values():
        for config in run.configs.values():
            parameter_names.update(dict.fromkeys(config))
    columns = {name: (f"config.{name}" if name in COLUMNS else name) for name in sorted(parameter_names)}
    rows = []
    for label, run in runs.items():
        for job in run.jobs:
            row: dict[str, Any] = {name: job.info.get(name) for name in COLUMNS}
            row.update(
                run=label,
                run_optimizer=run.optimizer,
                config_id=format_config_id(job.config_id),
                iteration=job.config_id[0],
                budget=job.budget,
                status=job.status,
                reason=job.reason,
                loss=job.loss,
                test_error=job.test_error,
                submitted=round(job.submitted, 3),
                started=round(job.started, 3),
                finished=round(job.finished, 3),
                duration=round(job.finished - job.started, 3),
                model_based_pick=run.config_info.get(job.config_id, {}).get("model_based_pick"),
            )
            config = run.configs.get(job.config_id, {})
            row.update({column: config.get(name) for name, column in columns.items()})
            rows.append(row)
    return [*COLUMNS, *columns.values()], rows


def to_csv(runs: Mapping[str, RunData]) -> str:
    columns, rows = job_rows(runs)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def to_json(runs: Mapping[str, RunData]) -> str:
    """``{"runs": [{"run", "summary", "busy_share", "jobs": [rows]}]}``."""
    _, rows = job_rows(runs)
    documents = []
    for label, run in runs.items():
        summary = asdict(summarize(run))
        documents.append(
            {
                "run": label,
                "metadata": asdict(run.metadata),
                "summary": summary,
                "busy_share": worker_timeline(run).busy_share,
                "jobs": [row for row in rows if row["run"] == label],
            }
        )
    return json.dumps({"runs": documents}, indent=1, default=str) + "\n"
