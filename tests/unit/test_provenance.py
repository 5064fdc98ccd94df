"""analysis/provenance.py: which configurations BOHB's model proposed, when it started, and how its
picks compare with random ones, in ``analysis summary`` and the HTML report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from analysis import load_run
from analysis.__main__ import main
from analysis.provenance import LossDistribution, format_provenance, model_provenance
from analysis.report import write_report
from tests.support.analysis_runs import (
    planted_loss,
    sample_configs,
    write_ours_run,
    write_plain_hpbandster_run,
)

COUNT = 20
FIRST_MODEL = 12
BUDGETS = (1.0, 3.0)


@pytest.fixture
def bohb_dir(tmp_path: Path) -> Path:
    return write_ours_run(tmp_path / "bohb", count=COUNT, budgets=BUDGETS, model_based_from=FIRST_MODEL)


def raw_results(run_dir: Path) -> list[list]:
    return [json.loads(line) for line in (run_dir / "results.json").read_text().splitlines()]


def test_loss_distribution_of_a_known_list() -> None:
    assert LossDistribution.of([5.0, 1.0, 4.0, 2.0, 3.0]) == LossDistribution(5, 1.0, 2.0, 3.0, 4.0)
    assert LossDistribution.of([]) == LossDistribution(0)


def test_counts_and_first_pick(bohb_dir: Path) -> None:
    provenance = model_provenance(load_run(bohb_dir))
    assert provenance.recorded
    assert (provenance.configurations, provenance.model_based, provenance.random) == (COUNT, 8, 12)
    first = provenance.first_pick
    assert first is not None and first.config_id == (FIRST_MODEL // 10, 0, FIRST_MODEL % 10)
    # From the raw log: the results that had finished when the first model-based job was submitted.
    results = raw_results(bohb_dir)
    origin = min(stamps["submitted"] for _, _, stamps, _, _ in results)
    first_id = [FIRST_MODEL // 10, 0, FIRST_MODEL % 10]
    submitted = min(stamps["submitted"] for config_id, _, stamps, _, _ in results if config_id == first_id)
    before = [result for _, _, stamps, result, _ in results if stamps["finished"] <= submitted]
    assert 0 < first.results_before == len(before) < len(results)
    assert first.epochs_before == sum(result["info"]["epochs_trained"] for result in before)
    assert first.seconds == pytest.approx(submitted - origin)
    assert provenance.epochs == sum(int(budget) for _, budget, _, _, _ in results)


def test_loss_distributions_follow_the_planted_losses(bohb_dir: Path) -> None:
    provenance = model_provenance(load_run(bohb_dir))
    configs = sample_configs(COUNT, seed=0)
    assert [comparison.budget for comparison in provenance.budgets] == list(BUDGETS)
    for comparison in provenance.budgets:
        for losses, indices in (
            (comparison.model_based, range(FIRST_MODEL, COUNT)),
            (comparison.random, range(FIRST_MODEL)),
        ):
            expected = [planted_loss(configs[index]) / comparison.budget for index in indices]
            assert losses.count == len(expected)
            assert losses.best == pytest.approx(min(expected))
            assert losses.median == pytest.approx(float(np.median(expected)))
            assert losses.lower_quartile <= losses.median <= losses.upper_quartile


def test_runs_without_the_flag_say_so(tmp_path: Path) -> None:
    hyperband = model_provenance(load_run(write_ours_run(tmp_path / "hb", count=6, record_picks=False)))
    assert not hyperband.recorded and hyperband.budgets == () and hyperband.first_pick is None
    assert "no model-based picks recorded" in format_provenance(hyperband)
    # Plain HpBandSter with a random sampler records the flag as False: a comparison with no model side.
    plain = model_provenance(load_run(write_plain_hpbandster_run(tmp_path / "plain")))
    assert plain.recorded and plain.model_based == 0 and plain.first_pick is None
    assert all(comparison.model_based.count == 0 for comparison in plain.budgets)
    assert "never proposed" in format_provenance(plain)


def test_summary_command_prints_the_comparison(bohb_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", str(bohb_dir)]) == 0
    printed = capsys.readouterr().out
    assert "proposed 8 of 20 configurations (12 random)" in printed
    assert "first pick  (1, 0, 2) after " in printed
    # One line per budget and origin.
    assert sum(line.split()[1:2] == ["model"] for line in printed.splitlines()) == len(BUDGETS)


def test_report_has_the_histogram_or_a_note(bohb_dir: Path, tmp_path: Path) -> None:
    hyperband = write_ours_run(tmp_path / "hb", count=6, record_picks=False)
    runs = {"bohb": load_run(bohb_dir), "hyperband": load_run(hyperband)}
    page = write_report(runs, tmp_path / "report.html", rule="max-budget").read_text()
    assert page.count("<h3>Model-based against random configurations</h3>") == 2
    section = page.split("<h3>Model-based against random configurations</h3>")
    assert section[1].split("<h3>")[0].count("<img ") == 1
    assert "nothing to compare" in section[2].split("<h3>")[0]
    assert "proposed 8 of 20 configurations" in page
