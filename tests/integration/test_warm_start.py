"""BOHB's settings and ``--warm-start``: real masters on 127.0.0.1 with the fast fake workers, and the
pieces (budget mapping, space comparison, skipped values, recorded settings) on their own."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import ConfigSpace as CS
import numpy as np
import pytest
from hpbandster.optimizers.config_generators.bohb import BOHB as StockBOHBGenerator

from hpo_service import warm_start
from hpo_service.bohb_options import BohbOptions, bohb_options_from_args
from hpo_service.brackets import planned_jobs
from hpo_service.errors import SettingsError
from hpo_service.hpbandster.bohb_generator import FastBOHBGenerator
from hpo_service.hpbandster.optimizers import create_optimizer
from hpo_service.nameserver import LocalNameserver
from hpo_service.resume import logged_job, settings_fields
from hpo_service.space import load_space, write_space
from tests.conftest import ProcessRun, fake_worker_command, master_command

RUN_ID = "test-warm-start"
BUDGETS = ("--min-budget", "1", "--max-budget", "9", "--eta", "3")


def run_search(process_run: ProcessRun, run_dir: Path, *options: str) -> str:
    """One whole run with two fast fake workers; returns the master's log."""
    name = run_dir.name
    command = master_command(
        run_dir, RUN_ID, *BUDGETS, "--min-workers", "2", "--ping-interval", "1", *options
    )
    master = process_run.start(name, command)
    for index in range(2):
        worker = fake_worker_command(run_dir, RUN_ID, "--sleep", "0.02")
        process_run.start(f"{name}-worker{index}", worker)
    try:
        assert master.wait(timeout=240) == 0, process_run.log(name)
    except subprocess.TimeoutExpired:
        pytest.fail(f"run {name} hung; master log:\n{process_run.log(name)}")
    return process_run.log(name)


def logged(run_dir: Path, name: str) -> list[list[Any]]:
    return [json.loads(line) for line in (run_dir / name).read_text().splitlines()]


def model_picks(run_dir: Path) -> list[tuple[int, bool]]:
    """(iteration, model_based_pick) of each sampled configuration, in the order they were sampled."""
    return [(line[0][0], bool(line[2].get("model_based_pick"))) for line in logged(run_dir, "configs.json")]


def two_hyperparameter_space(path: Path) -> Path:
    """learning_rate (what the fake loss depends on) and dropout: a model after 6 results on a budget."""
    space = CS.ConfigurationSpace()
    space.add(CS.UniformFloatHyperparameter("learning_rate", 1e-4, 1e-1, log=True))
    space.add(CS.UniformFloatHyperparameter("dropout", 0.0, 0.5))
    write_space(space, path)
    return path


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(900)  # two or three whole runs, each up to 240 s on a busy machine
def test_a_warm_started_run_picks_from_its_model_at_once_and_logs_only_its_own_jobs(
    process_run: ProcessRun, tmp_path: Path
) -> None:
    # 27 random-search results on 9 epochs: enough for a model of the default space (11 hyperparameters).
    earlier = tmp_path / "earlier"
    run_search(process_run, earlier, "--optimizer", "randomsearch", "--n-iterations", "9", "--seed", "7")
    assert len(logged(earlier, "results.json")) == 27
    plain, warm = tmp_path / "plain", tmp_path / "warm"
    run_search(process_run, plain, "--optimizer", "bohb", "--n-iterations", "1")
    log = run_search(
        process_run, warm, "--optimizer", "bohb", "--n-iterations", "1", "--warm-start", str(earlier)
    )

    # Without a warm start the first iteration has 9 results on a budget, far from the 24 a model needs.
    assert not any(pick for _, pick in model_picks(plain))
    warm_picks = [pick for iteration, pick in model_picks(warm) if iteration == 0]
    assert len(warm_picks) == 9 and any(warm_picks), warm_picks
    # The earlier run's results are not this run's jobs.
    results = logged(warm, "results.json")
    assert len(results) == planned_jobs("bohb", 1, 9, 3, 1)
    own_ids = {tuple(line[0]) for line in logged(warm, "configs.json")}
    assert {tuple(line[0]) for line in results} <= own_ids
    earlier_configs = [line[1] for line in logged(earlier, "configs.json")]
    assert not any(line[1] in earlier_configs for line in logged(warm, "configs.json"))
    record = json.loads((warm / "run.json").read_text())["warm_start"]
    assert record["used"] == 27 and record["skipped"] == 0
    assert record["runs"][0]["run_dir"] == str(earlier.resolve())
    assert record["runs"][0]["budgets"] == {"9": 9.0}
    assert "warm start of BOHB's model from 1 run(s)" in log
    assert json.loads((plain / "run.json").read_text())["warm_start"] is None


def first_model_pick(run_dir: Path) -> int | None:
    picks = [pick for _, pick in model_picks(run_dir)]
    return picks.index(True) if True in picks else None


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(900)  # two or three whole runs, each up to 240 s on a busy machine
def test_fewer_min_points_in_model_move_the_first_model_pick_earlier(
    process_run: ProcessRun, tmp_path: Path
) -> None:
    space = two_hyperparameter_space(tmp_path / "space.json")
    common = ("--optimizer", "bohb", "--n-iterations", "3", "--space", str(space), "--random-fraction", "0")
    run_search(process_run, tmp_path / "many", *common, "--min-points-in-model", "6")
    run_search(process_run, tmp_path / "few", *common, "--min-points-in-model", "3")
    few, many = first_model_pick(tmp_path / "few"), first_model_pick(tmp_path / "many")
    assert few is not None and many is not None, (few, many)
    # 3 points: a model once 6 results are on budget 1 (inside the first 9 configurations); 6 points: 9.
    assert few < 9 <= many
    recorded = json.loads((tmp_path / "few" / "run.json").read_text())["bohb"]
    assert recorded["min_points_in_model"] == 3 and recorded["random_fraction"] == 0


def test_the_options_reach_the_config_generator(tmp_path: Path) -> None:
    options = BohbOptions(
        min_points_in_model=20, top_n_percent=30, num_samples=16, random_fraction=0.1,
        bandwidth_factor=2.0, min_bandwidth=0.01,
    )  # fmt: skip
    with LocalNameserver("127.0.0.1", 0) as address:
        optimizer = create_optimizer(
            "bohb", load_space("default", dataset="digits"), run_id="unit", min_budget=1, max_budget=9,
            eta=3, nameserver=address.host, nameserver_port=address.port, working_directory=str(tmp_path),
            **options.model_arguments(),
        )  # fmt: skip
        try:
            generator = optimizer.config_generator
            assert type(generator) is FastBOHBGenerator
            assert (generator.min_points_in_model, generator.top_n_percent, generator.num_samples) == (
                20,
                30,
                16,
            )
            assert (generator.random_fraction, generator.bw_factor, generator.min_bandwidth) == (
                0.1,
                2.0,
                0.01,
            )
        finally:
            optimizer.shutdown()


def job(index: int, rate: float, budget: float) -> Any:
    return logged_job([[0, 0, index], budget, {}, {"loss": abs(rate - 0.01), "info": {}}, None],
                      {"learning_rate": rate, "dropout": 0.1}, budget)  # fmt: skip


def test_a_warm_start_fits_every_budget_like_upstream_fits_its_last(tmp_path: Path) -> None:
    space = load_space(str(two_hyperparameter_space(tmp_path / "space.json")))
    jobs = [job(index, 10 ** (-1 - index / 4), 9.0) for index in range(8)]
    # HpBandSter's previous_result fits only the last result's budget: here 1, with too few results.
    prepared = warm_start.WarmStart([], [*jobs, job(8, 0.01, 1.0)])
    fast = FastBOHBGenerator(space)
    warm_start.feed(fast, prepared)
    assert not fast.kde_models
    np.random.seed(3)
    warm_start.fit_models(fast)
    assert list(fast.kde_models) == [9.0]
    stock = StockBOHBGenerator(space)
    np.random.seed(3)
    for number, item in enumerate(jobs, start=1):
        stock.new_result(item, update_model=number == len(jobs))
    for density in ("good", "bad"):
        assert np.array_equal(fast.kde_models[9.0][density].data, stock.kde_models[9.0][density].data)
        assert np.array_equal(fast.kde_models[9.0][density].bw, stock.kde_models[9.0][density].bw)


def write_old_run(run_dir: Path, **description: Any) -> Path:
    """A run dir as the master leaves it, run.json with ``description`` on top of a BOHB run's fields."""
    run_dir.mkdir()
    record = {"run_id": "old", "optimizer": "bohb", "min_budget": 1.0, "max_budget": 9.0, "eta": 3.0,
              "n_iterations": 1, "seed": 0, "dataset": "digits", "space": "space.json"}  # fmt: skip
    record.update(description)
    (run_dir / "run.json").write_text(json.dumps(record))
    two_hyperparameter_space(run_dir / "configspace.json")
    return run_dir


def test_the_options_are_kept_on_resume_and_an_old_run_json_resumes_with_defaults(tmp_path: Path) -> None:
    old = write_old_run(tmp_path / "old")
    assert settings_fields(old, {})["bohb"] == BohbOptions()
    recorded = BohbOptions(min_points_in_model=5, top_n_percent=25, random_fraction=0.0).to_record()
    new = write_old_run(tmp_path / "new", bohb=recorded)
    assert settings_fields(new, {})["bohb"] == BohbOptions(
        min_points_in_model=5, top_n_percent=25, random_fraction=0.0
    )
    assert settings_fields(new, {"top_n_percent": 25, "random_fraction": 0.0})["bohb"].top_n_percent == 25
    with pytest.raises(SettingsError, match="--random-fraction 0.5 differs from the run's 0.0"):
        settings_fields(new, {"random_fraction": 0.5})


def test_a_resumed_run_feeds_its_warm_start_again_or_refuses_when_it_is_gone(tmp_path: Path) -> None:
    source = write_old_run(tmp_path / "source")
    record = {"runs": [{"run_dir": str(source.resolve()), "results": 0, "used": 0}], "used": 0, "skipped": 0}
    run = write_old_run(tmp_path / "run", warm_start=record)
    assert settings_fields(run, {})["bohb"].warm_start == (source.resolve(),)
    with pytest.raises(SettingsError, match="--warm-start differs from the run's"):
        settings_fields(run, {"warm_start": [tmp_path / "elsewhere"]})
    (source / "run.json").unlink()
    (source / "configspace.json").unlink()
    source.rmdir()
    with pytest.raises(SettingsError, match="its warm-start run .* is gone"):
        settings_fields(run, {})


def test_budgets_map_to_the_nearest_within_half_a_rung() -> None:
    budgets = warm_start.run_budgets(1, 9, 3)
    assert budgets == [1.0, 3.0, 9.0]
    assert warm_start.map_budget(3.0, budgets, 3) == 3.0
    assert warm_start.map_budget(5.0, budgets, 3) == 3.0  # log distance 0.51 to 3, 0.59 to 9
    assert warm_start.map_budget(15.0, budgets, 3) == 9.0  # within sqrt(3) of 9
    assert warm_start.map_budget(27.0, budgets, 3) is None
    assert warm_start.map_budget(0.6, budgets, 3) == 1.0
    assert warm_start.map_budget(0.5, budgets, 3) is None  # a factor 2 > sqrt(3) below 1


def test_values_outside_the_new_space_are_skipped_by_reason(tmp_path: Path) -> None:
    earlier = tmp_path / "earlier"
    write_old_run(earlier)
    configs, results = [], []
    values = [(1e-2, 0.1), (0.5, 0.1), (1e-3, 0.2), (1e-3, 0.3)]  # 0.5: beyond the new space's learning rate
    for index, (rate, dropout) in enumerate(values):
        configs.append([[0, 0, index], {"learning_rate": rate, "dropout": dropout}, {}])
        for budget in (1.0, 27.0):  # 27: more than half a rung above the new run's 9
            results.append([[0, 0, index], budget, {}, {"loss": 0.1 * index, "info": {}}, None])
    results.append([[0, 0, 2], 3.0, {}, None, "worker died"])  # crashed: fed as crashed
    (earlier / "configs.json").write_text("".join(json.dumps(line) + "\n" for line in configs))
    (earlier / "results.json").write_text("".join(json.dumps(line) + "\n" for line in results))
    space = CS.ConfigurationSpace()
    space.add(CS.UniformFloatHyperparameter("learning_rate", 1e-4, 1e-1, log=True))
    space.add(CS.CategoricalHyperparameter("dropout", [0.1, 0.2]))
    with pytest.raises(SettingsError, match="'dropout' is a UniformFloatHyperparameter"):
        warm_start.prepare([earlier], space, [1.0, 3.0, 9.0], 3)
    narrow = CS.ConfigurationSpace()
    narrow.add(CS.UniformFloatHyperparameter("learning_rate", 1e-4, 1e-1, log=True))
    narrow.add(CS.UniformFloatHyperparameter("dropout", 0.0, 0.25))
    prepared = warm_start.prepare([earlier], narrow, [1.0, 3.0, 9.0], 3)
    (source,) = prepared.sources
    assert source.skipped == {"out of range": 2, "budget 27 beyond this run's budgets": 4}
    assert source.used == 3 and len(prepared.jobs) == 3
    assert source.budgets == {"1": 1.0, "27": None, "3": 3.0}
    assert [job.result for job in prepared.jobs if job.kwargs["budget"] == 3.0] == [None]


def with_results(run_dir: Path) -> Path:
    """Three results on budget 1 in ``run_dir``'s logs."""
    rates = [0.1, 0.01, 0.001]
    configs = [
        [[0, 0, index], {"learning_rate": rate, "dropout": 0.1}, {}] for index, rate in enumerate(rates)
    ]
    results = [[[0, 0, index], 1.0, {}, {"loss": 0.1 * index, "info": {}}, None] for index in range(3)]
    (run_dir / "configs.json").write_text("".join(json.dumps(line) + "\n" for line in configs))
    (run_dir / "results.json").write_text("".join(json.dumps(line) + "\n" for line in results))
    return run_dir


def test_launch_local_slurm_and_the_container_pass_the_options_to_the_master(tmp_path: Path) -> None:
    from hpo_service.__main__ import build_parser as master_parser
    from launch import container, slurm
    from launch import local as launch_local

    def given_to_master(arguments: list[str]) -> BohbOptions:
        return bohb_options_from_args(master_parser().parse_args(arguments))

    earlier = with_results(write_old_run(tmp_path / "earlier"))
    space = str(earlier / "configspace.json")
    options = ["--space", space, "--top-n-percent", "30", "--random-fraction", "0.25"]
    options += ["--warm-start", str(earlier)]
    expected = BohbOptions(top_n_percent=30, random_fraction=0.25, warm_start=(earlier,))
    local = launch_local.settings_from_args(
        launch_local.build_parser().parse_args(["--run-dir", str(tmp_path / "run"), *options])
    )
    assert local.spec.bohb == expected and given_to_master(local.master_command()[3:]) == expected
    script = slurm.settings_from_args(
        slurm.build_parser().parse_args(["-o", "job.sh", "--run-dir", str(tmp_path / "r"), *options])
    )
    assert given_to_master(slurm.master_arguments(script.master)[2:]) == expected
    environment = {"HPO_RUN_ID": "x", "HPO_ADVERTISE_HOST": "10.0.0.5", "HPO_WARM_START": "sweep-1 /data/old",
                   "HPO_TOP_N_PERCENT": "30", "HPO_MIN_POINTS_IN_MODEL": "20"}  # fmt: skip
    from_environment = given_to_master(container.master_command(environment)[3:])
    assert from_environment.warm_start == (Path("/runs/sweep-1"), Path("/data/old"))
    assert (from_environment.top_n_percent, from_environment.min_points_in_model) == (30, 20)


def test_a_resumed_warm_started_run_feeds_both_and_logs_neither_again(tmp_path: Path) -> None:
    from hpo_service import resume
    from hpo_service.hpbandster.result_log import JsonResultLogger
    from hpo_service.master import prepare_model

    source = write_old_run(tmp_path / "source")
    rates = [10 ** (-1 - index / 3) for index in range(8)]
    configs = [
        [[0, 0, index], {"learning_rate": rate, "dropout": 0.2}, {}] for index, rate in enumerate(rates)
    ]
    results = [[line[0], 9.0, {}, {"loss": abs(line[1]["learning_rate"] - 0.01), "info": {}}, None]
               for line in configs]  # fmt: skip
    (source / "configs.json").write_text("".join(json.dumps(line) + "\n" for line in configs))
    (source / "results.json").write_text("".join(json.dumps(line) + "\n" for line in results))
    run_dir = with_results(write_old_run(tmp_path / "run"))
    logged_run = resume.load_run(run_dir)
    space = load_space(str(run_dir / "configspace.json"))
    warm = warm_start.prepare([source], space, warm_start.run_budgets(1, 9, 3), 3)
    before = (run_dir / "results.json").read_text()
    with LocalNameserver("127.0.0.1", 0) as address:
        optimizer = create_optimizer(
            "bohb", space, run_id="resume", min_budget=1.0, max_budget=9.0, eta=3.0,
            nameserver=address.host, nameserver_port=address.port, working_directory=str(run_dir),
        )  # fmt: skip
        try:
            result_log = resume.appending_logger(JsonResultLogger, run_dir, logged_run.config_ids())
            restored = prepare_model(optimizer, logged_run, warm, result_log, 1.0)
            generator = optimizer.config_generator
            assert restored is not None and restored.results == 3
            assert (len(generator.configs[1.0]), len(generator.configs[9.0])) == (3, 8)
            assert list(generator.kde_models) == [9.0]  # fitted although the last result fed was on 1
        finally:
            optimizer.shutdown()
    assert (run_dir / "results.json").read_text() == before


def test_a_grid_warm_starts_with_its_seeds_dropped_and_its_budget_mapped(tmp_path: Path) -> None:
    from tests.support.sweep_runs import write_study_run

    grid = write_study_run(
        tmp_path / "grid", {"learning_rate": [0.1, 0.01, 0.001], "optimizer": ["sgd", "adam"]}, kind="grid",
        epochs=5, loss=lambda config, seed: None if config["learning_rate"] == 0.1 and seed == 1 else 0.1,
    )  # fmt: skip
    space = load_space(str(grid / "configspace.json"))
    prepared = warm_start.prepare([grid], space, warm_start.run_budgets(1, 9, 3), 3)
    (source,) = prepared.sources
    assert (source.results, source.used, source.skipped) == (12, 12, {})
    assert source.budgets == {"5": 3.0}  # 5 epochs: nearer to 3 than to 9 in log space
    assert all("seed" not in job.kwargs["config"] and job.kwargs["budget"] == 3.0 for job in prepared.jobs)
    assert sum(job.result is None for job in prepared.jobs) == 2  # crashed, fed as crashed
    assert "12 of 12 results (budgets 5 -> 3)" in prepared.summary()
