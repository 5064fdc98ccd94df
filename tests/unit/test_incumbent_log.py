"""The master's closing line names an incumbent only when a job succeeded (issue 14: a run where every job
failed reported an "incumbent" with the worst loss)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from hpbandster.core.result import logged_results_to_HBS_result

from hpo_service.master import log_incumbent
from hpo_service.records import WORST_LOSS


def run_dir_with(tmp_path: Path, statuses: list[str]) -> Path:
    """JSON logs of one configuration per status, each on budget 1; failures with the worst loss."""
    configs, results = [], []
    for index, status in enumerate(statuses):
        config_id = [0, 0, index]
        configs.append(json.dumps([config_id, {"learning_rate": 0.01 * (index + 1)}, {}]))
        loss = 0.2 if status == "ok" else WORST_LOSS
        stamps = {"submitted": 1.0 + index, "started": 1.5 + index, "finished": 2.0 + index}
        results.append(json.dumps([config_id, 1.0, stamps, {"loss": loss, "info": {"status": status}}, None]))
    (tmp_path / "configs.json").write_text("\n".join(configs) + "\n")
    (tmp_path / "results.json").write_text("\n".join(results) + "\n")
    return tmp_path


def test_every_job_failed_no_incumbent(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    result = logged_results_to_HBS_result(str(run_dir_with(tmp_path, ["failed", "error"])))
    with caplog.at_level(logging.INFO, logger="hpo_service.master"):
        log_incumbent(result)
    assert "no incumbent: every job on the largest budget failed" in caplog.text
    assert "validation error" not in caplog.text


def test_a_successful_job_is_the_incumbent(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    result = logged_results_to_HBS_result(str(run_dir_with(tmp_path, ["failed", "ok"])))
    with caplog.at_level(logging.INFO, logger="hpo_service.master"):
        log_incumbent(result)
    assert "incumbent (0, 0, 1): validation error 0.2000" in caplog.text
