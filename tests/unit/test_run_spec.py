"""A run's options are defined once (hpo_service.run_spec) and every way of starting a run offers and hands on
the same ones: the master's CLI, launch.local, launch.slurm and the container roles' HPO_* variables."""

from __future__ import annotations

import argparse
import json
import re
import shlex
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from hpo_service import __main__ as master_cli
from hpo_service.bohb_options import BohbOptions
from hpo_service.records import RunDescription
from hpo_service.resume import FIXED_BY_RUN
from hpo_service.run_spec import ENVIRONMENT, OPTIONS, RunSpec, add_run_arguments, spec_from_args
from hpo_service.sweeps.options import SweepOptions
from launch import container, local, slurm
from tests.conftest import REPO


def run_actions(parser: argparse.ArgumentParser) -> dict[str, tuple[Any, ...]]:
    """Option string -> what defines it, for the options a run-spec parser has."""
    reference = argparse.ArgumentParser()
    add_run_arguments(reference)
    flags = {flag for action in reference._actions for flag in action.option_strings} - {"-h", "--help"}
    return {
        flag: (action.dest, action.default, action.type, action.choices, action.help, action.nargs)
        for action in parser._actions
        for flag in action.option_strings
        if flag in flags
    }


PARSERS = {
    "python -m hpo_service": master_cli.build_parser,
    "launch.local": local.build_parser,
    "launch.slurm": slurm.build_parser,
}


@pytest.mark.parametrize("name", PARSERS)
def test_each_launcher_offers_every_run_option_as_defined_once(name: str) -> None:
    reference = argparse.ArgumentParser()
    add_run_arguments(reference)
    expected = run_actions(reference)
    offered = run_actions(PARSERS[name]())
    assert offered == expected
    assert {"--max-budget", "--no-continuation", "--vary", "--warm-start"} <= set(offered)


def test_the_defaults_of_the_options_are_the_spec_defaults() -> None:
    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    assert spec_from_args(parser.parse_args([])) == RunSpec()
    assert (
        master_cli.settings_from_args(master_cli.build_parser().parse_args(["--insecure"])).optimizer
        == "bohb"
    )


def unusual_spec(tmp_path: Path, with_paths: bool = False) -> RunSpec:
    """A BOHB spec (the BOHB options apply to it only) with floats that ``%g`` would round and every other
    value changed (the paths, which launchers check are real run dirs, only ``with_paths``)."""
    earlier = tmp_path / "earlier"
    earlier.mkdir(exist_ok=True)
    spec = RunSpec(
        optimizer="bohb",
        min_budget=1.0 / 3.0 * 4.0,
        max_budget=12.345678901,
        eta=2.5,
        n_iterations=3,
        seed=7,
        space="lenet-small",
        dataset="mnist",
        train_limit=500,
        continuation=False,
        bohb=BohbOptions(min_points_in_model=9, random_fraction=1 / 7),
        sweep=SweepOptions(tolerance=0.123456789),
    )
    if not with_paths:
        return spec
    return replace(
        spec,
        bohb=replace(spec.bohb, warm_start=(earlier,)),
        sweep=replace(spec.sweep, space_from_sweep=earlier),
    )


def test_to_arguments_round_trips_exactly(tmp_path: Path) -> None:
    spec = unusual_spec(tmp_path, with_paths=True)
    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    assert spec_from_args(parser.parse_args(spec.to_arguments())) == spec
    assert spec_from_args(parser.parse_args(RunSpec().to_arguments())) == RunSpec()


def master_spec(command: list[str]) -> RunSpec:
    """The spec a master started with ``command`` (``... -m hpo_service ARGS``) would run."""
    arguments = command[command.index("hpo_service") + 1 :]
    return spec_from_args(master_cli.build_parser().parse_args(arguments))


def test_launch_local_hands_the_master_its_spec_unchanged(tmp_path: Path) -> None:
    spec = unusual_spec(tmp_path)
    settings = local.LaunchSettings(
        n_workers=1, run_dir=tmp_path / "run", run_id="r", spec=spec, data_dir=tmp_path, download=False,
        device="cpu", host="127.0.0.1", verbose=False,
    )  # fmt: skip
    assert master_spec(settings.master_command()) == spec
    assert RunSpec.of(settings.master_settings()) == spec


def test_slurm_hands_the_master_its_spec_unchanged(tmp_path: Path) -> None:
    spec = unusual_spec(tmp_path)
    arguments = [
        "-o",
        str(tmp_path / "job.sh"),
        "--run-dir",
        str(tmp_path / "run"),
        "--data-dir",
        str(tmp_path),
    ]
    args = slurm.build_parser().parse_args(arguments + spec.to_arguments())
    settings = slurm.settings_from_args(args)
    master_line = next(
        line for line in slurm.sbatch_script(settings).splitlines() if "-m hpo_service " in line
    )
    words = shlex.split(master_line)  # srun ... bash -c 'exec python -m hpo_service ... --host "$(...)"' &
    inner = shlex.split(words[words.index("-c") + 1])
    assert master_spec(inner[: inner.index("--host")]) == spec


def test_every_run_option_has_its_variable_in_the_container_compose_and_env_example() -> None:
    compose = (REPO / "docker-compose.yml").read_text()
    example = (REPO / ".env.example").read_text()
    for option in OPTIONS:
        assert ENVIRONMENT[f"HPO_{option.field.upper()}"] == option.flag
    for name, flag in ENVIRONMENT.items():
        assert container.MASTER_OPTIONS[name] == flag
        assert re.search(rf"^\s+{name}: \${{{name}:-", compose, re.MULTILINE), f"{name} not passed by compose"
        assert re.search(rf"^{name}=", example, re.MULTILINE), f"{name} not in .env.example"


def test_container_master_gets_the_run_options_of_its_variables(tmp_path: Path) -> None:
    environment = {
        "HPO_INSECURE": "true", "HPO_NAMESERVER": "nameserver:9090", "HPO_RUN_ID": "c",
        "HPO_OPTIMIZER": "hyperband", "HPO_MAX_BUDGET": "9", "HPO_ETA": "2.5", "HPO_SEED": "3",
        "HPO_DATASET": "mnist", "HPO_CONTINUATION": "false", "HPO_TOP_N_PERCENT": "20",
    }  # fmt: skip
    spec = master_spec(container.master_command(environment))
    assert spec == RunSpec(
        optimizer="hyperband", max_budget=9.0, eta=2.5, seed=3, dataset="mnist", continuation=False,
        bohb=BohbOptions(top_n_percent=20),
    )  # fmt: skip


def test_a_resumed_run_fixes_every_run_option_but_the_space_and_the_option_groups() -> None:
    fixed = {field for field in FIXED_BY_RUN if field != "run_id"}
    assert fixed == {option.field for option in OPTIONS if option.field != "space"} | {"continuation"}


def test_run_json_holds_the_spec_and_gives_it_back(tmp_path: Path) -> None:
    spec = replace(unusual_spec(tmp_path), optimizer="bohb")
    record = json.loads(json.dumps(RunDescription("r", spec, started=1.5).to_dict()))
    # Flat, as analysis and earlier versions read it; BOHB's settings only for BOHB, a study's for studies.
    assert (record["run_id"], record["max_budget"], record["train_limit"]) == ("r", spec.max_budget, 500)
    assert record["sweep"] is None and record["bohb"]["min_points_in_model"] == 9
    assert RunDescription.from_dict(record) == RunDescription("r", replace(spec, sweep=SweepOptions()), 1.5)
    study = RunSpec(optimizer="grid", sweep=spec.sweep)
    assert RunSpec.from_record(study.to_record()) == study
    assert RunSpec.from_record(RunSpec(optimizer="hyperband").to_record()) == RunSpec(optimizer="hyperband")


def test_a_run_json_of_an_earlier_version_gives_its_spec_with_defaults() -> None:
    # run.json as commit 208aab4 wrote it: no train limit, no study options, dataset null in the oldest.
    record = {
        "run_id": "old", "optimizer": "hyperband", "min_budget": 1, "max_budget": 9, "eta": 3,
        "n_iterations": 2, "seed": 4, "dataset": None, "space": "default", "started": 10.0, "finished": None,
        "continuation": True, "bohb": None, "warm_start": None,
    }  # fmt: skip
    description = RunDescription.from_dict(record)
    assert description.spec == RunSpec(
        optimizer="hyperband", min_budget=1.0, max_budget=9.0, eta=3.0, n_iterations=2, seed=4
    )
    assert isinstance(description.spec.max_budget, float) and description.started == 10.0


def test_a_worker_takes_no_run_option_on_its_command_line() -> None:
    """Workers read the whole spec from run.json or from the master (workers.run_source): a run option on a
    worker's command line could only disagree with it."""
    from workers.__main__ import build_parser as worker_parser

    reference = argparse.ArgumentParser()
    add_run_arguments(reference)
    run_flags = {flag for action in reference._actions for flag in action.option_strings} - {"-h", "--help"}
    worker_flags = {flag for action in worker_parser()._actions for flag in action.option_strings}
    assert not run_flags & worker_flags
    assert {"--run-dir", "--nameserver", "--device", "--precision", "--step-mode"} <= worker_flags
