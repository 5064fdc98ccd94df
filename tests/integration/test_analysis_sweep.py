"""analysis sweep: per-value curves with bands over repeats, final error against value, cost by device."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from analysis import load_run
from analysis.__main__ import main
from analysis.space import CATEGORICAL
from analysis.sweep import LOG, NotAStudyError, sweep_study
from tests.support.analysis_runs import write_ours_run
from tests.support.sweep_runs import write_study_run

RATES = [0.1, 0.01, 0.001, 0.0001]


@pytest.fixture
def sweep_dir(tmp_path: Path) -> Path:
    return write_study_run(
        tmp_path / "sweep",
        {"learning_rate": RATES, "optimizer": ["sgd", "adam"]},
        seeds=(0, 1, 2),
        devices=("cpu (2 threads)", "NVIDIA H100 80GB HBM3"),
    )


def test_each_value_gets_its_repeats_mean_band_and_final_errors(sweep_dir: Path) -> None:
    study = sweep_study(load_run(sweep_dir))
    assert (study.kind, study.budget, study.seeds, study.jobs) == ("sweep", 3.0, (0, 1, 2), 15)
    rates, optimizers = study.panels
    assert rates.parameter == "learning_rate" and rates.scale == LOG
    assert [result.value for result in rates.values] == sorted(RATES)
    best = rates.best
    assert best is not None and best.value == 0.01
    # Seeds add 0.00, 0.01, 0.02 to the planted 0.05.
    assert best.finals == pytest.approx((0.05, 0.06, 0.07))
    assert best.final_mean == pytest.approx(0.06)
    assert best.final_std == pytest.approx(0.01)
    assert best.seeds == (0, 1, 2)
    # Curves fall by 0.3/epoch - 0.3/3: epoch 1 is 0.2 above the final error; the band spans the seeds.
    assert best.mean == pytest.approx((0.26, 0.11, 0.06))
    assert best.low == pytest.approx((0.25, 0.10, 0.05))
    assert best.high == pytest.approx((0.27, 0.12, 0.07))
    assert best.counts == (3, 3, 3)
    # The base point (lr 0.01, sgd) belongs to both panels.
    assert optimizers.scale == CATEGORICAL
    assert [result.value for result in optimizers.values] == ["sgd", "adam"]
    assert optimizers.values[0].finals == best.finals
    assert optimizers.values[1].final_mean == pytest.approx(0.08)


def test_a_grid_averages_each_value_over_the_other_values(tmp_path: Path) -> None:
    run = write_study_run(tmp_path / "g", {"learning_rate": [0.1, 0.01], "optimizer": ["sgd", "adam"]},
                          kind="grid", seeds=(0, 1))  # fmt: skip
    rates = sweep_study(load_run(run)).panels[0]
    by_value = {result.value: result for result in rates.values}
    assert len(by_value[0.01].finals) == 4  # two optimizers x two seeds
    assert by_value[0.01].final_mean == pytest.approx((0.05 + 0.06 + 0.07 + 0.08) / 4)


def test_crashed_and_failed_jobs_are_counted(tmp_path: Path) -> None:
    def loss(config: dict[str, object], seed: int) -> float | None:
        if config["learning_rate"] == 0.1:
            return None if seed == 0 else 1.0
        return 0.1

    run = write_study_run(tmp_path / "s", {"learning_rate": [0.1, 0.01]}, loss=loss)  # type: ignore[arg-type]
    high = sweep_study(load_run(run)).panels[0].values[1]
    assert (high.value, high.jobs, high.crashed, high.failed, high.finals) == (0.1, 2, 1, 1, (1.0,))


def test_the_sweep_command_writes_both_figures(sweep_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sweep", str(sweep_dir)]) == 0
    out = capsys.readouterr().out
    assert "sweep: 15 jobs on 3 epochs, seeds 0, 1, 2" in out
    assert "0.01: 0.0600 +- 0.0100 [0.0500, 0.0700]  3 jobs  <- best" in out
    assert "NVIDIA H100 80GB HBM3" in out and "cpu (2 threads)" in out
    for name in ("sweep.png", "sweep-cost.png"):
        assert (sweep_dir / name).read_bytes().startswith(b"\x89PNG"), name
    assert main(["sweep", str(sweep_dir), "-o", str(sweep_dir / "study.svg")]) == 0
    assert (sweep_dir / "study-cost.svg").is_file()


def test_a_run_that_is_no_study_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = write_ours_run(tmp_path / "bohb")
    assert main(["sweep", str(run)]) == 2
    assert "no sweep.json; not a sweep or grid run" in capsys.readouterr().err
    with pytest.raises(NotAStudyError):
        sweep_study(load_run(run))


def test_the_analysis_of_studies_does_not_import_torch() -> None:
    code = "import sys, analysis.sweep, analysis.plot_sweep; sys.exit('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2], check=False)
    assert done.returncode == 0
