"""The master's settings: one frozen object, validated on construction, built in ``__main__``."""

from __future__ import annotations

import argparse
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

from hpo_service import run_files
from hpo_service.bohb_options import BohbOptions
from hpo_service.errors import RunDirectoryError, SettingsError
from hpo_service.names import OPTIMIZER_NAMES
from hpo_service.nameserver import NameserverAddress
from hpo_service.run_spec import RunSpec
from hpo_service.shapes import DATASET_SHAPES
from hpo_service.sweeps.options import STUDY_OPTIMIZERS, SweepOptions
from hpo_service.tls import check as check_tls
from hpo_service.tls import require_authentication


@dataclass(frozen=True)
class MasterSettings:
    """Everything one master process needs; see ``python -m hpo_service --help`` for each field."""

    run_dir: Path
    run_id: str
    # The run (hpo_service.run_spec, where each is defined with its option and help).
    optimizer: str = RunSpec.optimizer
    min_budget: float = RunSpec.min_budget
    max_budget: float = RunSpec.max_budget
    eta: float = RunSpec.eta
    n_iterations: int = RunSpec.n_iterations
    seed: int = RunSpec.seed
    space: str = RunSpec.space
    dataset: str = RunSpec.dataset
    train_limit: int | None = RunSpec.train_limit
    continuation: bool = RunSpec.continuation
    sweep: SweepOptions = RunSpec.sweep
    bohb: BohbOptions = RunSpec.bohb
    # This master process.
    min_workers: int = 1
    # Join this nameserver; when None the master starts one on host:nameserver_port.
    nameserver: NameserverAddress | None = None
    host: str = "127.0.0.1"
    nameserver_port: int = 0
    # The run's TLS credentials (hpo_service.tls): every Pyro connection authenticated both ways.
    tls_dir: Path | None = None
    # Listen on a non-loopback --host without tls_dir (anyone who reaches it could control the run).
    allow_insecure: bool = False
    # Seconds between checks of every worker: a dead or frozen worker is found within about this long.
    ping_interval: int = 2
    # Dispatches of a job whose worker died or never got it, in all (1: never re-dispatched).
    max_attempts: int = 3
    # Seconds a job may run before it is stopped and recorded as timed out; None: no limit.
    job_timeout: float | None = None
    shutdown_workers: bool = True
    # Leave RUN_DIR/checkpoints in place at the end of the run.
    keep_checkpoints: bool = False
    # Continue the run in run_dir (--resume): its settings come from run.json (hpo_service.resume).
    resume: bool = False

    def __post_init__(self) -> None:
        if self.optimizer in STUDY_OPTIMIZERS:
            # A study trains every job on --max-budget epochs, all in one iteration.
            object.__setattr__(self, "min_budget", self.max_budget)
            object.__setattr__(self, "n_iterations", 1)
        if self.optimizer not in OPTIMIZER_NAMES:
            raise SettingsError(
                f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZER_NAMES)}"
            )
        check_budgets(self.min_budget, self.max_budget)
        check_seed(self.seed)
        if self.min_budget > self.max_budget:
            raise SettingsError(
                f"--min-budget {self.min_budget:g} is larger than --max-budget {self.max_budget:g}"
            )
        if not self.eta > 1:
            raise SettingsError(f"--eta must be larger than 1, got {self.eta:g}")
        if not 1 <= self.n_iterations <= MAX_ITERATIONS:
            raise SettingsError(f"--n-iterations must be in 1..{MAX_ITERATIONS}, got {self.n_iterations}")
        if self.min_workers < 1:
            raise SettingsError(f"--min-workers must be at least 1, got {self.min_workers}")
        if self.ping_interval < 1:
            raise SettingsError(f"--ping-interval must be at least 1 second, got {self.ping_interval}")
        if self.max_attempts < 1:
            raise SettingsError(f"--max-attempts must be at least 1, got {self.max_attempts}")
        if self.job_timeout is not None and not self.job_timeout > 0:
            raise SettingsError(f"--job-timeout must be positive, got {self.job_timeout:g}")
        if not 0 <= self.nameserver_port < 65536:
            raise SettingsError(f"--nameserver-port must be in 0..65535, got {self.nameserver_port}")
        require_authentication(self.host, self.tls_dir, self.allow_insecure)
        if self.tls_dir is not None:
            check_tls(self.tls_dir)
        check_run_id(self.run_id)
        check_writable(self.run_dir)
        if self.dataset not in DATASET_SHAPES:
            raise SettingsError(
                f"unknown dataset {self.dataset!r}; choose one of {', '.join(DATASET_SHAPES)}"
            )
        if self.train_limit is not None and self.train_limit < 1:
            raise SettingsError(f"--train-limit must be at least 1 image, got {self.train_limit}")
        # Imported here: ConfigSpace (and scipy under it) only once settings are built, not for --help.
        from hpo_service.space import check_space_spec
        from hpo_service.sweeps.setup import check_study

        check_space_spec(self.space, self.dataset)
        check_study(self)
        check_bohb_options(self)


def check_bohb_options(settings: MasterSettings) -> None:
    """BOHB's options only with BOHB; their values against the space, and every warm-start run."""
    given = settings.bohb.given()
    if given and settings.optimizer != "bohb":
        raise SettingsError(f"{given[0]} applies to --optimizer bohb only, not {settings.optimizer}")
    from hpo_service import warm_start

    warm_start.check(settings)


# HpBandSter plans every iteration before the first job: a billion would spin before the master listens.
MAX_ITERATIONS = 10_000
# numpy's seeds (the sampler's) are 32-bit unsigned.
MAX_SEED = 2**32 - 1
# The run id names the run dir's default and the Pyro objects; file names stop at 255 bytes.
MAX_RUN_ID_LENGTH = 100


def check_budgets(min_budget: float, max_budget: float) -> None:
    """Budgets are epochs: finite, and at least one (a job trains round(budget) epochs, never fewer than 1,
    so budgets below 1 would all train the same epoch and promotions would learn nothing)."""
    for name, budget in (("--min-budget", min_budget), ("--max-budget", max_budget)):
        if not math.isfinite(budget):
            raise SettingsError(f"{name} must be a finite number of epochs, got {budget:g}")
    if min_budget < 1:
        raise SettingsError(
            f"--min-budget {min_budget:g} is less than one epoch: budgets are epochs (a job trains "
            "round(budget) of them, at least 1); give --min-budget 1 or more"
        )


def check_seed(seed: int) -> None:
    if not 0 <= seed <= MAX_SEED:
        raise SettingsError(f"--seed must be in 0..{MAX_SEED} (2**32 - 1), got {seed}")


def check_run_id(run_id: str) -> None:
    if not run_id or any(character in run_id for character in " /\\:\0"):
        raise SettingsError(f"--run-id {run_id!r}: use letters, digits, '-', '_' or '.'")
    if len(run_id) > MAX_RUN_ID_LENGTH:
        raise SettingsError(f"--run-id is {len(run_id)} characters long; use at most {MAX_RUN_ID_LENGTH}")


def check_writable(run_dir: Path) -> None:
    """RunDirectoryError unless the run dir (or the directory it will be made in) can be written: the master
    would otherwise fail with an OSError after its workers started."""
    existing = run_dir.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise RunDirectoryError(f"run dir {run_dir}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise RunDirectoryError(f"run dir {run_dir}: {existing} is not writable")


# What a run dir holds once its master has results; a new run refuses a dir with any of them (non-empty).
RESULT_FILES = run_files.RESULT_FILES


def check_fresh_run_dir(run_dir: Path) -> None:
    """RunDirectoryError unless ``run_dir`` can take a new run: a directory (or nothing yet) without results,
    so that nothing already there is silently overwritten (``--resume`` continues a run instead)."""
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirectoryError(f"run dir {run_dir} exists and is not a directory")
    existing = [
        name for name in RESULT_FILES if (run_dir / name).is_file() and (run_dir / name).stat().st_size > 0
    ]
    if existing:
        raise RunDirectoryError(
            f"run dir {run_dir} already holds results ({', '.join(existing)}); choose a new --run-dir "
            "or continue it with --resume"
        )


def default_run_id(optimizer: str) -> str:
    return f"{optimizer}-{time.strftime('%Y%m%d-%H%M%S')}"


def add_failure_arguments(parser: argparse.ArgumentParser) -> None:
    """The options for jobs that fail outside the configuration, of the master and of launch.local."""
    parser.add_argument(
        "--max-attempts",
        type=int,
        default=MasterSettings.max_attempts,
        help="dispatches of a job whose worker dies or cannot be reached, in all, before it is recorded as "
        "failed (1: never re-dispatched); a configuration's own failure is never retried",
    )
    parser.add_argument(
        "--job-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop a job that runs longer and record it as timed out (None: no limit)",
    )
