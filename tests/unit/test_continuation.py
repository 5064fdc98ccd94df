"""Continuation across budgets: the epochs a Hyperband cycle trains, the master's removal of checkpoints
that successive halving dropped, the worker that resumes, and the settings that switch it off."""

from __future__ import annotations

import logging
import random
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from hpbandster.core.dispatcher import Job
from hpbandster.optimizers.hyperband import HyperBand

from hpo_service.checkpoint_files import (
    CheckpointJanitor,
    chain_listeners,
    checkpoint_path,
    checkpoint_root,
    config_directory,
    parse_config_directory,
)
from hpo_service.records import JobRequest
from hpo_service.run_spec import RunSpec
from launch import container
from workers.continuation import ContinuationPlan, budget_to_epochs, continuation_plan
from workers.data import DatasetTensors, load_dataset
from workers.worker import TrainingWorker

CPU = torch.device("cpu")
CONFIG = {"learning_rate": 0.05, "batch_size": 32, "optimizer": "momentum", "lr_schedule": "cosine"}
RUNNING_STATES = {"QUEUED", "RUNNING", "REVIEW"}


# Hyperband's epochs, with HpBandSter's own successive-halving iterations and fake jobs (no training).


def hyperband_brackets(min_budget: float, max_budget: float, eta: float, n_iterations: int) -> list[Any]:
    """HpBandSter's iterations of a Hyperband run, built by its own ``get_next_iteration``."""
    rungs = -int(np.log(min_budget / max_budget) / np.log(eta)) + 1
    budgets = max_budget * np.power(eta, -np.linspace(rungs - 1, 0, rungs))
    sampler = random.Random(0)

    def sample(budget: float) -> tuple[dict[str, Any], dict[str, Any]]:
        return {"x": sampler.random()}, {}

    optimizer = SimpleNamespace(
        max_SH_iter=rungs, eta=eta, budgets=budgets, config_generator=SimpleNamespace(get_config=sample)
    )
    return [HyperBand.get_next_iteration(optimizer, index) for index in range(n_iterations)]


def run_brackets(
    brackets: list[Any], max_budget: float, *, continuation: bool, run_dir: Path | None = None
) -> int:
    """Run every job one after the other; returns the epochs trained. With ``run_dir``, each job below the
    largest budget leaves a checkpoint and the master's janitor runs after each result, as in a real run."""
    done: dict[tuple[int, ...], int] = {}
    trained = 0
    janitor = CheckpointJanitor(run_dir or Path("unused"))
    janitor.master = SimpleNamespace(iterations=[])
    for bracket in brackets:
        janitor.master.iterations.append(bracket)
        while (job := bracket.get_next_run()) is not None:
            config_id, config, budget = job
            epochs = budget_to_epochs(budget)
            trained += epochs - done.get(config_id, 0) if continuation else epochs
            done[config_id] = epochs
            finished = Job(config_id, config=config, budget=budget)
            finished.result = {"loss": config["x"] / budget}
            if run_dir is not None and epochs < budget_to_epochs(max_budget):
                path = checkpoint_path(run_dir, config_id, epochs)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"state")
            bracket.register_result(finished)
            if run_dir is not None:
                janitor(finished)
                check_only_live_checkpoints(run_dir, janitor.master.iterations)
    return trained


def check_only_live_checkpoints(run_dir: Path, brackets: list[Any]) -> None:
    states = {
        tuple(config_id): datum.status for bracket in brackets for config_id, datum in bracket.data.items()
    }
    root = checkpoint_root(run_dir)
    for directory in root.iterdir() if root.exists() else []:
        config_id = parse_config_directory(directory.name)
        assert config_id is not None and states[config_id] in RUNNING_STATES, directory.name


@pytest.mark.parametrize(
    ("max_budget", "sizes", "continued", "independent"),
    [(9, [[9, 3, 1], [3, 1], [3]], 63, 72), (27, [[27, 9, 3, 1], [9, 3, 1], [6, 2], [4]], 342, 405)],
    ids=["1-9-eta-3", "1-27-eta-3"],
)
def test_a_hyperband_cycle_trains_only_the_budget_differences(
    max_budget: int, sizes: list[list[int]], continued: int, independent: int
) -> None:
    """One full cycle of HpBandSter's brackets: with continuation only each promotion's budget difference."""
    n_brackets = len(sizes)
    brackets = hyperband_brackets(1, max_budget, 3, n_brackets)
    assert [bracket.num_configs for bracket in brackets] == sizes
    assert run_brackets(brackets, max_budget, continuation=False) == independent
    brackets = hyperband_brackets(1, max_budget, 3, n_brackets)
    assert run_brackets(brackets, max_budget, continuation=True) == continued
    assert continued == minimum_epochs(sizes, max_budget, continuation=True)
    assert independent == minimum_epochs(sizes, max_budget, continuation=False)


def minimum_epochs(sizes: list[list[int]], max_budget: int, *, continuation: bool, eta: int = 3) -> int:
    """Epochs of brackets with these rung sizes (rung budgets end at ``max_budget``, ratio ``eta``)."""
    total = 0
    for rungs in sizes:
        budgets = [max_budget // eta ** (len(rungs) - 1 - index) for index in range(len(rungs))]
        previous = [0, *budgets[:-1]] if continuation else [0] * len(rungs)
        total += sum(
            count * (budget - before) for count, budget, before in zip(rungs, budgets, previous, strict=True)
        )
    return total


def test_the_issue_bracket_sizes_give_its_numbers() -> None:
    # The issue counts the second bracket of 1..9 as 4/1 (and 12/4/1 for 1..27): the sizes of
    # n = floor((s_max + 1) / (s + 1) * eta^s). HpBandSter 0.7.4 floors before multiplying (3/1, 9/3/1), so a
    # run here trains 63 / 72 and 342 / 405 epochs (above); the saving is the same kind of count.
    assert minimum_epochs([[9, 3, 1], [4, 1], [3]], 9, continuation=True) == 66
    assert minimum_epochs([[9, 3, 1], [4, 1], [3]], 9, continuation=False) == 75
    issue_27 = [[27, 9, 3, 1], [12, 4, 1], [6, 2], [4]]
    assert minimum_epochs(issue_27, 27, continuation=True) == 357
    assert minimum_epochs(issue_27, 27, continuation=False) == 423


def test_the_janitor_removes_what_successive_halving_dropped(tmp_path: Path) -> None:
    brackets = hyperband_brackets(1, 9, 3, 3)

    run_brackets(brackets, 9, continuation=True, run_dir=tmp_path)

    # Every bracket is over: no configuration will resume, so nothing is left.
    assert list(checkpoint_root(tmp_path).iterdir()) == []


def test_the_janitor_keeps_promoted_configurations_and_ignores_strangers(tmp_path: Path) -> None:
    statuses = {(0, 0, 0): "QUEUED", (0, 0, 1): "TERMINATED", (0, 0, 2): "CRASHED", (0, 0, 3): "REVIEW"}
    bracket = SimpleNamespace(data={cid: SimpleNamespace(status=s) for cid, s in statuses.items()})
    for config_id in [*statuses, (5, 0, 0)]:
        path = checkpoint_path(tmp_path, config_id, 1)
        path.parent.mkdir(parents=True)
        path.write_bytes(b"state")
    (checkpoint_root(tmp_path) / "notes").mkdir()
    janitor = CheckpointJanitor(tmp_path)
    calls: list[Any] = []
    listener = chain_listeners(calls.append, janitor)

    listener("before the master exists")  # no master yet: nothing happens
    janitor.master = SimpleNamespace(iterations=[bracket])
    listener("job")

    assert calls == ["before the master exists", "job"]
    remaining = sorted(path.name for path in checkpoint_root(tmp_path).iterdir())
    assert remaining == ["0_0_0", "0_0_3", "5_0_0", "notes"]


@pytest.mark.parametrize("keep", [False, True])
def test_the_end_of_the_run_removes_every_checkpoint_unless_kept(tmp_path: Path, keep: bool) -> None:
    path = checkpoint_path(tmp_path, (0, 0, 0), 1)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"state")
    janitor = CheckpointJanitor(tmp_path, keep=keep)

    janitor.finish()
    CheckpointJanitor(tmp_path / "no-checkpoints").finish()  # nothing there: nothing to do

    assert path.exists() == keep
    assert (tmp_path / "results.json").exists() is False


# The worker shell: a job of a promoted configuration resumes from the checkpoint of its smaller budget.


@pytest.fixture(scope="module")
def digits() -> DatasetTensors:
    return load_dataset("digits", None, CPU, train_limit=300)


def shared(run_dir: Path, max_budget: float = 9.0, continuation: bool = True) -> ContinuationPlan:
    """The plan of a worker that shares ``run_dir`` with a master running such a spec."""
    run_dir.mkdir(parents=True, exist_ok=True)
    return continuation_plan(RunSpec(max_budget=max_budget, continuation=continuation), run_dir)


def make_worker(digits: DatasetTensors, plan: ContinuationPlan | None = None) -> TrainingWorker:
    return TrainingWorker(
        "test",
        data=digits,
        device=CPU,
        device_name="cpu (test)",
        seed=3,
        precision="fp32",
        continuation=plan,
    )


def test_a_promoted_job_resumes_and_ends_where_an_uninterrupted_job_ends(
    digits: DatasetTensors, tmp_path: Path
) -> None:
    worker = make_worker(digits, shared(tmp_path))
    first = worker.evaluate(JobRequest((0, 0, 1), dict(CONFIG), 1.0)).to_wire()
    assert checkpoint_path(tmp_path, (0, 0, 1), 1).is_file()

    promoted = worker.evaluate(JobRequest((0, 0, 1), dict(CONFIG), 2.9999999999999996)).to_wire()

    info = promoted["info"]
    assert info["resumed_from_budget"] == 1 and first["info"]["resumed_from_budget"] is None
    assert (info["epochs_trained"], info["total_epochs"], info["epochs"]) == (2, 3, 3)
    assert info["schedule_epochs"] == 9 and info["precision"] == "fp32"
    assert info["validation_error_per_epoch"][0] == first["info"]["validation_error_per_epoch"][0]
    # Only the latest checkpoint stays: the next promotion resumes from 3 epochs.
    assert sorted(path.name for path in config_directory(tmp_path, (0, 0, 1)).iterdir()) == ["3.pt"]
    # A worker that cannot resume (no shared run dir) but plans the same horizon trains the same network.
    straight = make_worker(digits, continuation_plan(RunSpec(max_budget=9), None)).evaluate(
        JobRequest((7, 0, 0), dict(CONFIG), 3)
    )
    straight_info = straight.to_wire()["info"]
    assert straight_info["resumed_from_budget"] is None and straight_info["epochs_trained"] == 3
    assert promoted["loss"] == straight.loss
    assert info["validation_loss_per_epoch"] == straight_info["validation_loss_per_epoch"]
    assert info["test_loss"] == straight_info["test_loss"]


def test_the_largest_budget_saves_no_checkpoint(digits: DatasetTensors, tmp_path: Path) -> None:
    worker = make_worker(digits, shared(tmp_path, max_budget=2))
    worker.evaluate(JobRequest((0, 0, 0), dict(CONFIG), 1.0))
    assert checkpoint_path(tmp_path, (0, 0, 0), 1).is_file()
    worker.evaluate(JobRequest((0, 0, 0), dict(CONFIG), 2.0))
    # Nothing resumes from the largest budget: nothing saved, and the smaller budget's state is gone too.
    assert list(config_directory(tmp_path, (0, 0, 0)).iterdir()) == []


def test_a_damaged_checkpoint_means_training_from_scratch(
    digits: DatasetTensors, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = checkpoint_path(tmp_path, (0, 0, 4), 1)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x00" * 64)
    worker = make_worker(digits, shared(tmp_path))

    with caplog.at_level(logging.WARNING):
        result = worker.evaluate(JobRequest((0, 0, 4), dict(CONFIG), 3.0)).to_wire()

    info = result["info"]
    assert info["status"] == "ok" and info["resumed_from_budget"] is None
    assert info["epochs_trained"] == info["total_epochs"] == 3
    assert "checkpoint unusable" in caplog.text


def test_continuation_off_trains_each_budget_on_its_own(digits: DatasetTensors, tmp_path: Path) -> None:
    worker = make_worker(digits, shared(tmp_path, continuation=False))  # the run's --no-continuation
    worker.evaluate(JobRequest((0, 0, 0), dict(CONFIG), 1.0))
    result = worker.evaluate(JobRequest((0, 0, 0), dict(CONFIG), 3.0)).to_wire()
    assert result["info"]["resumed_from_budget"] is None
    assert result["info"]["schedule_epochs"] == 3
    assert not checkpoint_root(tmp_path).exists()


def test_continuation_plan_rules(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    off = continuation_plan(RunSpec(continuation=False), tmp_path)
    assert (off.max_epochs, off.store) == (None, None) and off.horizon(3) == 3
    plan = continuation_plan(RunSpec(max_budget=27.000000000000004), tmp_path)
    assert plan.max_epochs == 27 and plan.store is not None
    assert plan.horizon(3) == 27 and plan.saves(9) and not plan.saves(27)
    with caplog.at_level(logging.WARNING, logger="workers.continuation"):
        remote = continuation_plan(RunSpec(max_budget=9), None)  # the spec came over the wire
    assert (remote.max_epochs, remote.store) == (9, None) and not remote.saves(3)
    assert "no shared run dir" in caplog.text


# The settings that carry it: launcher, container variables, CLIs.


def test_the_launcher_passes_continuation_to_the_master_and_precision_to_workers(tmp_path: Path) -> None:
    from hpo_service.__main__ import build_parser as master_parser
    from hpo_service.__main__ import settings_from_args as master_settings
    from hpo_service.tls import generate as generate_tls
    from launch.local import build_parser, settings_from_args
    from workers.__main__ import build_parser as worker_parser
    from workers.__main__ import settings_from_args as worker_settings

    generate_tls(tmp_path / "run" / "tls")  # launch() makes them before anything starts; the CLIs check them
    arguments = ["--run-dir", str(tmp_path / "run"), "--precision", "bf16", "--no-continuation"]
    arguments += ["--step-mode", "eager"]
    launch = settings_from_args(build_parser().parse_args([*arguments, "--keep-checkpoints"]))
    master = master_settings(master_parser().parse_args(launch.master_command()[3:]))
    worker_command = launch.worker_command("cpu")
    worker = worker_settings(worker_parser().parse_args(worker_command[3:]))
    assert (master.continuation, master.keep_checkpoints) == (False, True)
    # The run's continuation reaches the worker through run.json, not its command line.
    assert (worker.precision, worker.step_mode) == ("bf16", "eager")
    assert "--no-continuation" not in worker_command

    default = settings_from_args(build_parser().parse_args(["--run-dir", str(tmp_path / "run")]))
    master = master_settings(master_parser().parse_args(default.master_command()[3:]))
    worker = worker_settings(worker_parser().parse_args(default.worker_command("cpu")[3:]))
    assert (master.continuation, master.keep_checkpoints) == (True, False)
    assert (worker.precision, worker.step_mode, worker.run_dir) == ("auto", "auto", tmp_path / "run")


@pytest.mark.parametrize(("text", "expected"), [("false", True), ("0", True), ("true", False), ("", False)])
def test_container_variables_switch_continuation(text: str, expected: bool) -> None:
    environment = {"HPO_RUN_ID": "study", "HPO_ADVERTISE_HOST": "10.0.0.5", "HPO_CONTINUATION": text}
    environment |= {"HPO_PRECISION": "fp32", "HPO_KEEP_CHECKPOINTS": "yes", "HPO_MAX_BUDGET": "9"}
    environment |= {"HPO_STEP_MODE": "graph"}
    master = container.master_command(environment)
    worker = container.worker_command(environment, "172.19.0.4")
    assert ("--no-continuation" in master) == expected
    assert "--keep-checkpoints" in master and master[master.index("--max-budget") + 1] == "9"
    # The run's options reach the workers through the master's run.json on the runs volume.
    assert worker[worker.index("--run-dir") + 1] == "/runs/study"
    assert worker[worker.index("--precision") + 1] == "fp32"
    assert worker[worker.index("--step-mode") + 1] == "graph"
    assert not {"--no-continuation", "--max-budget", "--dataset", "--seed"} & set(worker)


def test_a_container_switch_must_be_yes_or_no() -> None:
    with pytest.raises(ValueError, match="HPO_CONTINUATION"):
        container.master_command({"HPO_ADVERTISE_HOST": "10.0.0.5", "HPO_CONTINUATION": "maybe"})


def test_a_result_names_its_step_mode_gpu_and_peak_gpu_memory(digits: DatasetTensors) -> None:
    info = make_worker(digits).evaluate(JobRequest((0, 0, 0), dict(CONFIG), 1.0)).info
    # On the CPU: no GPU and no GPU memory (null, not zero); the trainer ran its steps eagerly.
    assert (info["step_mode"], info["gpu_index"], info["peak_gpu_memory"]) == ("eager", None, None)
    failed = make_worker(digits).evaluate(
        JobRequest((0, 0, 1), {**CONFIG, "optimizer": "no-such-optimizer"}, 1.0)
    )
    assert failed.status.value == "failed" and failed.info["peak_gpu_memory"] is None
