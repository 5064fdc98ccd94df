"""Search spaces through ``launch.local`` end to end (real processes, real training on the digits):
every preset runs, and a deliberately broken custom space ends as failed results with reasons."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from hpo_service.space import SPACE_NAMES
from tests.conftest import ProcessRun, result_lines

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Random search at one epoch: n-iterations jobs, each on the first 300 training images.
QUICK = ["--optimizer", "randomsearch", "--min-budget", "1", "--max-budget", "1", "--train-limit", "300"]

BROKEN_SPACE = """
# Unbuildable on purpose: two valid 7x7 convolutions collapse 8x8 digits (one fits), and "swish" is no
# activation here.
hyperparameters:
  conv_layers: {range: [1, 3]}
  kernel_size: 7
  padding: valid
  pooling: none
  activation: {choices: [relu, swish]}
  learning_rate: {range: [0.01, 0.1], log: true}
forbid_unbuildable: false
"""


def launch(process_run: ProcessRun, run_dir: Path, *extra: str) -> list[list[Any]]:
    command = [sys.executable, "-m", "launch.local", "--run-dir", str(run_dir), "--n-workers", "1", *QUICK]
    launcher = process_run.start("launch", [*command, *extra])
    assert launcher.wait(timeout=240) == 0, process_run.log("launch")
    return result_lines(run_dir)


@pytest.mark.parametrize("space", SPACE_NAMES)
def test_every_preset_runs_end_to_end_on_the_embedded_dataset(
    process_run: ProcessRun, tmp_path: Path, space: str
) -> None:
    results = launch(process_run, tmp_path / "run", "--space", space, "--n-iterations", "3", "--seed", "1")

    assert len(results) == 3
    for config_id, _, _, result, exception in results:
        assert exception is None
        info = result["info"]  # type: ignore[index]
        # Training may diverge (a failed result with its reason), but a preset never builds a broken model.
        assert "invalid configuration" not in str(info.get("reason")), (config_id, info)
        assert info["epochs_trained"] <= 1
    assert '"space": "' + space + '"' in (tmp_path / "run" / "run.json").read_text()


def test_a_broken_custom_space_gives_failed_results_with_reasons_and_the_run_completes(
    process_run: ProcessRun, tmp_path: Path
) -> None:
    space_file = tmp_path / "broken.yaml"
    space_file.write_text(BROKEN_SPACE)

    results = launch(
        process_run, tmp_path / "run", "--space", str(space_file), "--n-iterations", "12", "--seed", "3"
    )

    assert len(results) == 12  # nothing lost, nothing hung
    reasons = {}
    for config_id, _, _, result, exception in results:
        assert exception is None  # a failed result, not a crashed job
        info = result["info"]  # type: ignore[index]
        reasons[info["status"], info.get("reason") or ""] = config_id
    failed = [reason for status, reason in reasons if status == "failed"]
    assert any("collapses below 1x1" in reason for reason in failed), reasons
    assert any("activation must be one of" in reason and "swish" in reason for reason in failed), reasons
    assert any(status == "ok" for status, _ in reasons), reasons
