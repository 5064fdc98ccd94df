"""The run directory is described once (hpo_service/run_files.py, and its table in docs/architecture.md), and
what the master's own result logger writes is what analysis's loader reads back."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
from hpbandster.core.dispatcher import Job

from analysis.load import load_run
from hpo_service import run_files
from hpo_service.hpbandster.result_log import JsonResultLogger
from hpo_service.records import EvaluationResult, JobStatus, RunDescription
from hpo_service.run_spec import RunSpec
from tests.conftest import REPO


def documented_names() -> set[str]:
    """The first column of docs/architecture.md's run directory table, as file or folder names."""
    text = (REPO / "docs" / "architecture.md").read_text()
    table = text.split("## Run directory", 1)[1].split("\n\n## ", 1)[0]
    names = re.findall(r"^\| `([^`]+)` \|", table, flags=re.MULTILINE)
    return {name.split("/")[0] for name in names}


def test_the_docs_table_and_run_files_name_the_same_files() -> None:
    assert documented_names() == set(run_files.ALL)


def finished_job(
    config_id: tuple[int, int, int], budget: float, result: object, exception: str | None
) -> Job:
    job = Job(config_id, config={"learning_rate": 0.01}, budget=budget)
    job.timestamps = {"submitted": 1000.0 + budget, "started": 1000.5 + budget, "finished": 1002.0 + budget}
    job.result = result
    job.exception = exception
    return job


def test_what_the_result_logger_writes_analysis_reads_back(tmp_path: Path) -> None:
    logger = JsonResultLogger(str(tmp_path), overwrite=True)
    configs = {
        (0, 0, 0): ({"learning_rate": np.float64(0.01), "optimizer": "adam"}, {"model_based_pick": False}),
        (0, 0, 1): ({"learning_rate": 0.1, "optimizer": "sgd"}, {"model_based_pick": True}),
        (1, 0, 0): ({"learning_rate": 1.0, "optimizer": "sgd"}, {"model_based_pick": False}),
    }
    for config_id, (config, info) in configs.items():
        logger.new_config(config_id, config, info)
    ok = EvaluationResult(loss=np.float32(0.25), info={"test_error": np.float64(0.3), "epochs": np.int64(3)})
    failed = EvaluationResult.failure("non-finite loss", JobStatus.FAILED, {"epochs": 1})
    logger(finished_job((0, 0, 0), 1.0, ok.to_wire(), None))
    logger(finished_job((0, 0, 0), 3.0, ok.to_wire(), None))
    logger(finished_job((0, 0, 1), 1.0, failed.to_wire(), None))
    logger(finished_job((1, 0, 0), 1.0, None, "Worker died unexpectedly."))  # crashed: no result at all
    logger.close()
    spec = RunSpec(optimizer="bohb", min_budget=1.0, max_budget=3.0, eta=3.0, n_iterations=1, seed=5)
    description = RunDescription(run_id="round-trip", spec=spec, started=999.0)
    (tmp_path / run_files.RUN_DESCRIPTION).write_text(json.dumps(description.to_dict()))

    run = load_run(tmp_path, prefer="json")

    assert run.source == f"{run_files.CONFIGS} + {run_files.RESULTS}"
    assert (run.metadata.run_id, run.metadata.optimizer, run.metadata.seed) == ("round-trip", "bohb", 5)
    assert (run.metadata.min_budget, run.metadata.max_budget, run.metadata.eta) == (1.0, 3.0, 3.0)
    assert run.configs == {
        config_id: {key: float(value) if key == "learning_rate" else value for key, value in config.items()}
        for config_id, (config, _) in configs.items()
    }
    assert run.config_info == {config_id: info for config_id, (_, info) in configs.items()}
    by_key = {(job.config_id, job.budget): job for job in run.jobs}
    assert set(by_key) == {((0, 0, 0), 1.0), ((0, 0, 0), 3.0), ((0, 0, 1), 1.0), ((1, 0, 0), 1.0)}
    first = by_key[((0, 0, 0), 1.0)]
    assert (first.loss, first.status, first.reason, first.test_error) == (0.25, "ok", None, 0.3)
    assert first.info["epochs"] == 3
    assert run.time_origin == 1001.0  # the first submission, the time axis' zero
    assert (first.submitted, first.started, first.finished) == (0.0, 0.5, 2.0)
    failure = by_key[((0, 0, 1), 1.0)]
    assert (failure.status, failure.reason) == ("failed", "non-finite loss")
    crashed = by_key[((1, 0, 0), 1.0)]
    assert (crashed.loss, crashed.status, crashed.exception) == (None, "crashed", "Worker died unexpectedly.")
    assert [job.finished for job in run.jobs] == sorted(job.finished for job in run.jobs)
