"""Sweeps and grids before anything runs: value parsing, plans, their refusals, and --space-from-sweep."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import ConfigSpace as CS
import pytest

from hpo_service.errors import SettingsError
from hpo_service.settings import MasterSettings
from hpo_service.space import load_space
from hpo_service.sweeps.narrow import narrow_space, sweep_scores
from hpo_service.sweeps.options import SweepOptions, add_sweep_arguments, sweep_options_from_args
from hpo_service.sweeps.plan import build_plan
from hpo_service.sweeps.space_edit import prune
from hpo_service.sweeps.values import parse_values
from tests.support.sweep_runs import write_study_run

DIGITS = (1, 8, 8)


@pytest.fixture(scope="module")
def space() -> CS.ConfigurationSpace:
    return load_space("default", dataset="digits")


def plan_for(space: CS.ConfigurationSpace, kind: str = "sweep", **options: object):  # type: ignore[no-untyped-def]
    return build_plan(space, SweepOptions(**options), kind=kind, seed=0, budget=5, input_shape=DIGITS)  # type: ignore[arg-type]


# --- values -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "spec", "expected"),
    [
        ("learning_rate", "0.1,0.01,1e-3", (0.1, 0.01, 0.001)),
        ("learning_rate", "log:1e-4:1e-1:4", (0.0001, 0.001, 0.01, 0.1)),
        ("dropout", "lin:0:0.5:3", (0.0, 0.25, 0.5)),
        ("batch_size", "log:16:256:5", (16, 32, 64, 128, 256)),
        ("batch_size", "32,64.0", (32, 64)),
        ("kernel_size", "5,3", (5, 3)),
        ("optimizer", "adam,sgd", ("adam", "sgd")),
    ],
)
def test_values_are_parsed_to_the_hyperparameters_type(
    space: CS.ConfigurationSpace, name: str, spec: str, expected: tuple[object, ...]
) -> None:
    values = parse_values(space[name], spec, "--vary")
    assert values == pytest.approx(expected) if isinstance(expected[0], float) else values == expected
    assert [type(value) for value in values] == [type(value) for value in expected]


def test_boolean_choices_take_words() -> None:
    flag = CS.Categorical("batch_norm", [False, True])
    assert parse_values(flag, "true,off", "--vary") == (True, False)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"vary": ("learning_rate=0.5",)},
            "--vary learning_rate=0.5: outside the space's range [0.0001, 0.1]",
        ),
        ({"vary": ("kernel_size=4",)}, "--vary kernel_size=4: not one of the space's choices (3, 5)"),
        ({"vary": ("batch_size=12.5",)}, "--vary batch_size=12.5: not an integer"),
        ({"vary": ("learning_rate=fast",)}, "--vary learning_rate=fast: not a number"),
        ({"vary": ("lr=0.1,0.1",)}, "--vary learning_rate: value 0.1 is given twice"),
        ({"vary": ("lr=0.1", "lr=0.01")}, "--vary learning_rate: given twice"),
        ({"vary": ("lr",)}, "--vary 'lr': expected NAME=VALUE"),
        ({"vary": ("depth=1,2",)}, "--vary depth: no such hyperparameter in the space; it has batch_size,"),
        ({"vary": ("optimizer=log:1:2:3",)}, "spaced values need a numeric range"),
        ({"vary": ("lr=log:0:1:3",)}, "log spacing needs LOW > 0"),
        ({"vary": ("batch_size=log:16:20:6",)}, "6 values do not stay distinct as integers"),
        ({"vary": ()}, "--optimizer sweep needs at least one --vary"),
        ({"vary": ("lr=0.1",), "base": ("seed=3",)}, "--base seed: the seeds come from --seed and --repeats"),
        (
            {"vary": ("momentum=0.5,0.9",), "base": ("optimizer=adam",)},
            "--vary momentum: inactive in the base configuration (momentum needs optimizer == 'sgd'; here "
            "optimizer='adam'); set its parent with --base",
        ),
        (
            {"vary": ("lr=0.1",), "base": ("optimizer=adam", "momentum=0.5")},
            "--base momentum: inactive in the base configuration",
        ),
        (
            {"vary": ("lr=log:1e-4:1e-1:101",)},
            "sweep of 101 configurations x 1 repeat = 101 jobs is above the limit of 100; pass --force",
        ),
    ],
)
def test_a_bad_study_is_refused_in_one_line(
    space: CS.ConfigurationSpace, options: dict[str, object], message: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        plan_for(space, **options)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_force_and_max_jobs_lift_the_limit(space: CS.ConfigurationSpace) -> None:
    assert plan_for(space, vary=("lr=log:1e-4:1e-1:101",), force=True).job_count == 101
    assert plan_for(space, vary=("lr=log:1e-4:1e-1:101",), max_jobs=101).job_count == 101


# --- plans ------------------------------------------------------------------------------------------


def test_a_grid_holds_every_combination_once_per_seed(space: CS.ConfigurationSpace) -> None:
    plan = plan_for(space, "grid", vary=("lr=0.1,0.01", "batch_size=16,32,64"), repeats=2)
    jobs = list(plan.jobs())
    assert plan.job_count == len(jobs) == 12
    assert plan.seeds == (0, 1)
    pairs = [(job.config["learning_rate"], job.config["batch_size"], job.config["seed"]) for job in jobs]
    assert len(set(pairs)) == 12
    # Repeat by repeat: every configuration on seed 0 first.
    assert [job.config["seed"] for job in jobs] == [0] * 6 + [1] * 6
    first = jobs[0]
    assert first.config == {**plan.base, "learning_rate": 0.1, "batch_size": 16, "seed": 0}
    assert first.info["sweep"] == {
        "kind": "grid",
        "values": {"learning_rate": 0.1, "batch_size": 16},
        "panels": ["learning_rate", "batch_size"],
        "repeat": 0,
        "seed": 0,
    }


def test_sweeps_vary_one_at_a_time_and_share_the_base_point(space: CS.ConfigurationSpace) -> None:
    plan = plan_for(space, vary=("lr=0.1,0.01", "optimizer=sgd,adam"), base=("batch_size=32",), repeats=3)
    assert plan.seeds == (0, 1, 2)
    assert plan.base["batch_size"] == 32
    # lr=0.01 with sgd is the base point of both sweeps: it runs once per seed and counts for both.
    assert len(plan.configurations) == 3
    shared = [item for item in plan.configurations if len(item.panels) == 2]
    assert len(shared) == 1
    assert dict(shared[0].values) == {"learning_rate": 0.01, "optimizer": "sgd"}
    adam = next(item for item in plan.configurations if item.values.get("optimizer") == "adam")
    assert "momentum" not in adam.config  # switched off by the varied value


def test_values_that_switch_hyperparameters_on_give_them_the_default(space: CS.ConfigurationSpace) -> None:
    plan = plan_for(space, vary=("conv_layers=1,3",))
    by_layers = {item.config["conv_layers"]: item.config for item in plan.configurations}
    assert "filters_2" not in by_layers[1]
    assert by_layers[3]["filters_3"] == space["filters_3"].default_value


def test_grid_points_with_an_inactive_varied_value_are_refused(space: CS.ConfigurationSpace) -> None:
    with pytest.raises(SettingsError, match="grid point optimizer=adam, momentum=0.5: momentum is inactive"):
        plan_for(space, "grid", vary=("optimizer=sgd,adam", "momentum=0.5,0.9"))


def test_unbuildable_architectures_are_refused_with_the_reason() -> None:
    lenet5 = load_space("lenet5", dataset="digits")
    with pytest.raises(SettingsError, match="stride=2, conv_layers=3: .*collapses below 1x1"):
        plan_for(lenet5, "grid", vary=("stride=1,2", "conv_layers=3"), base=("kernel_size=1",))


def test_the_plan_record_says_what_analysis_needs(space: CS.ConfigurationSpace) -> None:
    record = plan_for(space, vary=("lr=0.1,0.01",), repeats=2).to_dict()
    assert record["varied"] == {"learning_rate": [0.1, 0.01]}
    assert (record["kind"], record["repeats"], record["seeds"], record["budget"], record["jobs"]) == (
        "sweep", 2, [0, 1], 5.0, 4,
    )  # fmt: skip


# --- options and settings ---------------------------------------------------------------------------


def test_options_round_trip_through_the_command_line(tmp_path: Path) -> None:
    options = SweepOptions(
        base=("optimizer=adam",), vary=("lr=0.1,0.01", "batch_size=log:16:64:3"), repeats=3, max_jobs=7,
        force=True, space_from_sweep=tmp_path, tolerance=0.05,
    )  # fmt: skip
    parser = argparse.ArgumentParser()
    add_sweep_arguments(parser)
    assert sweep_options_from_args(parser.parse_args(options.to_arguments())) == options
    # compose passes several assignments in one variable.
    parsed = parser.parse_args(["--vary", "lr=0.1,0.01 kernel_size=3,5", "--base", "optimizer=adam lr=0.1"])
    assert sweep_options_from_args(parsed).vary == ("lr=0.1,0.01", "kernel_size=3,5")
    assert sweep_options_from_args(parsed).base == ("optimizer=adam", "lr=0.1")


def test_compose_variables_reach_the_masters_options() -> None:
    from hpo_service.__main__ import build_parser
    from launch.container import master_command

    environment = {"HPO_OPTIMIZER": "sweep", "HPO_VARY": "lr=0.1,0.01 kernel_size=3,5", "HPO_REPEATS": "3",
                   "HPO_BASE": "optimizer=adam", "HPO_ADVERTISE_HOST": "10.0.0.2"}  # fmt: skip
    command = master_command(environment)
    options = sweep_options_from_args(build_parser().parse_args(command[3:]))
    assert options == SweepOptions(
        base=("optimizer=adam",), vary=("lr=0.1,0.01", "kernel_size=3,5"), repeats=3
    )


def test_settings_of_a_study_use_one_budget_and_one_iteration(tmp_path: Path) -> None:
    settings = MasterSettings(
        tmp_path, "s", optimizer="sweep", min_budget=1, max_budget=5, n_iterations=8,
        sweep=SweepOptions(vary=("lr=0.1,0.01",)),
    )  # fmt: skip
    assert (settings.min_budget, settings.max_budget, settings.n_iterations) == (5, 5, 1)


def test_study_options_without_a_study_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="apply to --optimizer sweep or grid only"):
        MasterSettings(tmp_path, "s", optimizer="bohb", sweep=SweepOptions(vary=("lr=0.1",)))
    with pytest.raises(SettingsError, match="--repeats must be at least 1"):
        SweepOptions(repeats=0)


# --- --space-from-sweep -----------------------------------------------------------------------------


def test_scores_are_mean_final_errors_per_value(tmp_path: Path) -> None:
    run = write_study_run(tmp_path / "s", {"learning_rate": [0.1, 0.01, 0.001, 0.0001]}, seeds=(0, 1))
    scores = {score.value: score for score in sweep_scores(run)["learning_rate"]}
    assert scores[0.01].mean_error == pytest.approx(0.055)
    assert scores[0.1].mean_error == pytest.approx(0.305)
    assert scores[0.01].jobs == 2


def test_a_numeric_range_narrows_to_the_neighbours_of_the_good_values(
    space: CS.ConfigurationSpace, tmp_path: Path
) -> None:
    run = write_study_run(tmp_path / "s", {"learning_rate": [0.1, 0.01, 0.001, 0.0001]})
    narrowed = narrow_space(space, run, tolerance=0.02).space
    rate = narrowed["learning_rate"]
    assert (rate.lower, rate.upper, rate.log, rate.default_value) == pytest.approx((0.001, 0.1, True, 0.01))
    # 0.001 is within 0.06 of the best too: the range reaches down to its neighbour 0.0001.
    wider = narrow_space(space, run, tolerance=0.06).space["learning_rate"]
    assert (wider.lower, wider.upper) == pytest.approx((0.0001, 0.1))
    assert narrowed["batch_size"].upper == space["batch_size"].upper  # not varied: untouched


def test_a_categorical_keeps_its_good_and_untested_choices(
    space: CS.ConfigurationSpace, tmp_path: Path
) -> None:
    run = write_study_run(tmp_path / "s", {"optimizer": ["sgd", "adam"], "kernel_size": [3]})
    narrowing = narrow_space(space, run, tolerance=0.01)
    narrowed = narrowing.space
    # adam is 0.02 worse: sgd is all that is left, a constant; momentum's condition always holds now.
    assert isinstance(narrowed["optimizer"], CS.Constant)
    assert narrowed["optimizer"].value == "sgd"
    assert "momentum" in narrowed and not narrowed.parent_conditions_of["momentum"]
    assert list(narrowed["kernel_size"].choices) == [3, 5]  # 5 was not tested: kept
    assert any(
        change.startswith("optimizer: {'sgd', 'adam'} -> constant 'sgd'") for change in narrowing.changes
    )
    narrowed.sample_configuration(20)


def test_a_parent_narrowed_away_from_a_condition_drops_its_child(
    space: CS.ConfigurationSpace, tmp_path: Path
) -> None:
    def adam_better(config: dict[str, object], seed: int) -> float:
        return 0.05 if config["optimizer"] == "adam" else 0.2

    run = write_study_run(tmp_path / "s", {"optimizer": ["sgd", "adam"]}, loss=adam_better)  # type: ignore[arg-type]
    narrowed = narrow_space(space, run, tolerance=0.02).space
    assert narrowed["optimizer"].value == "adam"
    assert "momentum" not in narrowed


def test_forbidden_clauses_survive_narrowing(tmp_path: Path) -> None:
    lenet5 = load_space("lenet5", dataset="digits")
    run = write_study_run(tmp_path / "s", {"kernel_size": [3]})
    narrowed = narrow_space(lenet5, run, tolerance=0.02).space
    assert len(narrowed.forbidden_clauses) == len(lenet5.forbidden_clauses)
    for config in narrowed.sample_configuration(50):
        config.check_valid_configuration()


def test_crashed_jobs_do_not_count_and_a_run_dir_without_a_plan_is_refused(
    space: CS.ConfigurationSpace, tmp_path: Path
) -> None:
    def crash_the_best(config: dict[str, object], seed: int) -> float | None:
        return None if config["learning_rate"] == 0.01 else 0.2

    run = write_study_run(tmp_path / "s", {"learning_rate": [0.1, 0.01]}, loss=crash_the_best)  # type: ignore[arg-type]
    assert [score.value for score in sweep_scores(run)["learning_rate"]] == [0.1]
    (tmp_path / "plain").mkdir()
    with pytest.raises(SettingsError, match="no sweep.json; not a sweep or grid run dir"):
        narrow_space(space, tmp_path / "plain", 0.02)


def test_prune_decides_conditions_and_forbidden_clauses() -> None:
    def number(name: str, kind: str = "uniform_float", low: float = 0, high: float = 1) -> dict[str, object]:
        return {"type": kind, "name": name, "lower": low, "upper": high, "default_value": low, "log": False}

    document = {
        "hyperparameters": [
            {"type": "constant", "name": "a", "value": "x"},
            number("layers", "uniform_int", 2, 3), number("c"), number("d"), number("e"),
        ],
        "conditions": [
            {"type": "AND", "child": "c", "conditions": [
                {"type": "EQ", "child": "c", "parent": "a", "value": "x"},
                {"type": "GT", "child": "c", "parent": "layers", "value": 2},
            ]},
            {"type": "GT", "child": "d", "parent": "layers", "value": 1},
            {"type": "IN", "child": "e", "parent": "a", "values": ["y", "z"]},
        ],
        "forbiddens": [
            {"type": "AND", "clauses": [
                {"type": "EQUALS", "name": "a", "value": "x"},
                {"type": "IN", "name": "layers", "values": [1, 3]},
            ]},
            {"type": "EQUALS", "name": "e", "value": 0.5},
        ],
    }  # fmt: skip
    pruned = prune(document)
    assert [entry["name"] for entry in pruned["hyperparameters"]] == ["a", "layers", "c", "d"]
    assert pruned["conditions"] == [{"type": "GT", "child": "c", "parent": "layers", "value": 2}]
    assert pruned["forbiddens"] == [
        {"type": "AND", "clauses": [
            {"type": "EQUALS", "name": "a", "value": "x"},
            {"type": "IN", "name": "layers", "values": [3]},
        ]},
    ]  # fmt: skip
    assert not math.isnan(CS.ConfigurationSpace.from_serialized_dict(pruned).sample_configuration()["layers"])
