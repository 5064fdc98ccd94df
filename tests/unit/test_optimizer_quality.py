"""benchmarks/optimizer_quality.py: its computations on synthetic run dirs (no training): the anytime
curve by epochs in finishing order, medians over seeds with "not reached" counted, the table, the figure,
and skipping runs that already finished."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from benchmarks import optimizer_quality as quality

T0 = 1_800_000_000.0


def write_run(
    directory: Path,
    results: list[tuple[float | None, int, float]],
    exit_code: int = 0,
    model_based_from: int | None = None,
) -> Path:
    """A run dir whose results are (loss, epochs trained, finish second), written in the given order;
    a loss of None is a failed job. Jobs from index ``model_based_from`` on are BOHB model picks,
    submitted when the job before the first of them finished. ``benchmark.json`` marks it finished with
    ``exit_code``."""
    directory.mkdir(parents=True)
    config_lines, result_lines = [], []
    for index, (loss, epochs, finished) in enumerate(results):
        config_id = [0, 0, index]
        picks = {} if model_based_from is None else {"model_based_pick": index >= model_based_from}
        config_lines.append(json.dumps([config_id, {"learning_rate": 0.01}, picks]))
        info = {"status": "ok" if loss is not None else "failed", "epochs_trained": epochs}
        model_based = model_based_from is not None and index >= model_based_from
        submitted = T0 + (results[model_based_from - 1][2] if model_based and model_based_from else 0.0)
        stamps = {"submitted": submitted, "started": submitted, "finished": T0 + finished}
        result = {"loss": loss if loss is not None else math.inf, "info": info}
        result_lines.append(json.dumps([config_id, float(epochs), stamps, result, None]))
    (directory / "configs.json").write_text("\n".join(config_lines) + "\n")
    (directory / "results.json").write_text("\n".join(result_lines) + "\n")
    (directory / quality.MARKER).write_text(json.dumps({"exit_code": exit_code}))
    return directory


def test_curve_follows_finishing_order_and_counts_failed_epochs(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", [(0.05, 3, 20.0), (0.08, 1, 10.0), (None, 9, 30.0), (0.02, 9, 40.0)])
    curve = quality.run_curve([run])
    assert curve.epochs == (1, 4, 13, 22)
    assert curve.best == (0.08, 0.05, 0.05, 0.02)
    assert (curve.best_at(0), curve.best_at(4), curve.best_at(21), curve.best_at(22)) == (
        math.inf, 0.05, 0.05, 0.02,
    )  # fmt: skip
    assert (curve.epochs_to_reach(0.05), curve.epochs_to_reach(0.02), curve.epochs_to_reach(0.01)) == (
        4, 22, None,
    )  # fmt: skip


def test_a_warm_start_sweep_comes_first_on_the_epoch_axis(tmp_path: Path) -> None:
    sweep = write_run(tmp_path / "sweep", [(0.04, 1, 5.0), (0.03, 1, 6.0)])
    search = write_run(tmp_path / "search", [(0.05, 1, 1.0), (0.01, 9, 2.0)])
    curve = quality.run_curve([sweep, search])
    assert curve.epochs == (1, 2, 3, 12) and curve.best == (0.04, 0.03, 0.03, 0.01)
    assert curve.first_model_epoch is None


def test_first_model_pick_is_placed_on_the_epoch_axis(tmp_path: Path) -> None:
    sweep = write_run(tmp_path / "sweep", [(0.04, 1, 5.0), (0.03, 1, 6.0)])
    results = [(0.05, 1, 1.0), (0.04, 3, 2.0), (0.01, 9, 3.0), (0.02, 9, 4.0)]
    search = write_run(tmp_path / "search", results, model_based_from=2)
    # The model's first job was submitted when the second result (4 epochs in) had finished.
    assert quality.run_curve([search]).first_model_epoch == 4
    assert quality.run_curve([sweep, search]).first_model_epoch == 2 + 4


def curve_of(*points: tuple[int, float]) -> quality.Curve:
    return quality.Curve(tuple(epochs for epochs, _ in points), tuple(best for _, best in points))


def test_summary_takes_medians_and_counts_not_reached_honestly() -> None:
    curves = [
        curve_of((10, 0.03), (50, 0.019), (100, 0.017)),
        curve_of((10, 0.04), (80, 0.025), (100, 0.021)),
        curve_of((10, 0.05), (60, 0.019), (120, 0.015)),  # reaches 1.5 % only past the budget
    ]
    row = quality.summarise("x", curves, epoch_budget=100, targets=[0.02, 0.018, 0.015])
    assert row.errors == (0.04, 0.04, 0.019)  # at 25, 50 and 100 epochs
    # 2.0 %: 50, never, 60 -> median 60; 1.8 %: 100, never, never -> median not reached; 1.5 %: none in time.
    assert row.reach[0] == 60 and math.isinf(row.reach[1]) and math.isinf(row.reach[2])
    assert row.reached == (2, 1, 0)
    assert row.epochs == (100, 100, 120)


def test_table_has_ratios_to_random_search() -> None:
    random = quality.Row(
        "randomsearch", 3, (0.04, 0.03, 0.02), (90.0, math.inf), (2, 1), (189,) * 3, (None,) * 3
    )
    bohb = quality.Row("bohb", 3, (0.05, 0.02, 0.018), (45.0, 120.0), (3, 2), (189,) * 3, (24, 30, None))
    table = quality.format_table([random, bohb], 189, [0.02, 0.018])
    lines = table.splitlines()
    assert len(lines) == 4 and lines[0].count("|") == lines[2].count("|") == lines[3].count("|")
    assert lines[2].startswith("| randomsearch | 3 | 189/189/189 | -/-/- | 4.00 % |")
    assert "| 90 (2/3) | not reached (1/3) | 1.00 | 1.00 | - |" in lines[2]
    assert lines[3].startswith("| bohb | 3 | 189/189/189 | 24/30/- | 5.00 % |")
    assert "| 45 (3/3) | 120 (2/3) | 0.90 | 0.50 | - |" in lines[3]


def test_report_only_skips_unfinished_runs_and_draws_the_figure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    for seed, final in enumerate((0.03, 0.02, 0.025)):
        write_run(out / f"randomsearch-seed{seed}", [(0.05, 3, 1.0), (final, 3, 2.0)])
        base = out / f"bohb-warm-seed{seed}"
        write_run(base / "sweep", [(0.04, 1, 1.0)])
        write_run(base / "search", [(final - 0.01, 9, 1.0)], exit_code=1 if seed == 2 else 0)
    (out / "hyperband-seed0").mkdir()  # interrupted: no benchmark.json
    arguments = ["--out", str(out), "--quick", "--report-only", "--variants", "randomsearch", "hyperband"]
    assert quality.main([*arguments, "bohb-warm"]) == 0
    printed = capsys.readouterr().out
    table = (out / "table.md").read_text()
    assert "| randomsearch | 3 |" in table and "| bohb-warm | 2 |" in table and "hyperband" not in table
    assert (out / "optimizer-quality.png").read_bytes().startswith(b"\x89PNG") and table in printed


def test_a_finished_run_is_not_launched_again(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", [(0.05, 3, 1.0)], exit_code=3)
    assert quality.launch_once(run, ["--no-such-option"], tmp_path / "run.log") == 3
    assert not (tmp_path / "run.log").exists()
