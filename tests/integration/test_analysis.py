"""analysis/: loading run dirs (JSON logs and pickles), summary, incumbent trajectories, plots, CLI.

Every test works on a small hand-made HpBandSter run dir whose expected numbers are written out below.
"""

from __future__ import annotations

import json
import logging
import math
import pickle
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from analysis import RunDirError, find_incumbent, format_summary, incumbent_trajectory, load_run, summarize
from analysis.__main__ import main
from analysis.data import JobRecord
from analysis.incumbents import ANY_BUDGET, MAX_BUDGET
from analysis.plots import UnsupportedFormatError, plot_incumbents, step_points

REPO = Path(__file__).resolve().parents[2]
# Wall-clock time of the first submission; the loaded times are relative to it.
T0 = 1_700_000_000.0

CONFIGS: dict[tuple[int, int, int], dict[str, Any]] = {
    (0, 0, 0): {"learning_rate": 0.1, "optimizer": "sgd"},
    (0, 0, 1): {"learning_rate": 0.01, "optimizer": "adam"},
    (0, 0, 2): {"learning_rate": 0.001, "optimizer": "adam"},
    (0, 0, 3): {"learning_rate": 0.5, "optimizer": "sgd"},
    (1, 0, 0): {"learning_rate": 0.05, "optimizer": "sgd"},
    (1, 0, 1): {"learning_rate": 0.02, "optimizer": "adamw"},
    # Sampled, never run.
    (1, 0, 2): {"learning_rate": 0.3, "optimizer": "sgd"},
}

CRASH_TRACEBACK = (
    'Traceback (most recent call last):\n  File "w.py", line 1\nRuntimeError: CUDA out of memory\n'
)


def ok(loss: float, test_error: float) -> dict[str, Any]:
    return {"loss": loss, "info": {"status": "ok", "reason": None, "test_error": test_error}}


# (config_id, budget, submitted, finished, result, exception), relative to T0, in the order they finish.
JOBS: list[tuple[tuple[int, int, int], float, float, float, Any, str | None]] = [
    ((0, 0, 0), 1.0, 0.0, 2.0, ok(0.50, 0.52), None),
    ((0, 0, 1), 1.0, 0.0, 3.0, ok(0.30, 0.31), None),
    ((0, 0, 2), 1.0, 1.0, 4.0, None, CRASH_TRACEBACK),
    ((0, 0, 3), 1.0, 1.0, 5.0, {"loss": 1.0, "info": {"status": "failed", "reason": "diverged"}}, None),
    ((0, 0, 1), 3.0, 5.0, 8.0, ok(0.25, 0.27), None),
    ((0, 0, 0), 3.0, 5.0, 10.0, ok(0.20, 0.22), None),
    ((0, 0, 0), 9.0, 10.0, 20.0, ok(0.15, 0.17), None),
    # Lower than anything on budget 9, but on budget 3: the incumbent only under "any-budget".
    ((1, 0, 0), 3.0, 20.0, 24.0, ok(0.10, 0.12), None),
    ((1, 0, 1), 9.0, 20.0, 30.0, ok(0.12, 0.11), None),
    ((1, 0, 0), 9.0, 24.0, 35.0, ok(0.18, 0.19), None),
]

RUN_DESCRIPTION = {
    "run_id": "test",
    "optimizer": "hyperband",
    "min_budget": 1.0,
    "max_budget": 9.0,
    "eta": 3.0,
    "n_iterations": 2,
    "seed": 7,
    "dataset": "mnist",
    "space": "mlp",
    "started": T0,
    "finished": T0 + 36,
}

RunDirFactory = Callable[..., Path]


def write_run_dir(
    directory: Path,
    *,
    jobs: list[Any] | None = None,
    run_json: bool = True,
    truncate_results: bool = False,
) -> Path:
    """An HpBandSter-format run dir: configs.json, results.json (absolute time stamps), maybe run.json."""
    directory.mkdir(parents=True)
    with open(directory / "configs.json", "w") as handle:
        for config_id, config in CONFIGS.items():
            handle.write(json.dumps([list(config_id), config, {"model_based_pick": False}]) + "\n")
    lines = []
    for config_id, budget, submitted, finished, result, exception in JOBS if jobs is None else jobs:
        stamps = {"submitted": T0 + submitted, "started": T0 + submitted + 0.5, "finished": T0 + finished}
        lines.append(json.dumps([list(config_id), budget, stamps, result, exception]) + "\n")
    text = "".join(lines)
    if truncate_results:
        text += lines[-1][: len(lines[-1]) // 2]  # a writer killed mid-line
    (directory / "results.json").write_text(text)
    if run_json:
        (directory / "run.json").write_text(json.dumps(RUN_DESCRIPTION, indent=2))
    return directory


def add_result_pickle(directory: Path) -> Path:
    """Add results.pkl built by HpBandSter itself from the JSON logs, as a finished run has."""
    from hpbandster.core.result import logged_results_to_HBS_result

    result = logged_results_to_HBS_result(str(directory))
    with open(directory / "results.pkl", "wb") as handle:
        pickle.dump(result, handle)
    return directory


@pytest.fixture
def make_run_dir(tmp_path: Path) -> RunDirFactory:
    def make(name: str = "run", **options: Any) -> Path:
        return write_run_dir(tmp_path / name, **options)

    return make


@pytest.fixture
def make_pickle_run_dir(make_run_dir: RunDirFactory) -> RunDirFactory:
    def make(name: str = "run", *, keep_logs: bool = True, **options: Any) -> Path:
        directory = add_result_pickle(make_run_dir(name, **options))
        if not keep_logs:
            (directory / "configs.json").unlink()
            (directory / "results.json").unlink()
        return directory

    return make


def job(jobs: tuple[JobRecord, ...], config_id: tuple[int, int, int], budget: float) -> JobRecord:
    (found,) = [entry for entry in jobs if entry.config_id == config_id and entry.budget == budget]
    return found


# --- loading ----------------------------------------------------------------------------------------


def test_json_logs_load_into_exact_records(make_run_dir: RunDirFactory) -> None:
    run = load_run(make_run_dir())
    assert run.source == "configs.json + results.json"
    assert len(run.jobs) == len(JOBS)
    assert [entry.finished for entry in run.jobs] == [finished for *_, finished, _, _ in JOBS]
    assert run.time_origin == T0
    assert run.configs == CONFIGS
    assert run.config_info[(1, 0, 2)] == {"model_based_pick": False}
    assert run.budgets == (1.0, 3.0, 9.0)

    first = job(run.jobs, (0, 0, 0), 1.0)
    assert first == JobRecord(
        config_id=(0, 0, 0),
        budget=1.0,
        loss=0.5,
        status="ok",
        reason=None,
        info={"status": "ok", "reason": None, "test_error": 0.52},
        submitted=0.0,
        started=0.5,
        finished=2.0,
        exception=None,
    )
    assert first.test_error == 0.52

    crashed = job(run.jobs, (0, 0, 2), 1.0)
    assert (crashed.status, crashed.loss, crashed.info) == ("crashed", None, {})
    assert crashed.reason == "RuntimeError: CUDA out of memory"
    assert crashed.exception == CRASH_TRACEBACK

    failed = job(run.jobs, (0, 0, 3), 1.0)
    assert (failed.status, failed.reason, failed.loss) == ("failed", "diverged", 1.0)


def test_run_json_gives_the_metadata(make_run_dir: RunDirFactory) -> None:
    metadata = load_run(make_run_dir()).metadata
    assert metadata.optimizer == "hyperband"
    assert (metadata.min_budget, metadata.max_budget, metadata.eta) == (1.0, 9.0, 3.0)
    assert (metadata.seed, metadata.dataset, metadata.n_iterations, metadata.run_id) == (
        7,
        "mnist",
        2,
        "test",
    )


def test_pickle_and_json_logs_give_the_same_run(make_pickle_run_dir: RunDirFactory) -> None:
    directory = make_pickle_run_dir()
    from_pickle = load_run(directory)
    from_logs = load_run(directory, prefer="json")
    assert from_pickle.source == "results.pkl"
    assert from_logs.source == "configs.json + results.json"
    assert from_pickle.jobs == from_logs.jobs
    assert from_pickle.configs == from_logs.configs
    assert from_pickle.config_info == from_logs.config_info
    assert from_pickle.metadata == from_logs.metadata
    assert from_pickle.time_origin == pytest.approx(from_logs.time_origin)
    assert replace(summarize(from_pickle), source="") == replace(summarize(from_logs), source="")
    assert incumbent_trajectory(from_pickle) == incumbent_trajectory(from_logs)


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_pickle_with_numpy_values_loads_as_builtins(make_run_dir: RunDirFactory, protocol: int) -> None:
    """Stock HpBandSter keeps numpy budgets, losses and config values in its Result."""
    import numpy as np
    from hpbandster.core.result import logged_results_to_HBS_result

    directory = make_run_dir()
    result = logged_results_to_HBS_result(str(directory))
    for datum in result.data.values():
        datum.config = {name: np.str_(value) if isinstance(value, str) else np.float64(value)
                        for name, value in datum.config.items()}  # fmt: skip
        for table in (datum.results, datum.time_stamps, datum.exceptions):
            for budget in list(table):
                table[np.float64(budget)] = table.pop(budget)
        for outcome in datum.results.values():
            if outcome is not None:
                outcome["loss"] = np.float64(outcome["loss"])
    result.HB_config["budgets"] = np.array(result.HB_config["budgets"])
    (directory / "results.pkl").write_bytes(pickle.dumps(result, protocol=protocol))

    from_pickle, from_logs = load_run(directory), load_run(directory, prefer="json")
    assert from_pickle.source == "results.pkl"
    assert from_pickle.jobs == from_logs.jobs
    assert from_pickle.configs == from_logs.configs
    assert type(from_pickle.configs[(0, 0, 0)]["optimizer"]) is str
    assert all(type(job.budget) is float for job in from_pickle.jobs)


def test_plain_hpbandster_dir_has_unknown_optimizer(make_pickle_run_dir: RunDirFactory) -> None:
    directory = make_pickle_run_dir(run_json=False, keep_logs=False)
    run = load_run(directory)
    assert run.optimizer == "unknown"
    # Budgets and eta come from HpBandSter's own HB_config when there is no run.json.
    assert (run.metadata.min_budget, run.metadata.max_budget, run.metadata.eta) == (1.0, 9.0, 3.0)
    assert len(run.jobs) == len(JOBS)
    assert load_run(directory.parent / "run", prefer="json").source == "results.pkl"  # the only source


def test_json_only_never_opens_the_pickle(make_pickle_run_dir: RunDirFactory) -> None:
    logs_and_pickle = make_pickle_run_dir("both")
    assert load_run(logs_and_pickle, allow_pickle=False).source == "configs.json + results.json"
    only_pickle = make_pickle_run_dir("pickle", keep_logs=False)
    with pytest.raises(RunDirError, match="results.pkl is there but pickles are not loaded"):
        load_run(only_pickle, allow_pickle=False)


def test_not_a_run_dir_names_what_it_looked_for(tmp_path: Path) -> None:
    with pytest.raises(
        RunDirError, match=r"neither results\.pkl nor the JSON logs configs\.json/results\.json"
    ):
        load_run(tmp_path)
    with pytest.raises(RunDirError, match="no such directory"):
        load_run(tmp_path / "missing")
    (tmp_path / "file").write_text("")
    with pytest.raises(RunDirError, match="not a directory"):
        load_run(tmp_path / "file")
    with pytest.raises(ValueError, match="prefer"):
        load_run(tmp_path, prefer="csv")


def test_truncated_last_line_is_skipped_with_a_warning(
    make_run_dir: RunDirFactory, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="analysis"):
        run = load_run(make_run_dir(truncate_results=True))
    assert len(run.jobs) == len(JOBS)
    assert "results.json: ignoring line 11" in caplog.text


def test_corrupt_line_before_the_end_is_an_error(make_run_dir: RunDirFactory) -> None:
    directory = make_run_dir()
    lines = (directory / "results.json").read_text().splitlines(keepends=True)
    lines[2] = lines[2][:20] + "\n"
    (directory / "results.json").write_text("".join(lines))
    with pytest.raises(RunDirError, match=r"results\.json:3: corrupt line"):
        load_run(directory)


def test_result_without_config_line_still_loads(
    make_run_dir: RunDirFactory, caplog: pytest.LogCaptureFixture
) -> None:
    directory = make_run_dir()
    (directory / "configs.json").write_text("")
    with caplog.at_level(logging.WARNING, logger="analysis"):
        run = load_run(directory)
    assert len(run.jobs) == len(JOBS)
    assert run.configs[(0, 0, 0)] == {}
    assert "have results but no line in configs.json" in caplog.text


def test_corrupt_and_foreign_pickles_are_refused(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "results.pkl").write_bytes(b"\x80\x04not a pickle")
    with pytest.raises(RunDirError, match="corrupt pickle"):
        load_run(corrupt)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    # A class outside the allowlist is never built (a hostile pickle would name os.system here).
    (foreign / "results.pkl").write_bytes(pickle.dumps(Path("/etc")))
    with pytest.raises(RunDirError, match="refused to load this pickle.*pathlib"):
        load_run(foreign)
    not_a_result = tmp_path / "dict"
    not_a_result.mkdir()
    (not_a_result / "results.pkl").write_bytes(pickle.dumps({"data": 1}))
    with pytest.raises(RunDirError, match="not an HpBandSter Result"):
        load_run(not_a_result)


def test_non_finite_loss_without_status_counts_as_failed(make_run_dir: RunDirFactory) -> None:
    # Stock HpBandSter's json logger writes a NaN loss as NaN and a worker's bare result without status.
    jobs = [((0, 0, 0), 1.0, 0.0, 1.0, {"loss": math.nan, "info": {}}, None)]
    run = load_run(make_run_dir(jobs=jobs))
    (only,) = run.jobs
    assert (only.loss, only.status, only.reason) == (None, "failed", "non-finite loss nan")


def test_corrupt_run_json_is_an_error(make_run_dir: RunDirFactory) -> None:
    directory = make_run_dir()
    (directory / "run.json").write_text('{"optimizer": ')
    with pytest.raises(RunDirError, match=r"run\.json: corrupt"):
        load_run(directory)


# --- summary ----------------------------------------------------------------------------------------


def test_summary_counts_and_incumbent(make_run_dir: RunDirFactory) -> None:
    summary = summarize(load_run(make_run_dir()))
    assert summary.optimizer == "hyperband"
    assert (summary.n_jobs, summary.n_configs) == (10, 7)
    assert summary.runs_per_budget == {1.0: 4, 3.0: 3, 9.0: 3}
    assert [(entry.budget, entry.finite, entry.best_loss) for entry in summary.budgets] == [
        (1.0, 3, 0.30),
        (3.0, 3, 0.10),
        (9.0, 3, 0.12),
    ]
    assert summary.failures == (("crashed", 1), ("failed", 1))
    assert summary.wall_time == 35.0
    incumbent = summary.incumbent
    assert incumbent is not None
    assert (incumbent.config_id, incumbent.budget, incumbent.loss) == ((1, 0, 1), 9.0, 0.12)
    assert (incumbent.test_error, incumbent.finished) == (0.11, 30.0)
    assert incumbent.config == {"learning_rate": 0.02, "optimizer": "adamw"}


def test_format_summary_is_a_readable_table(make_run_dir: RunDirFactory) -> None:
    text = format_summary(summarize(load_run(make_run_dir())))
    assert "optimizer   hyperband (eta 3, seed 7, dataset mnist)" in text
    assert "failures    crashed 1, failed 1" in text
    assert "jobs        10 on 7 configurations, wall time 35.0 s" in text
    assert "(1, 0, 1) on budget 9: validation loss 0.1200, test error 0.1100" in text
    assert "learning_rate = 0.02" in text
    assert "optimizer     = 'adamw'" in text
    assert "re-dispatched" not in text


def test_summary_counts_jobs_re_dispatched_after_a_worker_died(make_run_dir: RunDirFactory) -> None:
    retried = ok(0.2, 0.2)
    retried["info"].update(attempts=2, retried_after=["Worker died unexpectedly."])
    jobs = [((0, 0, 0), 1.0, 0.0, 1.0, ok(0.4, 0.4), None), ((0, 0, 1), 1.0, 0.0, 2.0, retried, None)]
    summary = summarize(load_run(make_run_dir(jobs=jobs)))
    assert summary.redispatched == 1
    assert "failures    none; 1 job(s) re-dispatched after their worker died" in format_summary(summary)


def test_incumbent_falls_back_to_the_largest_budget_with_a_result(make_run_dir: RunDirFactory) -> None:
    jobs = [
        ((0, 0, 0), 1.0, 0.0, 1.0, ok(0.4, 0.4), None),
        ((0, 0, 1), 1.0, 0.0, 2.0, ok(0.3, 0.3), None),
        ((0, 0, 1), 3.0, 2.0, 3.0, None, "Worker died unexpectedly."),
    ]
    run = load_run(make_run_dir(jobs=jobs))
    best = find_incumbent(run)
    assert best is not None
    assert (best.config_id, best.budget) == ((0, 0, 1), 1.0)
    assert job(run.jobs, (0, 0, 1), 3.0).reason == "Worker died unexpectedly."


def test_run_without_finite_results(make_run_dir: RunDirFactory) -> None:
    jobs = [((0, 0, 0), 1.0, 0.0, 1.0, None, "boom")]
    run = load_run(make_run_dir(jobs=jobs))
    summary = summarize(run)
    assert summary.incumbent is None
    assert "incumbent   none" in format_summary(summary)
    trajectory = incumbent_trajectory(run)
    assert len(trajectory) == 0
    assert trajectory.end_time == 1.0


def test_empty_logs_summarize(make_run_dir: RunDirFactory) -> None:
    run = load_run(make_run_dir(jobs=[]))
    assert run.jobs == ()
    assert run.time_origin is None
    summary = summarize(run)
    assert (summary.n_jobs, summary.wall_time, summary.incumbent) == (0, 0.0, None)


# --- incumbent trajectories -------------------------------------------------------------------------


def assert_monotone(losses: tuple[float, ...], times: tuple[float, ...]) -> None:
    assert all(later < earlier for earlier, later in zip(losses, losses[1:], strict=False))
    assert all(later >= earlier for earlier, later in zip(times, times[1:], strict=False))


def test_max_budget_trajectory_is_exact(make_run_dir: RunDirFactory) -> None:
    trajectory = incumbent_trajectory(load_run(make_run_dir()), MAX_BUDGET)
    assert trajectory.times == (20.0, 30.0)
    assert trajectory.losses == (0.15, 0.12)
    assert trajectory.config_ids == ((0, 0, 0), (1, 0, 1))
    assert trajectory.budgets == (9.0, 9.0)
    assert trajectory.test_losses == (0.17, 0.11)
    assert trajectory.end_time == 35.0
    assert_monotone(trajectory.losses, trajectory.times)


def test_any_budget_trajectory_is_exact(make_run_dir: RunDirFactory) -> None:
    trajectory = incumbent_trajectory(load_run(make_run_dir()), ANY_BUDGET)
    assert trajectory.times == (2.0, 3.0, 8.0, 10.0, 20.0, 24.0)
    assert trajectory.losses == (0.50, 0.30, 0.25, 0.20, 0.15, 0.10)
    assert trajectory.config_ids == ((0, 0, 0), (0, 0, 1), (0, 0, 1), (0, 0, 0), (0, 0, 0), (1, 0, 0))
    assert trajectory.budgets == (1.0, 1.0, 3.0, 3.0, 9.0, 3.0)
    assert trajectory.test_losses == (0.52, 0.31, 0.27, 0.22, 0.17, 0.12)
    assert_monotone(trajectory.losses, trajectory.times)


def test_trajectory_ends_at_the_incumbent(make_run_dir: RunDirFactory) -> None:
    run = load_run(make_run_dir())
    for rule in (MAX_BUDGET, ANY_BUDGET):
        best = find_incumbent(run, rule)
        trajectory = incumbent_trajectory(run, rule)
        assert best is not None
        assert (trajectory.config_ids[-1], trajectory.budgets[-1]) == (best.config_id, best.budget)


def test_unknown_rule_is_refused(make_run_dir: RunDirFactory) -> None:
    with pytest.raises(ValueError, match="unknown incumbent rule"):
        incumbent_trajectory(load_run(make_run_dir()), "best")


# --- plots ------------------------------------------------------------------------------------------


def test_step_points_hold_the_last_value_until_the_end() -> None:
    assert step_points((1.0, 3.0), (0.5, 0.2), 7.0) == ([1.0, 3.0, 7.0], [0.5, 0.2, 0.2])
    xs, ys = step_points((1.0,), (None,), 1.0)
    assert xs == [1.0] and math.isnan(ys[0])
    assert step_points((), (), 5.0) == ([], [])


@pytest.mark.parametrize("suffix", [".png", ".svg", ".pdf"])
def test_plot_one_run(make_run_dir: RunDirFactory, tmp_path: Path, suffix: str) -> None:
    trajectory = incumbent_trajectory(load_run(make_run_dir()))
    path = plot_incumbents({"run": trajectory}, tmp_path / f"plot{suffix}", with_test=True)
    assert path == tmp_path / f"plot{suffix}"
    assert path.stat().st_size > 0


def test_plot_two_runs_and_an_empty_one(make_run_dir: RunDirFactory, tmp_path: Path) -> None:
    trajectories = {
        "a": incumbent_trajectory(load_run(make_run_dir("a")), ANY_BUDGET),
        "b": incumbent_trajectory(load_run(make_run_dir("b")), ANY_BUDGET),
        "crashed": incumbent_trajectory(load_run(make_run_dir("c", jobs=[JOBS[2]])), ANY_BUDGET),
    }
    path = plot_incumbents(trajectories, tmp_path / "two.png", log_scale=False)
    assert path.stat().st_size > 0


def test_plot_refuses_an_unknown_format(make_run_dir: RunDirFactory, tmp_path: Path) -> None:
    with pytest.raises(UnsupportedFormatError, match=r"\.png, \.svg, \.pdf"):
        plot_incumbents({}, tmp_path / "plot.jpeg")


# --- command line -----------------------------------------------------------------------------------


def test_cli_default_prints_summary_and_writes_the_plot(
    make_pickle_run_dir: RunDirFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = make_pickle_run_dir()
    assert main([str(directory)]) == 0
    out = capsys.readouterr().out
    assert "read from   configs.json + results.json" in out  # the JSON logs by default, not the pickle
    assert "(1, 0, 1) on budget 9" in out
    assert "learning_rate = 0.02" in out
    assert f"incumbent plot (max-budget): {directory / 'incumbents.png'}" in out
    assert (directory / "incumbents.png").stat().st_size > 0
    for name in ("configs.json", "results.json"):  # a named run dir with only a pickle: read from it
        (directory / name).unlink()
    assert main([str(directory)]) == 0
    assert "read from   results.pkl" in capsys.readouterr().out


def test_cli_several_run_dirs_plot_into_the_current_dir(
    make_run_dir: RunDirFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    first, second = make_run_dir("a"), make_run_dir("b")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main([str(first), str(second), "--rule", "any-budget", "--test", "--json-only"]) == 0
    out = capsys.readouterr().out
    assert out.count("run dir ") == 2
    assert "incumbent plot (any-budget): incumbents.png" in out
    assert (work / "incumbents.png").stat().st_size > 0
    assert main([str(first), str(second), "-o", str(tmp_path / "both.svg"), "--linear"]) == 0
    assert (tmp_path / "both.svg").stat().st_size > 0


def test_cli_subcommands(
    make_run_dir: RunDirFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = make_run_dir()
    assert main(["summary", str(directory)]) == 0
    out = capsys.readouterr().out
    assert "learning_rate = 0.02" in out
    assert not (directory / "incumbents.png").exists()

    assert main(["incumbent", str(directory), "--rule", "any-budget", "-o", str(tmp_path / "i.pdf")]) == 0
    out = capsys.readouterr().out
    assert "run: incumbent trajectory (any-budget), run ends at 35.0 s" in out
    assert "      24.0    0.1000    0.1200         3  (1, 0, 0)" in out
    assert (tmp_path / "i.pdf").stat().st_size > 0


def test_cli_run_dir_named_like_a_subcommand(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_run_dir(tmp_path / "summary")
    monkeypatch.chdir(tmp_path)
    assert main(["./summary"]) == 0
    assert (tmp_path / "summary" / "incumbents.png").exists()
    assert main(["summary", "summary"]) == 0
    assert "run dir     summary" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["{tmp}"], "not a run directory"),
        (["{tmp}/missing"], "no such directory"),
        (["summary", "{tmp}"], "not a run directory"),
        (["{run}", "-o", "{tmp}/plot.jpeg"], "cannot tell the figure format"),
        (["{pickle}", "--json-only"], "pickles are not loaded"),
    ],
)
def test_cli_errors_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], arguments: list[str], message: str
) -> None:
    pickled = add_result_pickle(write_run_dir(tmp_path / "pickled"))
    (pickled / "configs.json").unlink()
    (pickled / "results.json").unlink()
    places = {
        "tmp": str(tmp_path / "empty"),
        "run": str(write_run_dir(tmp_path / "run")),
        "pickle": str(pickled),
    }
    (tmp_path / "empty").mkdir()
    assert main([argument.format(**places) for argument in arguments]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert error.startswith("python -m analysis") and message in error


def test_cli_usage_errors_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert main(["--rule", "best", "x"]) == 2
    capsys.readouterr()
    assert main(["--help"]) == 0
    help_text = capsys.readouterr().out
    assert "pickles" in help_text and "can run code" in help_text and "--json-only" in help_text
    assert "summary" in help_text and "incumbent" in help_text
    assert main(["incumbent", "--help"]) == 0
    assert "--rule" in capsys.readouterr().out


def test_python_m_analysis_imports_no_torch_pyro_hpbandster_or_pyplot(
    make_pickle_run_dir: RunDirFactory,
) -> None:
    directory = make_pickle_run_dir()
    probe = (
        "import sys; from analysis.__main__ import main; code = main(sys.argv[1:]); "
        "bad = [m for m in ('torch', 'Pyro4', 'hpbandster', 'workers', 'launch', 'matplotlib.pyplot') "
        "if m in sys.modules]; "
        "print('BAD', bad); sys.exit(code)"
    )
    completed = subprocess.run(
        [sys.executable, "-c", probe, str(directory)],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    assert "BAD []" in completed.stdout
    completed = subprocess.run(
        [sys.executable, "-m", "analysis", str(directory.parent)],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 2
    assert completed.stderr.startswith("python -m analysis: error:")


def test_every_status_analysis_names_is_a_job_status() -> None:
    from analysis import data
    from hpo_service.records import JobStatus

    assert {data.CRASHED, data.OK} <= {status.value for status in JobStatus}
