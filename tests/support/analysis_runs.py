"""Run-dir factories for the analysis tests: a run as hpo-service writes it (curves, workers, timings) and
one written by plain HpBandSter code with its own ``json_result_logger``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

T0 = 1_800_000_000.0

SPACE = {
    "hyperparameters": [
        {"name": "learning_rate", "type": "uniform_float", "lower": 1e-4, "upper": 1e-1, "log": True},
        {"name": "optimizer", "type": "categorical", "choices": ["sgd", "adam"]},
        {"name": "dropout", "type": "uniform_float", "lower": 0.0, "upper": 0.5, "log": False},
        {"name": "batch_size", "type": "uniform_int", "lower": 16, "upper": 256, "log": True},
        {"name": "momentum", "type": "uniform_float", "lower": 0.0, "upper": 0.99, "log": False},
    ],
    "conditions": [{"type": "EQ", "child": "momentum", "parent": "optimizer", "value": "sgd"}],
}


def planted_loss(config: dict[str, Any]) -> float:
    """The loss the fake runs report: the learning rate decides almost all of it (best at 10^-2.5)."""
    return 0.05 + 0.1 * (math.log10(config["learning_rate"]) + 2.5) ** 2 + 0.002 * config["dropout"]


def sample_configs(count: int, seed: int = 0) -> list[dict[str, Any]]:
    random = np.random.default_rng(seed)
    configs = []
    for _ in range(count):
        config: dict[str, Any] = {
            "learning_rate": float(10 ** random.uniform(-4, -1)),
            "optimizer": str(random.choice(["sgd", "adam"])),
            "dropout": float(random.uniform(0, 0.5)),
            "batch_size": int(2 ** random.uniform(4, 8)),
        }
        if config["optimizer"] == "sgd":
            config["momentum"] = float(random.uniform(0, 0.99))
        configs.append(config)
    return configs


def curve(loss: float, epochs: int) -> list[float]:
    """A learning curve that falls towards ``loss`` and ends exactly on it."""
    return [loss + 0.5 / epoch - 0.5 / epochs for epoch in range(1, epochs + 1)]


def ours_info(loss: float, epochs: int, worker: str, parameters: int, seconds: float) -> dict[str, Any]:
    return {
        "status": "ok",
        "reason": None,
        "validation_error": loss,
        "test_error": loss + 0.01,
        "validation_error_per_epoch": curve(loss, epochs),
        "epochs_trained": epochs,
        "wall_seconds": seconds + 0.1,
        "train_seconds": seconds,
        "samples_per_second": 1000.0,
        "parameter_count": parameters,
        "device": "cpu (1 thread)",
        "dataset": "digits",
        "seed": 0,
        "worker": worker,
    }


def write_ours_run(
    directory: Path,
    *,
    count: int = 40,
    budgets: tuple[float, ...] = (1.0, 3.0),
    seed: int = 0,
    model_based_from: int | None = None,
    record_picks: bool = True,
) -> Path:
    """An hpo-service run dir: every config on every budget, two workers taking jobs in turn, losses
    from :func:`planted_loss` (shrinking with the budget), time per epoch proportional to parameters.
    Configurations from index ``model_based_from`` on are BOHB model-based picks (None: all random);
    ``record_picks=False`` writes an empty ``config_info`` as random search and Hyperband do."""
    directory.mkdir(parents=True)
    configs = sample_configs(count, seed)
    clock = {"worker-a:1": 0.0, "worker-b:2": 0.0}
    config_lines, result_lines = [], []
    for index, config in enumerate(configs):
        config_id = [index // 10, 0, index % 10]
        model_based = model_based_from is not None and index >= model_based_from
        config_info = {"model_based_pick": model_based} if record_picks else {}
        config_lines.append(json.dumps([config_id, config, config_info]))
        for budget in budgets:
            worker = min(clock, key=lambda name: clock[name])
            parameters = 1000 * config["batch_size"]
            seconds = parameters * 1e-5 * budget
            started = clock[worker]
            clock[worker] = started + seconds + 0.5  # a 0.5 s gap before the worker's next job
            loss = planted_loss(config) / budget
            stamps = {"submitted": T0 + started, "started": T0 + started, "finished": T0 + started + seconds}
            info = ours_info(loss, int(budget), worker, parameters, seconds)
            result_lines.append(json.dumps([config_id, budget, stamps, {"loss": loss, "info": info}, None]))
    (directory / "configs.json").write_text("\n".join(config_lines) + "\n")
    (directory / "results.json").write_text("\n".join(result_lines) + "\n")
    (directory / "configspace.json").write_text(json.dumps(SPACE))
    description = {"run_id": "ours", "optimizer": "bohb", "min_budget": budgets[0], "max_budget": budgets[-1]}
    description |= {"eta": 3.0, "seed": seed, "dataset": "digits", "started": T0, "finished": T0 + 100}
    (directory / "run.json").write_text(json.dumps(description))
    return directory


def write_plain_hpbandster_run(directory: Path, count: int = 12) -> Path:
    """A run dir as a plain HpBandSter script writes it: HpBandSter's own ``json_result_logger`` fed
    HpBandSter ``Job`` objects whose results hold a loss and an info without our keys; no run.json,
    no configspace.json."""
    from hpbandster.core.dispatcher import Job
    from hpbandster.core.result import json_result_logger

    logger = json_result_logger(str(directory), overwrite=True)
    now = T0
    for index, sampled in enumerate(sample_configs(count, seed=1)):
        config = {name: sampled[name] for name in ("learning_rate", "dropout")}
        config_id = (0, 0, index)
        logger.new_config(config_id, config, {"model_based_pick": False})
        for budget in (1.0, 3.0):
            job = Job(config_id, config=config, budget=budget)
            job.timestamps = {"submitted": now, "started": now + 0.1, "finished": now + budget}
            now += budget / 2  # two jobs at a time
            job.result = {"loss": planted_loss(config | {"dropout": 0.0}) / budget, "info": {"note": "x"}}
            if index == 3 and budget == 3.0:
                job.result, job.exception = None, "Traceback ...\nValueError: diverged"
            logger(job)
    return directory
