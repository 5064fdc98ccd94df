"""Bad-input survey (issue 5): run every CLI with bad arguments and print what each one answers.

Each case runs ``python -m MODULE ARGS`` as a subprocess in a fresh temporary directory (cwd, so default
run dirs land there too), 127.0.0.1 only, with a short timeout; every case must fail in validation, before
any search starts. Printed: a Markdown table with the exit code, the message (the last line of stderr:
argparse puts its usage line first) and, where the case involves files that already exist, whether they are
byte-for-byte unchanged afterwards. ``tests/integration/test_bad_inputs.py`` runs the same cases and asserts
exit code 2, a fragment of the message and untouched files.

    .venv/bin/python scripts/bad_inputs.py            # the table
    .venv/bin/python scripts/bad_inputs.py --only 3 7  # some cases, with their whole stderr
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 60.0

SPACE = {
    "hyperparameters": [
        {"name": "learning_rate", "type": "uniform_float", "lower": 1e-4, "upper": 1e-1, "log": True},
        {"name": "dropout", "type": "uniform_float", "lower": 0.0, "upper": 0.5, "log": False},
    ],
    "conditions": [],
    "forbiddens": [],
}


def write_run(directory: Path, *, pickle_file: bool = True) -> Path:
    """A finished (small) BOHB run dir as the master writes it: run.json, configspace.json, JSON logs and a
    results.pkl (here only bytes: the cases that read it either refuse before or expect it damaged)."""
    directory.mkdir(parents=True)
    description = {
        "run_id": "old", "optimizer": "bohb", "min_budget": 1.0, "max_budget": 3.0, "eta": 3.0,
        "n_iterations": 1, "seed": 0, "dataset": "digits", "space": "default", "started": 1.8e9,
        "finished": 1.8e9 + 60,
    }  # fmt: skip
    (directory / "run.json").write_text(json.dumps(description, indent=2) + "\n")
    (directory / "configspace.json").write_text(json.dumps(SPACE))
    configs, results = [], []
    for index in range(3):
        config_id = [0, 0, index]
        config = {"learning_rate": 10 ** (-1 - index), "dropout": 0.1 * index}
        configs.append(json.dumps([config_id, config, {"model_based_pick": False}]))
        stamps = {"submitted": 1.8e9 + index, "started": 1.8e9 + index, "finished": 1.8e9 + index + 1}
        result = {"loss": 0.1 + index / 10, "info": {}}
        results.append(json.dumps([config_id, 1.0, stamps, result, None]))
    (directory / "configs.json").write_text("\n".join(configs) + "\n")
    (directory / "results.json").write_text("\n".join(results) + "\n")
    if pickle_file:
        (directory / "results.pkl").write_bytes(b"\x80\x04\x95" + b"\x00" * 40)
    return directory


def corrupt_middle_line(run_dir: Path) -> None:
    path = run_dir / "results.json"
    lines = path.read_text().splitlines()
    lines[1] = lines[1][: len(lines[1]) // 2] + "#garbage"
    path.write_text("\n".join(lines) + "\n")


def space_named(spec: str) -> Callable[[Path], None]:
    """run.json names ``spec`` as the run's space (as a run started with ``--space spec`` does)."""

    def rename(run_dir: Path) -> None:
        description = json.loads((run_dir / "run.json").read_text())
        (run_dir / "run.json").write_text(json.dumps({**description, "space": spec}, indent=2) + "\n")

    return rename


def other_space(run_dir: Path) -> None:
    """configspace.json replaced by a space the logged configurations do not belong to."""
    space = {**SPACE, "hyperparameters": SPACE["hyperparameters"][:1]}
    (run_dir / "configspace.json").write_text(json.dumps(space))


def results_as_directory(run_dir: Path) -> None:
    (run_dir / "results.json").unlink()
    (run_dir / "results.json").mkdir()


def without_logs(run_dir: Path) -> None:
    """Only the pickle left, as plain HpBandSter scripts leave a run dir: analysis reads the logs first."""
    for name in ("configs.json", "results.json"):
        (run_dir / name).unlink()


def truncated_pickle(run_dir: Path) -> None:
    """A real results.pkl cut in half: the pickle of a plain dict standing in for a Result."""
    import pickle

    data = pickle.dumps({"runs": list(range(1000)), "id2config": {}}, protocol=4)
    (run_dir / "results.pkl").write_bytes(data[: len(data) // 2])


def without_finite_loss(run_dir: Path) -> None:
    """Every result crashed or non-finite: nothing a warm start could learn from."""
    path = run_dir / "results.json"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    for number, line in enumerate(lines):
        line[3] = None if number % 2 else {"loss": "nan", "info": {}}
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


def prepare(*steps: Callable[[Path], None]) -> Callable[[Path], None]:
    def run_all(tmp: Path) -> None:
        for step in steps:
            step(tmp)

    return run_all


def run(name: str = "run", **kwargs: bool) -> Callable[[Path], None]:
    def write(tmp: Path) -> None:
        if not (tmp / name).exists():
            write_run(tmp / name, **kwargs)

    return write


def text(name: str, content: str) -> Callable[[Path], None]:
    def write(tmp: Path) -> None:
        (tmp / name).write_text(content)

    return write


def directory(name: str) -> Callable[[Path], None]:
    return lambda tmp: (tmp / name).mkdir(parents=True, exist_ok=True)


def in_run(step: Callable[[Path], None], name: str = "run") -> Callable[[Path], None]:
    return lambda tmp: step(tmp / name)


def space_yaml(
    *parameters: str, conditions: Sequence[str] = (), learning_rate: bool = True
) -> Callable[[Path], None]:
    """s.yaml: ``parameters`` (YAML lines), after a learning rate unless told not, then ``conditions``."""
    rate = ["learning_rate: {range: [1.0e-4, 0.1], log: true}"] if learning_rate else []
    lines = ["hyperparameters:", *(f"  {line}" for line in (*rate, *parameters))]
    if conditions:
        lines += ["conditions:", *(f"  {line}" for line in conditions)]
    return text("s.yaml", "\n".join(lines) + "\n")


@dataclass(frozen=True)
class Case:
    cli: str  # module: hpo_service, workers, launch.local, analysis, launch.slurm, launch.container
    args: tuple[str, ...]
    situation: str  # what is bad, in words
    expect: str  # fragment of the message (case-insensitive)
    setup: Callable[[Path], None] = field(default=lambda tmp: None)
    # Paths (relative to the temp dir) that must be byte-for-byte unchanged; directories: every file in them.
    watch: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()


BAD_YAML = "hyperparameters:\n  learning_rate: {type: float, lower: 1e-4\n  dropout: [0, 0.5\n"
BAD_JSON = '{"hyperparameters": [{"name": "lr", "type": "uniform_float", '

CASES: tuple[Case, ...] = (
    # --- master: python -m hpo_service -----------------------------------------------------------------
    Case("hpo_service", ("--optimizer", "nosuch"), "unknown optimizer", "invalid choice: 'nosuch'"),
    Case("hpo_service", ("--min-budget", "10", "--max-budget", "5"), "min budget > max budget",
         "--min-budget 10 is larger than --max-budget 5"),
    Case("hpo_service", ("--eta", "1"), "eta = 1", "--eta must be larger than 1"),
    Case("hpo_service", ("--max-attempts", "0"), "no attempt allowed", "--max-attempts must be at least 1"),
    Case("hpo_service", ("--job-timeout", "0"), "zero job timeout", "--job-timeout must be positive"),
    Case("hpo_service", ("--eta", "0.5"), "eta < 1", "--eta must be larger than 1"),
    Case("hpo_service", ("--min-budget", "abc"), "budget not a number", "invalid float value: 'abc'"),
    Case("hpo_service", ("--n-iterations", "0"), "no iterations", "--n-iterations must be in 1.."),
    Case("hpo_service", ("--min-workers", "0"), "non-positive workers", "--min-workers must be at least 1"),
    Case("hpo_service", ("--dataset", "nosuch"), "unknown dataset", "invalid choice: 'nosuch'"),
    Case("hpo_service", ("--run-id", "a b"), "run id with a space", "--run-id 'a b'"),
    Case("hpo_service", ("--space", "missing.yaml"), "space file missing", "missing.yaml"),
    Case("hpo_service", ("--space", "bad.yaml"), "space file: malformed YAML", "bad.yaml",
         setup=text("bad.yaml", BAD_YAML), watch=("bad.yaml",)),
    Case("hpo_service", ("--space", "bad.json"), "space file: malformed JSON", "bad.json",
         setup=text("bad.json", BAD_JSON), watch=("bad.json",)),
    Case("hpo_service", ("--space", "nosuch"), "unknown space preset", "nosuch"),
    Case("hpo_service", ("--host", "10.0.0.5"), "non-loopback host without TLS",
         "is reachable from other machines and there is no --tls-dir"),
    Case("hpo_service", ("--tls-dir", "notls"), "TLS dir without certificates", "ca.pem is missing",
         setup=directory("notls")),
    Case("hpo_service", ("--nameserver", "nohost"), "nameserver without port", "expected HOST:PORT"),
    Case("hpo_service", ("--nameserver", "127.0.0.1:99999"), "nameserver port out of range",
         "expected HOST:PORT"),
    Case("hpo_service", ("--nameserver-port", "70000"), "nameserver port out of range",
         "--nameserver-port must be in 0..65535"),
    Case("hpo_service", ("--optimizer", "sweep", "--vary", "nosuch=1,2"), "sweep: unknown hyperparameter",
         "nosuch"),
    Case("hpo_service", ("--optimizer", "sweep", "--vary", "learning_rate=abc,def"),
         "sweep: value of the wrong type", "learning_rate"),
    Case("hpo_service", ("--optimizer", "sweep", "--vary", "learning_rate"), "sweep: --vary without values",
         "learning_rate"),
    Case("hpo_service", ("--optimizer", "grid", "--vary", "learning_rate=0.001,0.002,0.003,0.004,0.005",
                         "--vary", "dropout=0,0.1,0.2,0.3,0.4", "--repeats", "10", "--max-jobs", "50"),
         "grid larger than --max-jobs without --force", "--force"),
    Case("hpo_service", ("--vary", "learning_rate=0.01,0.1"), "--vary without a study optimizer",
         "apply to --optimizer sweep or grid only"),
    Case("hpo_service", ("--run-dir", "run"), "run dir already holds results (no --resume)",
         "already holds results", setup=run(), watch=("run",)),
    Case("hpo_service", ("--resume", "nowhere"), "--resume: no such directory", "no such directory"),
    Case("hpo_service", ("--resume", "empty"), "--resume: a directory that is not a run",
         "not a run directory", setup=directory("empty")),
    Case("hpo_service", ("--resume", "run", "--max-budget", "81"), "--resume with a conflicting --max-budget",
         "--max-budget 81.0 differs from the run's 3.0", setup=run(), watch=("run",)),
    Case("hpo_service", ("--resume", "run", "--space", "lenet5"), "--resume against a different space",
         "space", setup=run(), watch=("run",)),
    Case("hpo_service", ("--resume", "run"), "--resume: results.json with a corrupted line",
         "line 2 is not valid JSON", setup=prepare(run(), in_run(corrupt_middle_line)), watch=("run",)),
    # --- issue 14: space files, numbers out of range, names too long -----------------------------------
    Case("hpo_service", ("--space", "s.yaml"), "space file: conv_layers range beyond the builder's 3",
         "conv_layers must be 0..3, got 4", setup=space_yaml("conv_layers: {range: [2, 5]}")),
    Case("hpo_service", ("--space", "s.yaml"), "space file: a non-numeric conv_layers choice",
         "conv_layers must be 0..3, got 'three'",
         setup=space_yaml('conv_layers: {choices: [1, 2, "three"]}')),
    Case("hpo_service", ("--space", "s.yaml"), "space file: a non-numeric kernel_size choice",
         "kernel_size must be an integer >= 1, got 'big'",
         setup=space_yaml("kernel_size: {choices: [3, big]}")),
    Case("hpo_service", ("--space", "s.yaml"), "space file: stride 0",
         "stride must be an integer >= 1, got 0",
         setup=space_yaml("stride: {choices: [0, 1]}")),
    Case("hpo_service", ("--space", "s.yaml"), "space file: negative conv_layers", "conv_layers must be 0..3",
         setup=space_yaml("conv_layers: -1")),
    Case("hpo_service", ("--space", "s.yaml"), "space file: a default that cannot be built",
         "the default configuration", setup=space_yaml("conv_layers: {range: [1, 3]}", "kernel_size: 5",
                                                       "padding: valid")),
    Case("hpo_service", ("--space", "s.yaml"), "space file: conditions that form a cycle",
         "the conditions form a cycle", setup=space_yaml(
             "optimizer: {choices: [sgd, adam]}", "activation: {choices: [relu, tanh]}",
             conditions=("optimizer: {activation: [relu]}", "activation: {optimizer: [sgd]}"))),
    Case("hpo_service", ("--space", "s.yaml"), "space file: a misspelled hyperparameter name",
         "did you mean 'learning_rate'",
         setup=space_yaml("learning_rat: {range: [1.0e-4, 0.1], log: true}", learning_rate=False)),
    Case("launch.local", ("--space", "s.yaml"), "space file: stride 0", "stride must be an integer >= 1",
         setup=space_yaml("stride: {choices: [0, 1]}")),
    Case("hpo_service", ("--max-budget", "nan"), "max budget NaN", "--max-budget must be a finite number"),
    Case("launch.local", ("--max-budget", "inf"), "max budget infinite",
         "--max-budget must be a finite number"),
    Case("hpo_service", ("--seed", "-1"), "negative seed", "--seed must be in 0..4294967295"),
    Case("launch.local", ("--seed", "4294967296"), "seed of 2**32", "--seed must be in 0..4294967295"),
    Case("hpo_service", ("--n-iterations", "1000000000"), "a billion iterations",
         "--n-iterations must be in 1.."),
    Case("launch.local", ("--min-budget", "0.1", "--max-budget", "0.5"), "budgets below one epoch",
         "less than one epoch"),
    Case("launch.local", ("--train-limit", "0"), "no training images", "--train-limit must be at least 1"),
    Case("launch.local", ("--workers-per-gpu", "0"), "no workers per GPU",
         "--workers-per-gpu must be at least 1"),
    Case("launch.local", ("--n-workers", "5000"), "more workers than the memory can hold",
         "each worker holds about 830 MB"),
    Case("hpo_service", ("--run-id", "x" * 300), "300-character run id", "--run-id is 300 characters long"),
    Case("launch.local", ("--run-id", "x" * 300), "300-character run id", "--run-id is 300 characters long"),
    Case("hpo_service", ("--resume", "run", "--space", "s.yaml"), "--resume with its space file edited since",
         "is not the run's search space", watch=("run",),
         setup=prepare(run(), in_run(space_named("s.yaml")), space_yaml("dropout: {range: [0.0, 0.9]}"))),
    Case("hpo_service", ("--resume", "run"), "--resume: configspace.json does not match the logs",
         "configspace.json does not match the run's logs", setup=prepare(run(), in_run(other_space)),
         watch=("run",)),
    Case("hpo_service", ("--run-dir", "afile/run"), "run dir inside a file", "afile is not a directory",
         setup=text("afile", "x"), watch=("afile",)),
    Case("launch.local", ("--no-tls", "--run-dir", "afile/run"), "run dir inside a file (--no-tls)",
         "afile is not a directory", setup=text("afile", "x"), watch=("afile",)),
    # --- worker: python -m workers ---------------------------------------------------------------------
    Case("workers", ("--run-id", "x", "--nameserver", "127.0.0.1:9", "--precision", "nosuch"),
         "unknown precision", "invalid choice: 'nosuch'"),
    Case("workers", ("--run-id", "x", "--nameserver", "127.0.0.1:9", "--threads", "-2"), "negative threads",
         "--threads must be at least 1"),
    Case("workers", ("--run-id", "x", "--nameserver", "localhost"), "nameserver without port",
         "expected HOST:PORT"),
    Case("workers", ("--run-id", "x"), "neither nameserver nor run dir", "give --nameserver"),
    Case("workers", ("--run-id", "x", "--nameserver", "127.0.0.1:9", "--dataset", "nosuch"),
         "a run option (the run's spec gives it)", "unrecognized arguments: --dataset"),
    Case("workers", ("--run-id", "x", "--run-dir", "run", "--insecure"), "run dir of another run",
         "is run 'old', not --run-id 'x'", setup=run(), watch=("run",)),
    Case("workers", ("--run-id", "old", "--run-dir", "run", "--insecure"), "unreadable run.json",
         "is not a readable run description", setup=prepare(directory("run"), text("run/run.json", "{")),
         watch=("run",)),
    Case("workers", ("--run-id", "x", "--nameserver", "127.0.0.1:9", "--data-dir", "nodata"),
         "missing data dir", "--data-dir nodata is not a directory"),
    Case("workers", ("--run-id", "x", "--nameserver", "127.0.0.1:9", "--workers-on-host", "0"),
         "non-positive workers on host", "--workers-on-host must be at least 1"),
    Case("workers", ("--run-id", "x", "--nameserver", "127.0.0.1:9", "--connect-timeout", "-1"),
         "negative connect timeout", "--connect-timeout must be positive"),
    Case("workers", ("--run-id", "x", "--nameserver", "127.0.0.1:9", "--host", "0.0.0.0"),
         "every interface without TLS", "no --tls-dir"),
    Case("workers", ("--run-id", "x", "--run-dir", "afile"), "--run-dir that is a file",
         "--run-dir afile is not a directory", setup=text("afile", "x"), watch=("afile",)),
    # --- launcher: python -m launch.local --------------------------------------------------------------
    Case("launch.local", ("--n-workers", "0"), "zero workers", "--n-workers must be at least 1"),
    Case("launch.local", ("--job-timeout", "-5"), "negative job timeout", "--job-timeout must be positive"),
    Case("launch.local", ("--no-tls", "--host", "10.0.0.5"), "--no-tls on a non-loopback host",
         "--no-tls needs a loopback --host"),
    Case("launch.local", ("--n-workers", "-3"), "negative workers", "--n-workers must be at least 1"),
    Case("launch.local", ("--optimizer", "nosuch"), "unknown optimizer", "invalid choice: 'nosuch'"),
    Case("launch.local", ("--min-budget", "9", "--max-budget", "3"), "min budget > max budget",
         "--min-budget 9 is larger than --max-budget 3"),
    Case("launch.local", ("--eta", "1"), "eta = 1", "--eta must be larger than 1"),
    Case("launch.local", ("--dataset", "mnist"), "dataset without --data-dir", "needs --data-dir"),
    Case("launch.local", ("--data-dir", "nodata"), "missing data dir",
         "--data-dir nodata is not a directory"),
    Case("hpo_service", ("--top-n-percent", "0"), "BOHB: top-n-percent 0",
         "--top-n-percent must be in 1..99"),
    Case("hpo_service", ("--random-fraction", "1.5"), "BOHB: random fraction above 1",
         "--random-fraction must be in 0..1"),
    Case("hpo_service", ("--min-points-in-model", "3"), "BOHB: fewer points than the space's dimensions + 1",
         "--min-points-in-model must be at least 12"),
    Case("hpo_service", ("--optimizer", "hyperband", "--num-samples", "8"), "BOHB option with hyperband",
         "--num-samples applies to --optimizer bohb only"),
    Case("hpo_service", ("--warm-start", "nowhere"), "warm start: no such directory",
         "--warm-start nowhere: no such directory"),
    Case("hpo_service", ("--warm-start", "empty"), "warm start: a directory that is not a run",
         "not a run directory", setup=directory("empty")),
    Case("hpo_service", ("--warm-start", "run"), "warm start: a run of another space", "another search space",
         setup=run(), watch=("run",)),
    Case("hpo_service", ("--warm-start", "run", "--space", "run/configspace.json"),
         "warm start: a run with no finite loss", "no result with a finite loss",
         setup=prepare(run(), in_run(without_finite_loss)), watch=("run",)),
    Case("hpo_service", ("--optimizer", "randomsearch", "--warm-start", "run"),
         "warm start with random search",
         "--warm-start applies to --optimizer bohb only", setup=run(), watch=("run",)),
    Case("hpo_service", ("--resume", "run", "--top-n-percent", "20"),
         "--resume with a conflicting BOHB option",
         "--top-n-percent 20 differs from the run's 15", setup=run(), watch=("run",)),
    Case("launch.local", ("--warm-start", "nowhere"), "warm start: no such directory",
         "--warm-start nowhere: no such directory"),
    Case("launch.local", ("--optimizer", "hyperband", "--random-fraction", "0.5"),
         "BOHB option with hyperband",
         "--random-fraction applies to --optimizer bohb only"),
    Case("launch.local", ("--space", "bad.yaml"), "space file: malformed YAML", "bad.yaml",
         setup=text("bad.yaml", BAD_YAML), watch=("bad.yaml",)),
    Case("launch.local", ("--precision", "nosuch"), "unknown precision", "invalid choice: 'nosuch'"),
    Case("launch.local", ("--optimizer", "sweep", "--vary", "nosuch=1,2"), "sweep: unknown hyperparameter",
         "nosuch"),
    Case("launch.local", ("--run-dir", "run"), "run dir already holds results (no --resume)",
         "already holds results", setup=run(), watch=("run",)),
    Case("launch.local", ("--resume", "empty"), "--resume: a directory that is not a run",
         "not a run directory", setup=directory("empty")),
    Case("launch.local", ("--resume", "run", "--eta", "2"), "--resume with a conflicting --eta",
         "--eta 2.0 differs from the run's 3.0", setup=run(), watch=("run",)),
    Case("launch.local", ("--resume", "run"), "--resume: results.json with a corrupted line",
         "line 2 is not valid JSON", setup=prepare(run(), in_run(corrupt_middle_line)), watch=("run",)),
    # --- analysis: python -m analysis ------------------------------------------------------------------
    Case("analysis", ("nowhere",), "run dir that does not exist", "nowhere"),
    Case("analysis", ("empty",), "directory that is not a run", "empty", setup=directory("empty")),
    Case("analysis", ("run",), "truncated results.pkl (no JSON logs)", "results.pkl",
         setup=prepare(run(), in_run(truncated_pickle), in_run(without_logs)), watch=("run",)),
    Case("analysis", ("--json-only", "run"), "results.json with a corrupted line", "results.json",
         setup=prepare(run(pickle_file=False), in_run(corrupt_middle_line)), watch=("run",)),
    Case("analysis", ("summary", "run"), "summary: results.json with a corrupted line", "results.json",
         setup=prepare(run(pickle_file=False), in_run(corrupt_middle_line)), watch=("run",)),
    Case("analysis", ("run", "--rule", "nosuch"), "unknown option value", "nosuch",
         setup=run(pickle_file=False), watch=("run",)),
    Case("analysis", ("serve", "nowhere"), "serve: run dir that does not exist",
         "nowhere: no such directory"),
    Case("analysis", ("serve", "stuff"), "serve: a directory with neither a run nor runs inside",
         "not a run directory", setup=prepare(directory("stuff"), text("stuff/notes.txt", "x")),
         watch=("stuff",)),
    Case("analysis", ("serve", "run", "--host", "0.0.0.0"), "serve: non-loopback address, no --allow-remote",
         "needs --allow-remote", setup=run(pickle_file=False), watch=("run",)),
    Case("analysis", ("serve", "run", "--port", "70000"), "serve: port out of range", "not a port number",
         setup=run(pickle_file=False), watch=("run",)),
    Case("analysis", ("serve", "run", "--host", "192.0.2.1", "--allow-remote"),
         "serve: an address this machine does not have", "cannot listen on 192.0.2.1",
         setup=run(pickle_file=False), watch=("run",)),
    Case("analysis", ("run",), "results.json that is a directory", "results.json is not a file",
         setup=prepare(run(pickle_file=False), in_run(results_as_directory)), watch=("run",)),
    Case("analysis", ("run",), "results.json whose only line is unreadable", "results.json:1: corrupt line",
         setup=prepare(run(pickle_file=False), in_run(text("results.json", "garbage\n"))), watch=("run",)),
    # --- SLURM script writer and container roles -----------------------------------------------------------
    Case("launch.slurm", ("-o", "job.sh", "--run-dir", "r", "--n-workers", "0"), "zero workers",
         "--n-workers must be at least 1"),
    Case("launch.slurm", ("-o", "job.sh", "--run-dir", "r", "--eta", "1"), "eta = 1",
         "--eta must be larger than 1"),
    Case("launch.slurm", ("-o", "job.sh", "--run-dir", "r", "--warm-start", "run"),
         "warm start: a run of another space", "another search space", setup=run(), watch=("run",)),
    Case("launch.slurm", ("-o", "job.sh"), "no --run-dir", "the following arguments are required: --run-dir"),
    Case("launch.container", ("nosuch",), "unknown role", "usage: python -m launch.container"),
    Case("launch.container", ("worker",), "HPO_NAMESERVER without a port", "expected HOST:PORT",
         env=(("HPO_NAMESERVER", "nameserver"),)),
)  # fmt: skip


@dataclass(frozen=True)
class Outcome:
    case: Case
    code: int | None  # None: timed out
    message: str  # last non-empty line of stderr
    stderr: str
    untouched: bool | None  # None: nothing watched


def fingerprint(tmp: Path, paths: Sequence[str]) -> dict[str, str]:
    hashes = {}
    for name in paths:
        path = tmp / name
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            hashes[str(file.relative_to(tmp))] = hashlib.sha256(file.read_bytes()).hexdigest()
        if path.is_dir():  # files added to a watched directory count as a change too
            hashes[f"{name}/"] = ",".join(str(p.relative_to(tmp)) for p in sorted(path.rglob("*")))
    return hashes


def run_case(case: Case) -> Outcome:
    with tempfile.TemporaryDirectory(prefix="bad-input-") as name:
        tmp = Path(name)
        case.setup(tmp)
        before = fingerprint(tmp, case.watch)
        environment = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **dict(case.env)}
        try:
            done = subprocess.run(
                [sys.executable, "-m", case.cli, *case.args], check=False, cwd=tmp, env=environment,
                capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
            code: int | None = done.returncode
            stderr = done.stderr
        except subprocess.TimeoutExpired as timeout:
            code = None
            raw = timeout.stderr or b""
            stderr = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
        lines = [line for line in stderr.splitlines() if line.strip()]
        untouched = fingerprint(tmp, case.watch) == before if case.watch else None
        return Outcome(case, code, lines[-1] if lines else "", stderr, untouched)


def run_cases(cases: Sequence[Case], jobs: int = 2) -> list[Outcome]:
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(run_case, cases))


def good(outcome: Outcome) -> bool:
    """Exit code 2, one line on stderr (or argparse's usage, then one line), the expected message, no
    changes to the watched files."""
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    # argparse: a usage block (its first line starts with "usage:", the rest indented), then the error line
    usage = lines[:-1]
    usage_and_error = (
        bool(usage) and usage[0].startswith("usage:") and all(line.startswith(" ") for line in usage[1:])
    )
    return (
        outcome.code == 2
        and (len(lines) == 1 or usage_and_error)
        and outcome.case.expect.lower() in outcome.message.lower()
        and outcome.untouched is not False
    )


def table(outcomes: Sequence[Outcome]) -> str:
    rows = [
        "| # | CLI | arguments / situation | exit code | message (stderr) | files untouched |",
        "|---|-----|-----------------------|-----------|------------------|-----------------|",
    ]
    for number, outcome in enumerate(outcomes, start=1):
        case = outcome.case
        arguments = " ".join(case.args).replace("|", "\\|")
        code = "timeout" if outcome.code is None else str(outcome.code)
        untouched = {None: "", True: "yes", False: "**no**"}[outcome.untouched]
        flag = "" if good(outcome) else " **(not OK)**"
        message = outcome.message.replace("|", "\\|")
        rows.append(
            f"| {number} | {case.cli} | `{arguments}`: {case.situation} | {code}{flag} | {message} "
            f"| {untouched} |"
        )
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", type=int, nargs="+", default=None, help="case numbers (1-based)")
    parser.add_argument("--jobs", type=int, default=2, help="cases run at once")
    options = parser.parse_args(argv)
    numbers = options.only or list(range(1, len(CASES) + 1))
    outcomes = run_cases([CASES[number - 1] for number in numbers], options.jobs)
    if options.only:
        for number, outcome in zip(numbers, outcomes, strict=True):
            print(f"--- case {number}: exit {outcome.code}\n{outcome.stderr}")
    print(table(outcomes))
    failed = sum(not good(outcome) for outcome in outcomes)
    print(f"\n{len(outcomes)} cases, {len(outcomes) - failed} answered with one clear line and exit code 2")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
