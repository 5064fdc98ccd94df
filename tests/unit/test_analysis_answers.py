"""analysis/: the computed data of each analysis (export, workers, curves, budgets, importance, cost,
grouped incumbents), on hand-made run dirs whose answers are known."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from analysis import load_run, summarize
from analysis.budgets import WEAK_CORRELATION, budget_correlations, format_correlations, spearman
from analysis.cost import NoCostDataError, TrainingCost, format_cost, overheads, training_cost
from analysis.curves import NoCurvesError, curves_by_parameter, learning_curves, mean_per_epoch
from analysis.data import JobRecord, RunData, RunMetadata
from analysis.export import job_rows, to_csv, to_json
from analysis.groups import group_trajectories, value_at
from analysis.importance import BUDGET_COLUMN, INACTIVE_CODE, encode, parameter_importance
from analysis.incumbents import ANY_BUDGET, MAX_BUDGET, incumbent_trajectory
from analysis.space import (
    CATEGORICAL,
    NUMERIC,
    UnknownParameterError,
    infer_parameters,
    resolve_parameter,
    run_parameters,
)
from analysis.summary import format_summary
from analysis.timeline import worker_timeline
from tests.integration.test_analysis import JOBS, write_run_dir
from tests.support.analysis_runs import write_ours_run, write_plain_hpbandster_run


@pytest.fixture
def hand_run(tmp_path: Path) -> RunData:
    """The 10-job run of test_analysis.py: no worker names, no curves."""
    return load_run(write_run_dir(tmp_path / "hand"))


@pytest.fixture
def ours(tmp_path: Path) -> RunData:
    return load_run(write_ours_run(tmp_path / "ours"))


def record(
    config_id: tuple[int, int, int], budget: float, loss: float | None, finished: float = 0.0
) -> JobRecord:
    return JobRecord(config_id, budget, loss, "ok", None, {}, 0.0, 0.0, finished)


# --- summary and export -----------------------------------------------------------------------------


def test_summary_reports_workers_and_busy_share(hand_run: RunData, ours: RunData) -> None:
    summary = summarize(hand_run)
    # No worker names: jobs packed into the 4 slots that ran at once; 50 s busy of 4 x 35 s.
    assert (summary.workers, summary.workers_inferred) == (4, True)
    assert summary.busy_share == pytest.approx(50 / 140)
    ours_summary = summarize(ours)
    assert (ours_summary.workers, ours_summary.workers_inferred) == (2, False)


def test_csv_has_a_row_per_job_with_config_columns(hand_run: RunData) -> None:
    rows = list(csv.DictReader(io.StringIO(to_csv({"hand": hand_run}))))
    assert len(rows) == len(JOBS)
    crashed = [row for row in rows if row["status"] == "crashed"]
    assert len(crashed) == 1 and crashed[0]["loss"] == "" and crashed[0]["learning_rate"] == "0.001"
    best = [row for row in rows if row["config_id"] == "(1, 0, 1)"][0]
    assert (best["budget"], best["loss"], best["test_error"], best["optimizer"]) == (
        "9.0",
        "0.12",
        "0.11",
        "adamw",
    )
    assert best["iteration"] == "1" and best["duration"] == "9.5" and best["run"] == "hand"


def test_a_hyperparameter_named_like_a_column_is_prefixed(hand_run: RunData) -> None:
    configs = {config_id: {**config, "loss": 1} for config_id, config in hand_run.configs.items()}
    columns, rows = job_rows({"x": replace(hand_run, configs=configs)})
    assert "config.loss" in columns and rows[0]["config.loss"] == 1 and rows[0]["loss"] == 0.5


def test_json_export_holds_summary_and_jobs(hand_run: RunData, ours: RunData) -> None:
    document = json.loads(to_json({"hand": hand_run, "ours": ours}))
    hand, ours_document = document["runs"]
    assert hand["summary"]["incumbent"]["config_id"] == [1, 0, 1]
    assert hand["summary"]["busy_share"] == pytest.approx(50 / 140)
    assert len(hand["jobs"]) == 10 and len(ours_document["jobs"]) == 80
    assert ours_document["metadata"]["optimizer"] == "bohb"


# --- workers ----------------------------------------------------------------------------------------


def test_gantt_intervals_and_gaps_of_named_workers(ours: RunData) -> None:
    timeline = worker_timeline(ours)
    assert not timeline.inferred
    assert [usage.worker for usage in timeline.usage] == ["worker-a:1", "worker-b:2"]
    assert len(timeline.intervals) == 80
    for usage in timeline.usage:
        mine = sorted(
            (interval for interval in timeline.intervals if interval.worker == usage.worker),
            key=lambda interval: interval.started,
        )
        # The factory leaves exactly 0.5 s between a worker's jobs.
        inner = [later.started - earlier.finished for earlier, later in zip(mine, mine[1:], strict=False)]
        assert inner == pytest.approx([0.5] * (len(mine) - 1))
        busy = sum(interval.finished - interval.started for interval in mine)
        assert usage.busy_seconds == pytest.approx(busy)
        assert usage.busy_share == pytest.approx(busy / timeline.span)
        assert usage.busy_seconds + usage.idle_seconds == pytest.approx(timeline.span)


def test_slots_are_inferred_without_worker_names(hand_run: RunData) -> None:
    timeline = worker_timeline(hand_run)
    slots = {(interval.config_id, interval.budget): interval.worker for interval in timeline.intervals}
    assert slots[((0, 0, 0), 1.0)] == "slot 1" and slots[((0, 0, 3), 1.0)] == "slot 4"
    assert slots[((1, 0, 0), 9.0)] == "slot 1" and slots[((1, 0, 1), 9.0)] == "slot 2"
    by_slot = {usage.worker: usage for usage in timeline.usage}
    assert by_slot["slot 1"].busy_seconds == pytest.approx(1.5 + 2.5 + 9.5 + 3.5 + 10.5)
    assert by_slot["slot 4"].gaps[0] == pytest.approx((5.0, 35.0))  # longest gap first
    # No slot runs two jobs at once.
    for usage in timeline.usage:
        mine = sorted((i for i in timeline.intervals if i.worker == usage.worker), key=lambda i: i.started)
        assert all(a.finished <= b.started for a, b in zip(mine, mine[1:], strict=False))


# --- hyperparameter names ---------------------------------------------------------------------------


def test_parameter_names_resolve_by_alias_and_prefix(ours: RunData) -> None:
    parameters = run_parameters(ours)
    assert resolve_parameter("lr", parameters).name == "learning_rate"
    assert resolve_parameter("opt", parameters).name == "optimizer"
    assert resolve_parameter("drop", parameters).name == "dropout"
    with pytest.raises(UnknownParameterError, match="no hyperparameter 'size'"):
        resolve_parameter("size", parameters)
    ambiguous = infer_parameters([{"filters_1": 8, "filters_2": 16}])
    with pytest.raises(UnknownParameterError, match="ambiguous"):
        resolve_parameter("filters_", ambiguous)


def test_parameters_are_inferred_without_configspace_json() -> None:
    parameters = {p.name: p for p in infer_parameters([{"lr": 1e-4, "opt": "a"}, {"lr": 0.1, "opt": "b"}])}
    assert parameters["lr"].kind == NUMERIC and parameters["lr"].log
    assert parameters["opt"].kind == CATEGORICAL and parameters["opt"].choices == ("a", "b")


# --- curves -----------------------------------------------------------------------------------------


def test_mean_per_epoch_over_curves_of_different_lengths() -> None:
    means, counts = mean_per_epoch([[0.9, 0.5, 0.3], [0.7], [0.8, math.nan]])
    assert means == pytest.approx((0.8, 0.5, 0.3)) and counts == (3, 1, 1)


def test_curves_by_a_categorical_use_each_configs_longest_curve(ours: RunData) -> None:
    parameter = resolve_parameter("optimizer", run_parameters(ours))
    data = curves_by_parameter(ours, parameter)
    assert [group.label for group in data.groups] == ["sgd", "adam"]
    losses = {(job.config_id, job.budget): job.loss for job in ours.jobs}
    for group in data.groups:
        members = [
            config_id for config_id, config in ours.configs.items() if config["optimizer"] == group.label
        ]
        # Longest curve = budget 3; the factory's curves end on loss / 3.
        expected_last = np.mean([losses[(config_id, 3.0)] for config_id in members])
        assert group.configs == len(members) and group.counts == (len(members),) * 3
        assert group.errors[-1] == pytest.approx(expected_last)


def test_curves_by_a_continuous_parameter_use_quantile_bins(ours: RunData) -> None:
    data = curves_by_parameter(ours, resolve_parameter("lr", run_parameters(ours)), bins=4)
    assert len(data.groups) == 4 and sum(group.configs for group in data.groups) == 40
    assert [group.configs for group in data.groups] == [10, 10, 10, 10]
    assert data.groups[0].label.startswith("[0.000") and data.groups[-1].label.endswith("]")
    momentum = curves_by_parameter(ours, resolve_parameter("momentum", run_parameters(ours)), bins=2)
    assert momentum.groups[-1].label == "inactive"


def test_no_curves_is_one_clear_error(tmp_path: Path) -> None:
    run = load_run(write_plain_hpbandster_run(tmp_path / "plain"))
    with pytest.raises(NoCurvesError, match="no result reports validation_error_per_epoch"):
        learning_curves(run)
    with pytest.raises(NoCostDataError, match="parameter_count"):
        training_cost(run)


# --- budgets ----------------------------------------------------------------------------------------


def correlation_run(losses: dict[float, list[float | None]]) -> RunData:
    jobs = tuple(
        record((0, 0, index), budget, loss)
        for budget, values in losses.items()
        for index, loss in enumerate(values)
    )
    return RunData(Path("x"), "test", RunMetadata(), jobs)


def test_budget_correlations_are_spearman_on_common_configs() -> None:
    run = correlation_run(
        {
            1.0: [0.9, 0.8, 0.7, 0.6, 0.5],
            3.0: [0.5, 0.4, 0.3, 0.2, 0.1],  # the same order: rho 1
            9.0: [0.1, 0.2, 0.3, 0.4, 0.5],  # reversed: rho -1
            27.0: [0.1, None, None, None, None],  # one common config: no correlation
            81.0: [0.1, 0.2, 0.3, None, None],  # reversed on three configs: too few to warn
        }
    )
    correlations = budget_correlations(run)
    pairs = {(pair.smaller, pair.larger): pair for pair in correlations.pairs}
    assert pairs[(1.0, 3.0)].correlation == pytest.approx(1.0) and pairs[(1.0, 3.0)].configs == 5
    assert pairs[(1.0, 9.0)].correlation == pytest.approx(-1.0) and pairs[(1.0, 9.0)].weak
    assert pairs[(1.0, 27.0)].correlation is None and pairs[(1.0, 27.0)].configs == 1
    assert pairs[(1.0, 81.0)].correlation == pytest.approx(-1.0) and not pairs[(1.0, 81.0)].weak
    assert correlations.matrix()[0, 2] == pytest.approx(-1.0)
    text = format_correlations(correlations)
    assert "WARNING: budget 1 ranks configurations unlike budget 9" in text
    assert f"< {WEAK_CORRELATION}" in text and "multi-fidelity does not help" in text


def test_spearman_matches_scipy_with_ties() -> None:
    first = np.array([0.3, 0.1, 0.1, 0.7, 0.5, 0.2])
    second = np.array([0.2, 0.2, 0.1, 0.9, 0.3, 0.6])
    assert spearman(first, second) == pytest.approx(spearmanr(first, second).statistic)
    assert spearman(first, np.ones(6)) is None


# --- importance -------------------------------------------------------------------------------------


def test_importance_ranks_the_planted_parameter_first(tmp_path: Path) -> None:
    run = load_run(write_ours_run(tmp_path / "one", count=60, budgets=(9.0,)))
    importance = parameter_importance(run)
    assert importance.names[0] == "learning_rate"
    assert importance.importances[0] > 0.8 and importance.r2 > 0.5
    assert sum(importance.importances) == pytest.approx(1.0)
    assert BUDGET_COLUMN not in importance.names  # one budget: no budget input


def test_encoding_scales_logs_and_marks_inactive(ours: RunData) -> None:
    samples = encode(ours, run_parameters(ours), budget=None)
    assert samples.names[-1] == BUDGET_COLUMN and samples.features.shape == (80, 6)
    column = samples.names.index("learning_rate")
    assert samples.features[:, column].min() >= -4 and samples.features[:, column].max() <= -1
    momentum = samples.features[:, samples.names.index("momentum")]
    optimizer = samples.features[:, samples.names.index("optimizer")]
    assert np.all((momentum == INACTIVE_CODE) == (optimizer == 1.0))  # inactive exactly for adam


# --- cost -------------------------------------------------------------------------------------------


def test_cost_fits_a_power_law_per_device(ours: RunData) -> None:
    cost = training_cost(ours)
    assert len(cost.points) == 80 and cost.devices == ("cpu (1 thread)",)
    (fit,) = cost.fits
    # The factory trains for 1e-5 s per parameter and epoch: exponent 1, factor 1e-5.
    assert fit.exponent == pytest.approx(1.0) and fit.factor == pytest.approx(1e-5)
    point = cost.points[0]
    assert point.seconds_per_epoch == pytest.approx(point.parameters * 1e-5)


# --- incumbents, grouped ----------------------------------------------------------------------------


def test_trajectory_on_the_hand_made_log_is_monotone_and_exact(hand_run: RunData) -> None:
    trajectory = incumbent_trajectory(hand_run, ANY_BUDGET)
    assert trajectory.losses == (0.50, 0.30, 0.25, 0.20, 0.15, 0.10)
    assert all(
        later < earlier for earlier, later in zip(trajectory.losses, trajectory.losses[1:], strict=False)
    )
    assert incumbent_trajectory(hand_run, MAX_BUDGET).losses == (0.15, 0.12)


def test_group_median_and_quartiles_over_seeds() -> None:
    def run(optimizer: str, points: list[tuple[float, float]], end: float) -> RunData:
        jobs = tuple(record((0, 0, i), 1.0, loss, finished=time) for i, (time, loss) in enumerate(points))
        jobs += (record((0, 0, 99), 1.0, None, finished=end),)
        return RunData(Path(optimizer), "test", RunMetadata(optimizer=optimizer), jobs)

    runs = {
        "a": run("bohb", [(2.0, 0.5), (10.0, 0.2)], 20.0),
        "b": run("bohb", [(4.0, 0.4)], 20.0),
        "c": run("randomsearch", [(1.0, 0.9)], 10.0),
    }
    times = np.array([1.0, 3.0, 5.0, 12.0])
    assert value_at(incumbent_trajectory(runs["a"], ANY_BUDGET), times) == pytest.approx(
        [math.nan, 0.5, 0.5, 0.2], nan_ok=True
    )
    bands = {band.group: band for band in group_trajectories(runs, ANY_BUDGET, points=21)}
    assert set(bands) == {"bohb", "randomsearch"} and bands["bohb"].runs == 2
    bohb = bands["bohb"]
    at = {time: index for index, time in enumerate(bohb.times)}
    # Run b has no incumbent before 4 s: no statistics until then (a median could otherwise rise).
    assert math.isnan(bohb.median[at[1.0]]) and bohb.counts[at[3.0]] == 1 and math.isnan(bohb.median[at[3.0]])
    assert bohb.median[at[5.0]] == pytest.approx(0.45)
    assert (bohb.lower[at[5.0]], bohb.upper[at[5.0]]) == pytest.approx((0.425, 0.475))
    assert bohb.median[at[12.0]] == pytest.approx(0.3)
    # A run that has ended keeps its final incumbent.
    assert bands["randomsearch"].median[-1] == pytest.approx(0.9)


def test_cost_groups_jobs_by_device_precision_and_step_mode(ours: RunData) -> None:
    jobs = tuple(
        replace(job, info={**job.info, "precision": "bf16" if index % 2 else "fp32", "step_mode": "eager"})
        for index, job in enumerate(ours.jobs)
    )
    cost = training_cost(replace(ours, jobs=jobs))
    assert cost.devices == ("cpu (1 thread), bf16, eager", "cpu (1 thread), fp32, eager")
    assert sorted(fit.points for fit in cost.fits) == [40, 40]


def test_cost_overhead_per_group_separates_each_workers_first_job_and_shows_peak_memory() -> None:
    def job(worker: str, started: float, wall: float, training: float, peak: int | None) -> JobRecord:
        info = {"worker": worker, "train_seconds": training, "device": "NVIDIA H200 (cuda:0)",
                "precision": "fp32", "step_mode": "graph", "peak_gpu_memory": peak}  # fmt: skip
        return JobRecord((0, 0, int(started)), 1.0, 0.1, "ok", None, info, started, started, started + wall)

    run = RunData(Path("gpu"), "test", RunMetadata(optimizer="hyperband"), (
        job("a", 0.0, 3.0, 2.0, 5 * 2**20),  # a's first job: 1.0 s outside training
        job("b", 0.5, 2.8, 2.0, 7 * 2**20),  # b's first: 0.8 s
        job("a", 3.5, 2.2, 2.0, None),  # later jobs: 0.2 s and 0.1 s
        job("b", 3.5, 2.1, 2.0, 6 * 2**20),
    ))  # fmt: skip

    (overhead,) = overheads(run)

    assert overhead.device == "NVIDIA H200 (cuda:0), fp32, graph" and overhead.workers == 2
    assert overhead.first_job_max_seconds == pytest.approx(1.0)
    assert overhead.later_max_seconds == pytest.approx(0.2)
    assert overhead.median_seconds == pytest.approx(0.5)
    assert overhead.peak_gpu_memory == 7 * 2**20
    text = format_cost(TrainingCost((), (), (overhead,)))
    assert "other jobs: at most 0.20 s" in text and "peak GPU memory at most 7 MiB" in text


def test_cost_overhead_on_cpu_names_no_memory_and_no_later_jobs_when_each_worker_ran_one() -> None:
    info = {"worker": "a", "train_seconds": 1.0, "device": "cpu (2 threads)"}
    run = RunData(Path("cpu"), "test", RunMetadata(optimizer="hyperband"), (
        JobRecord((0, 0, 0), 1.0, 0.1, "ok", None, info, 0.0, 0.0, 1.5),
    ))  # fmt: skip

    (overhead,) = overheads(run)

    assert overhead.later_max_seconds is None and overhead.peak_gpu_memory is None
    text = format_cost(TrainingCost((), (), (overhead,)))
    assert "other jobs" not in text and "peak GPU memory" not in text


def test_summary_shows_the_incumbents_peak_gpu_memory_where_the_result_has_one(ours: RunData) -> None:
    assert "peak GPU memory" not in format_summary(summarize(ours))  # CPU results name none
    jobs = tuple(replace(job, info={**job.info, "peak_gpu_memory": 3 * 2**20}) for job in ours.jobs)
    summary = summarize(replace(ours, jobs=jobs))
    assert summary.incumbent is not None and summary.incumbent.peak_gpu_memory == 3 * 2**20
    assert ", peak GPU memory 3 MiB" in format_summary(summary)
