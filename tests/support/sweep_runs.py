"""Run-dir factory for study tests: a sweep or grid as the study master writes it (``sweep.json``, configs
with their ``config_info["sweep"]``, results with curves, seeds, sizes and timings), without running one."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

T0 = 1_800_000_000.0
BASE = {"learning_rate": 0.01, "batch_size": 64, "optimizer": "sgd", "momentum": 0.9, "kernel_size": 3}
SPACE = {
    "hyperparameters": [
        {"name": "learning_rate", "type": "uniform_float", "lower": 1e-4, "upper": 1e-1, "log": True},
        {"name": "batch_size", "type": "uniform_int", "lower": 16, "upper": 256, "log": True},
        {"name": "optimizer", "type": "categorical", "choices": ["sgd", "adam"]},
        {"name": "momentum", "type": "uniform_float", "lower": 0.0, "upper": 0.99, "log": False},
        {"name": "kernel_size", "type": "categorical", "choices": [3, 5]},
    ],
    "conditions": [{"type": "EQ", "child": "momentum", "parent": "optimizer", "value": "sgd"}],
}

LossFunction = Callable[[Mapping[str, Any], int], float | None]


def planted_loss(config: Mapping[str, Any], seed: int) -> float:
    """Best at learning rate 0.01; adam a little worse; each seed adds 0.01."""
    lr_term = {0.1: 0.3, 0.01: 0.05, 0.001: 0.1, 0.0001: 0.4}.get(config["learning_rate"], 0.5)
    return lr_term + (0.02 if config["optimizer"] == "adam" else 0.0) + 0.01 * seed


def write_study_run(
    directory: Path,
    varied: Mapping[str, Sequence[Any]],
    *,
    kind: str = "sweep",
    seeds: Sequence[int] = (0, 1),
    epochs: int = 3,
    loss: LossFunction = planted_loss,
    devices: Sequence[str] = ("cpu (2 threads)",),
) -> Path:
    """A study run dir; ``loss`` returning None makes that job crash (no result, an exception)."""
    directory.mkdir(parents=True)
    points = _points(varied, kind)
    config_lines, result_lines = [], []
    clock = T0
    for repeat, seed in enumerate(seeds):
        for index, (values, panels) in enumerate(points):
            config_id = [0, 0, repeat * len(points) + index]
            config = {**BASE, **values, "seed": seed}
            if config["optimizer"] == "adam":
                config.pop("momentum")
            info = {"kind": kind, "values": values, "panels": panels, "repeat": repeat, "seed": seed}
            config_lines.append([config_id, config, {"sweep": info}])
            value = loss(config, seed)
            times = {"submitted": clock, "started": clock + 0.1, "finished": clock + 1.0}
            clock += 1.0
            if value is None:
                result_lines.append([config_id, float(epochs), times, None, "Worker died unexpectedly."])
                continue
            device = devices[config_id[2] % len(devices)]
            result_lines.append(
                [config_id, float(epochs), times, _result(value, epochs, seed, config, device), None]
            )
    _write_lines(directory / "configs.json", config_lines)
    _write_lines(directory / "results.json", result_lines)
    plan = {"kind": kind, "base": BASE, "varied": {name: list(values) for name, values in varied.items()},
            "repeats": len(seeds), "seeds": list(seeds), "budget": float(epochs)}  # fmt: skip
    (directory / "sweep.json").write_text(json.dumps(plan))
    (directory / "configspace.json").write_text(json.dumps(SPACE))
    run = {"run_id": directory.name, "optimizer": kind, "min_budget": epochs, "max_budget": epochs, "eta": 3,
           "n_iterations": 1, "seed": seeds[0], "dataset": "digits", "space": "default"}  # fmt: skip
    (directory / "run.json").write_text(json.dumps(run))
    return directory


def _points(varied: Mapping[str, Sequence[Any]], kind: str) -> list[tuple[dict[str, Any], list[str]]]:
    """(varied values, panels) per configuration; as in the plan, a sweep's shared base point is one."""
    names = list(varied)
    if kind == "grid":
        combos = itertools.product(*(varied[name] for name in names))
        return [(dict(zip(names, combo, strict=True)), names) for combo in combos]
    points: dict[str, tuple[dict[str, Any], list[str]]] = {}
    for name in names:
        for value in varied[name]:
            key = json.dumps({**BASE, name: value}, sort_keys=True)
            values, panels = points.setdefault(key, ({}, []))
            values[name] = value
            panels.append(name)
    return list(points.values())


def _result(loss: float, epochs: int, seed: int, config: Mapping[str, Any], device: str) -> dict[str, Any]:
    parameters = 100 * int(config["batch_size"]) * int(config["kernel_size"])
    seconds = parameters * 1e-5 * (0.1 if "H100" in device else 1.0)
    curve = [min(1.0, loss + 0.3 / epoch - 0.3 / epochs) for epoch in range(1, epochs + 1)]
    info = {
        "status": "ok" if loss < 1.0 else "failed",
        "reason": None if loss < 1.0 else "non-finite loss",
        "validation_error_per_epoch": curve,
        "epochs_trained": epochs,
        "train_seconds": seconds * epochs,
        "seconds_per_epoch": seconds,
        "parameter_count": parameters,
        "device": device,
        "seed": seed,
        "worker": "w:1",
    }
    return {"loss": loss, "info": info}


def _write_lines(path: Path, lines: list[Any]) -> None:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
