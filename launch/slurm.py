"""Write an sbatch script for a search on a SLURM cluster: ``python -m launch.slurm -o search.sbatch ...``.

One task runs the master with its nameserver; the other tasks run one worker each (one GPU each with
``--gpus-per-task``). The master writes ``nameserver.json`` into the run dir on the shared filesystem and
the workers read it from there, so no address has to be known before the job starts.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hpo_service.errors import SettingsError
from hpo_service.run_spec import RunSpec, add_run_arguments, spec_from_args
from hpo_service.settings import MasterSettings, default_run_id
from hpo_service.tls import in_run_dir


@dataclass(frozen=True)
class SlurmSettings:
    master: MasterSettings
    n_workers: int
    data_dir: Path | None = None
    cpus_per_task: int = 4
    gpus_per_task: int = 0
    # Worker processes in each worker task, sharing its GPU(s) and cores (several trials per GPU).
    workers_per_task: int = 1
    time_limit: str = "04:00:00"
    partition: str | None = None
    account: str | None = None
    python: str = "python"
    setup: str | None = None
    # Prints the address a task is reached at, run on that task's node.
    host_command: str = "hostname -f"

    def __post_init__(self) -> None:
        if self.n_workers < 1:
            raise SettingsError(f"--n-workers must be at least 1, got {self.n_workers}")
        if self.cpus_per_task < 1:
            raise SettingsError(f"--cpus-per-task must be at least 1, got {self.cpus_per_task}")
        if self.gpus_per_task < 0:
            raise SettingsError(f"--gpus-per-task must not be negative, got {self.gpus_per_task}")
        if self.workers_per_task < 1:
            raise SettingsError(f"--workers-per-gpu must be at least 1, got {self.workers_per_task}")
        if self.master.dataset != "digits" and self.data_dir is None:
            raise SettingsError(
                f"--dataset {self.master.dataset} needs --data-dir (on the shared filesystem)"
            )


def master_arguments(master: MasterSettings) -> list[str]:
    return [
        "-m", "hpo_service", "--run-id", master.run_id, "--run-dir", str(master.run_dir),
        *RunSpec.of(master).to_arguments(),
        "--min-workers", str(master.min_workers), "--tls-dir", str(tls_dir(master)),
    ]  # fmt: skip


def tls_dir(master: MasterSettings) -> Path:
    """The run's TLS credentials, on the shared filesystem with the run dir (docs/security.md)."""
    return in_run_dir(master.run_dir)


def worker_arguments(settings: SlurmSettings) -> list[str]:
    """One worker; it reads the run's spec (dataset, seed, budgets) from the run dir's run.json."""
    master = settings.master
    threads = max(1, settings.cpus_per_task // settings.workers_per_task)
    arguments = ["-m", "workers", "--run-id", master.run_id, "--run-dir", str(master.run_dir)]
    arguments += ["--threads", str(threads), "--device", "cuda" if settings.gpus_per_task else "cpu"]
    arguments += ["--tls-dir", str(tls_dir(master))]
    if settings.data_dir is not None:
        arguments += ["--data-dir", str(settings.data_dir)]
    # The master may wait in the queue of its own step a little: give the workers time to find it.
    return arguments + ["--connect-timeout", "600"]


def quoted(arguments: Sequence[str]) -> str:
    return " ".join(shlex.quote(argument) for argument in arguments)


def sbatch_script(settings: SlurmSettings) -> str:
    master = settings.master
    header = [
        "#!/bin/bash",
        f"#SBATCH --job-name=hpo-{master.run_id}",
        f"#SBATCH --ntasks={settings.n_workers + 1}",
        f"#SBATCH --cpus-per-task={settings.cpus_per_task}",
        f"#SBATCH --time={settings.time_limit}",
        f"#SBATCH --output={master.run_dir}.slurm-%j.out",
    ]
    if settings.gpus_per_task:
        # GPUs for the workers only; the master's step asks for none.
        header.append(f"#SBATCH --gpus={settings.gpus_per_task * settings.n_workers}")
    if settings.partition:
        header.append(f"#SBATCH --partition={settings.partition}")
    if settings.account:
        header.append(f"#SBATCH --account={settings.account}")
    # Each task binds to its own node's address, evaluated on that node (hence the inner bash -c).
    python = shlex.quote(settings.python)
    host = f'--host "$({settings.host_command})"'
    master_line = f"exec {python} {quoted(master_arguments(master))} {host}"
    worker = f"{python} {quoted(worker_arguments(settings))} {host}"
    worker_line = (
        f"exec {worker}"
        if settings.workers_per_task == 1
        # Several workers share the task's GPU: each is its own process (own CUDA context, own trial).
        else f"for i in $(seq {settings.workers_per_task}); do {worker} & done; wait"
    )
    worker_gpus = f" --gpus-per-task={settings.gpus_per_task}" if settings.gpus_per_task else ""
    credentials = shlex.quote(str(tls_dir(master)))
    body = [
        "set -euo pipefail",
        *([settings.setup] if settings.setup else []),
        f"mkdir -p {shlex.quote(str(master.run_dir.parent))}",
        "# The run's TLS credentials: every connection between its tasks is mutually authenticated.",
        f"[ -e {credentials} ] || {python} -m hpo_service.tls {credentials}",
        "# Task 1: the master and its nameserver; it writes nameserver.json into the run dir.",
        f"srun --ntasks=1 --nodes=1 --exact --gres=none bash -c {shlex.quote(master_line)} &",
        "master=$!",
        f"# Tasks 2..{settings.n_workers + 1}: {settings.workers_per_task} worker(s) each; they read "
        "nameserver.json and run.json from the run dir.",
        f"srun --ntasks={settings.n_workers} --exact{worker_gpus} bash -c {shlex.quote(worker_line)} &",
        "workers=$!",
        "# The master's exit code is the job's; it shuts the workers down when the search ends.",
        "status=0",
        'wait "$master" || status=$?',
        'if [ "$status" -ne 0 ]; then kill "$workers" 2>/dev/null || true; fi',
        'wait "$workers" || true',
        'exit "$status"',
    ]
    return "\n".join(header) + "\n\n" + "\n".join(body) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m launch.slurm",
        description="Write an sbatch script that runs a search on a SLURM cluster (submit it with sbatch).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("-o", "--output", type=Path, required=True, help="sbatch script to write")
    parser.add_argument("--n-workers", type=int, default=4, help="worker tasks (plus one for the master)")
    parser.add_argument("--run-dir", type=Path, required=True, help="run dir on the shared filesystem")
    parser.add_argument("--run-id", default=None, help="default: OPTIMIZER-DATE-TIME")
    parser.add_argument("--data-dir", type=Path, default=None, help="dataset dir on the shared filesystem")
    parser.add_argument("--cpus-per-task", type=int, default=4, help="also the torch threads of a worker")
    parser.add_argument("--gpus-per-task", type=int, default=0, help="1 for one GPU per worker task")
    parser.add_argument(
        "--workers-per-gpu",
        type=int,
        default=1,
        metavar="K",
        help="worker processes in each worker task, sharing its GPU and its cores (cpus-per-task / K torch "
        "threads each); the master waits for n-workers x K",
    )
    parser.add_argument("--time", default="04:00:00", help="SLURM time limit")
    parser.add_argument("--partition", default=None)
    parser.add_argument("--account", default=None)
    parser.add_argument("--python", default="python", help="interpreter on the compute nodes")
    parser.add_argument("--setup", default=None, help="shell line run first, e.g. 'source venv/bin/activate'")
    parser.add_argument(
        "--host-command", default="hostname -f", help="prints the address a task is reached at, on its node"
    )
    add_run_arguments(parser)  # paths (--warm-start, --space-from-sweep): on the shared filesystem
    return parser


def settings_from_args(args: argparse.Namespace) -> SlurmSettings:
    run_id = args.run_id or default_run_id(args.optimizer)
    if args.n_workers < 1:  # checked before MasterSettings, which would name its own --min-workers
        raise SettingsError(f"--n-workers must be at least 1, got {args.n_workers}")
    if args.workers_per_gpu < 1:
        raise SettingsError(f"--workers-per-gpu must be at least 1, got {args.workers_per_gpu}")
    master = MasterSettings(
        run_dir=args.run_dir, run_id=run_id, **spec_from_args(args).values(),
        min_workers=args.n_workers * args.workers_per_gpu,
    )  # fmt: skip
    return SlurmSettings(
        master=master, n_workers=args.n_workers, data_dir=args.data_dir,
        workers_per_task=args.workers_per_gpu, cpus_per_task=args.cpus_per_task,
        gpus_per_task=args.gpus_per_task, time_limit=args.time,
        partition=args.partition, account=args.account, python=args.python, setup=args.setup,
        host_command=args.host_command,
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = settings_from_args(args)
    except SettingsError as error:
        parser.error(str(error))
    args.output.write_text(sbatch_script(settings))
    args.output.chmod(0o755)
    print(f"wrote {args.output}; submit it with: sbatch {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
