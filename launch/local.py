"""``python -m launch.local``: a whole search on this machine (master + nameserver + N worker processes).

Children run in their own process sessions so that Ctrl-C reaches only the launcher, which then stops
them in order: the master first (it closes the result log and shuts the workers down), the workers
after a grace period, and anything still alive is killed. No process is left behind.

Each child writes its output to ``RUN_DIR/logs/`` (``master.log``, ``worker-1.log``, ...); what the terminal
shows meanwhile (a status block on a TTY, plain per-job lines elsewhere) is :mod:`launch.console`'s.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from hpo_service import run_files
from hpo_service.console import LOG_DIRECTORY, short_log_lines
from hpo_service.errors import STALE_SPEC_EXIT_CODE, RunDirectoryError, SettingsError
from hpo_service.logging_setup import configure_logging
from hpo_service.nameserver import remove_credentials
from hpo_service.progress import LiveCounts
from hpo_service.resume import open_description
from hpo_service.run_spec import RunSpec, add_run_arguments, spec_from_args
from hpo_service.settings import (
    MasterSettings,
    add_failure_arguments,
    check_fresh_run_dir,
    default_run_id,
)
from hpo_service.signals import interrupt_on_stop_signals
from hpo_service.sweeps.options import (
    STUDY_OPTIMIZERS,
)
from hpo_service.tls import ensure as ensure_tls
from hpo_service.tls import in_run_dir, is_loopback
from launch.console import LaunchTerminal, log_path
from launch.dashboard import Dashboard, serve_command
from workers.settings import PRECISIONS, STEP_MODES

logger = logging.getLogger("launch.local")

# glibc otherwise returns torch's activation buffers to the OS every step (25-35 % slower on CPU).
WORKER_ENVIRONMENT = {"MALLOC_MMAP_THRESHOLD_": "268435456", "MALLOC_TRIM_THRESHOLD_": "536870912"}
MASTER_STOP_GRACE = 15.0
WORKER_STOP_GRACE = 10.0
# Replacements per worker slot for a worker killed mid-run (OOM killer, kill -9), as compose's restart
# policy does; the master re-dispatches its job either way.
WORKER_RESTARTS = 3
# Workers without --n-workers on a machine without GPUs (each gets cores / 4 torch threads).
CPU_WORKERS = 4
# What one worker process holds once ready (torch, the dataset, a model; measured ~830 MB on CPU).
WORKER_MEMORY = 830 * 10**6


class LaunchError(Exception):
    """The launch cannot go on; the message says why."""


@dataclass(frozen=True)
class LaunchSettings:
    n_workers: int
    run_dir: Path
    run_id: str
    # The run (hpo_service.run_spec): handed to the master, which records it in run.json for the workers.
    spec: RunSpec
    data_dir: Path | None
    download: bool
    device: str
    host: str
    verbose: bool
    precision: str = "auto"
    step_mode: str = "auto"
    keep_checkpoints: bool = False
    max_attempts: int = MasterSettings.max_attempts
    job_timeout: float | None = None
    # --resume RUN_DIR: the master continues the run (the run-defining fields come from the run).
    resume: bool = False
    # Mutual TLS with certificates made for this run in RUN_DIR/tls (--no-tls: off, loopback only).
    tls: bool = True
    # --dashboard: the command of the live web dashboard started beside the search (None: no dashboard).
    dashboard_command: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.n_workers < 1:
            raise LaunchError(f"--n-workers must be at least 1, got {self.n_workers}")
        check_memory_for(self.n_workers)
        if self.data_dir is not None and not self.download and not self.data_dir.is_dir():
            raise LaunchError(f"--data-dir {self.data_dir} is not a directory")
        if self.spec.dataset != "digits" and self.data_dir is None and not self.download:
            raise LaunchError(f"--dataset {self.spec.dataset} needs --data-dir (or --download with internet)")
        if not self.tls and not is_loopback(self.host):
            raise LaunchError(f"--no-tls needs a loopback --host, not {self.host}: anyone who reaches the "
                              "ports could control the run")  # fmt: skip
        if not self.tls and in_run_dir(self.run_dir).exists():
            raise LaunchError(f"--no-tls: {in_run_dir(self.run_dir)} exists and the workers would use it; "
                              "leave out --no-tls or remove that directory")  # fmt: skip
        try:
            self.master_settings()
            if not self.resume:  # the master would refuse too, but only after the workers started
                check_fresh_run_dir(self.run_dir)
        except (SettingsError, RunDirectoryError) as error:
            raise LaunchError(str(error)) from error

    def master_settings(self) -> MasterSettings:
        """What the master will be given; built here too so bad values fail before any process starts.

        Without its TLS directory, which :func:`launch` makes later: a non-loopback host is refused in
        ``__post_init__`` unless TLS is on."""
        return MasterSettings(
            allow_insecure=True,
            run_dir=self.run_dir, run_id=self.run_id, **self.spec.values(),
            min_workers=LOCAL_MIN_WORKERS, host=self.host, keep_checkpoints=self.keep_checkpoints,
            resume=self.resume, max_attempts=self.max_attempts, job_timeout=self.job_timeout,
        )  # fmt: skip

    def master_command(self) -> list[str]:
        if self.resume:  # the master reads the run's settings from the run dir
            command = [sys.executable, "-m", "hpo_service", "--resume", str(self.run_dir),
                       "--min-workers", str(LOCAL_MIN_WORKERS), "--host", self.host]  # fmt: skip
        else:
            command = [
                sys.executable, "-m", "hpo_service",
                "--run-dir", str(self.run_dir), "--run-id", self.run_id, *self.spec.to_arguments(),
                "--min-workers", str(LOCAL_MIN_WORKERS), "--host", self.host,
            ]  # fmt: skip
        # Options of this master process, not of the search: the same for a new and a resumed run.
        command += ["--keep-checkpoints"] if self.keep_checkpoints else []
        command += ["--max-attempts", str(self.max_attempts)]
        command += [] if self.job_timeout is None else ["--job-timeout", repr(self.job_timeout)]
        command += self.tls_options()
        return command + (["--verbose"] if self.verbose else [])

    def tls_options(self) -> list[str]:
        """``--tls-dir RUN_DIR/tls`` for the master and every worker; ``--insecure`` with ``--no-tls`` (the
        master would otherwise make certificates the workers, started at once, might not see)."""
        return ["--tls-dir", str(in_run_dir(self.run_dir))] if self.tls else ["--insecure"]

    def worker_command(self, device: str) -> list[str]:
        """A worker of this run; it reads the run's spec (dataset, seed, budgets) from RUN_DIR/run.json."""
        command = [
            sys.executable, "-m", "workers",
            "--run-id", self.run_id, "--run-dir", str(self.run_dir),
            "--device", device, "--host", self.host,
            "--workers-on-host", str(self.n_workers), "--precision", self.precision,
            "--step-mode", self.step_mode,
        ]  # fmt: skip
        if self.data_dir is not None:
            command += ["--data-dir", str(self.data_dir)]
        if self.download:
            command.append("--download")
        command += self.tls_options()
        return command + (["--verbose"] if self.verbose else [])


def memory_bytes(field: str) -> int | None:
    """``MemTotal`` or ``MemAvailable`` of /proc/meminfo in bytes; None where there is no such file."""
    try:
        lines = Path("/proc/meminfo").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        name, _, value = line.partition(":")
        if name == field:
            return int(value.split()[0]) * 1024
    return None


def check_memory_for(n_workers: int) -> None:
    """Refuse more workers than this machine's memory can hold at all; warn when more than it has free."""
    needed = n_workers * WORKER_MEMORY
    total = memory_bytes("MemTotal")
    if total is not None and needed > total:
        raise LaunchError(
            f"--n-workers {n_workers}: each worker holds about {WORKER_MEMORY / 1e6:.0f} MB once ready, "
            f"{needed / 1e9:.1f} GB in all; this machine has {total / 1e9:.1f} GB of memory, room for "
            f"about {total // WORKER_MEMORY} workers"
        )
    available = memory_bytes("MemAvailable")
    if available is not None and needed > available:
        logger.warning("--n-workers %d needs about %.1f GB of memory; %.1f GB are available now",
                       n_workers, needed / 1e9, available / 1e9)  # fmt: skip


def exit_code(returncode: int) -> int:
    """A child's return code as a shell reports it: 128 + N for one killed by signal N (not 256 - N)."""
    return 128 - returncode if returncode < 0 else returncode


def visible_gpus(environment: Mapping[str, str] | None = None) -> list[str]:
    """The GPUs workers may use, as ``CUDA_VISIBLE_DEVICES`` entries: the user's own ``CUDA_VISIBLE_DEVICES``
    when set (its entries up to the first empty or negative one, as CUDA reads it: ``""`` or ``-1`` hide
    every GPU), else every GPU ``nvidia-smi`` lists, by index. Empty without NVIDIA GPUs; no torch import."""
    environment = os.environ if environment is None else environment
    if shutil.which("nvidia-smi") is None:
        return []
    if "CUDA_VISIBLE_DEVICES" in environment:
        entries = [entry.strip() for entry in environment["CUDA_VISIBLE_DEVICES"].split(",")]
        invalid = [index for index, entry in enumerate(entries) if not entry or entry.startswith("-")]
        return entries[: invalid[0]] if invalid else entries
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10, check=True)
    except (subprocess.SubprocessError, OSError):
        return []
    return [str(index) for index, line in enumerate(listing.stdout.splitlines()) if line.startswith("GPU ")]


def default_worker_count(device: str, workers_per_gpu: int) -> int:
    """Workers without ``--n-workers``: ``workers_per_gpu`` on each visible GPU, else 4 on the CPU."""
    gpus = visible_gpus() if device in ("auto", "cuda") else []
    return len(gpus) * workers_per_gpu if gpus else CPU_WORKERS


# The master starts the search with the first worker that is up: the others are this launch's own and
# join within seconds (each one gets a job as soon as it registers), so the first job need not wait for
# the slowest worker's start.
LOCAL_MIN_WORKERS = 1
# Seconds the later workers wait at most for the first ones to join the search (see early_workers).
STAGGER_LIMIT = 20.0


def early_workers(count: int) -> int:
    """Workers started with the master. Each process spends seconds of CPU importing torch or HpBandSter;
    with more processes than cores they all slow each other down and the first job waits for the slowest
    start. So the master and as many workers as leave it a core start at once; the others once those
    have joined the search (and the first job runs). Every worker is started either way."""
    return max(1, min(count, (os.cpu_count() or 1) - 1))


def wait_for_workers(group: ProcessGroup, run_dir: Path, count: int, since: float) -> None:
    """Until the master reports ``count`` workers connected (its progress.json, written after ``since``),
    the master exits, or STAGGER_LIMIT seconds pass."""
    deadline = time.monotonic() + STAGGER_LIMIT
    while time.monotonic() < deadline:
        if group.master is not None and group.master.poll() is not None:
            return
        counts = LiveCounts.read(run_dir)
        if counts is not None and counts.updated >= since and counts.workers >= count:
            return
        time.sleep(0.05)


def worker_placements(settings: LaunchSettings) -> list[tuple[str, dict[str, str]]]:
    """Device argument and extra environment for each worker: one GPU each, round-robin, or CPU threads."""
    gpus = visible_gpus() if settings.device in ("auto", "cuda") else []
    placements = []
    for index in range(settings.n_workers):
        if gpus:
            placements.append(("cuda", {"CUDA_VISIBLE_DEVICES": gpus[index % len(gpus)]}))
        else:
            device = "cpu" if settings.device == "auto" else settings.device
            threads = max(1, (os.cpu_count() or 1) // settings.n_workers)
            placements.append((device, {"OMP_NUM_THREADS": str(threads)}))
    return placements


class ProcessGroup:
    """The master and worker processes of one launch, stopped together. With a ``log_dir``, each process's
    output goes to its file there (``master.log``, ``worker-1.log``, ...); otherwise to this terminal."""

    def __init__(self, log_dir: Path | None = None) -> None:
        self.log_dir = log_dir
        self.master: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        # Per worker slot: how it is started, and how often it was replaced.
        self.worker_starts: list[tuple[list[str], dict[str, str]]] = []
        self.restarts: list[int] = []

    def start_master(self, command: list[str]) -> None:
        self.master = self._popen(command, "master", None)

    def start_worker(self, command: list[str], extra_environment: dict[str, str]) -> None:
        self.worker_starts.append((command, extra_environment))
        self.restarts.append(0)
        self.workers.append(self._spawn(len(self.workers), command, extra_environment))

    def _spawn(
        self, index: int, command: list[str], extra_environment: dict[str, str]
    ) -> subprocess.Popen[bytes]:
        environment = {**os.environ, **WORKER_ENVIRONMENT, **extra_environment}
        return self._popen(command, f"worker-{index + 1}", environment)

    def _popen(
        self, command: list[str], name: str, environment: dict[str, str] | None
    ) -> subprocess.Popen[bytes]:
        if self.log_dir is None:
            return subprocess.Popen(command, env=environment, start_new_session=True)
        # Appended: a replacement worker continues its slot's file, a resumed run its master's.
        with open(self.log_dir / f"{name}.log", "ab") as log:
            return subprocess.Popen(
                command, env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def replace_dead_workers(self) -> None:
        """Start a new worker for each one killed by a signal (OOM killer, kill -9, a crash in native code),
        or that exited because it had read a stale spec, while the master runs, up to WORKER_RESTARTS per
        slot. One that exited otherwise (a bad setting, given up) would only fail again, and one the master
        shut down exits with 0."""
        for index, process in enumerate(self.workers):
            code = process.poll()
            replace = code is not None and (code < 0 or code == STALE_SPEC_EXIT_CODE)
            if not replace or self.restarts[index] >= WORKER_RESTARTS:
                continue
            self.restarts[index] += 1
            logger.warning(
                "worker %d (pid %d) exited with code %s; starting a replacement (%d of %d)",
                index, process.pid, process.returncode, self.restarts[index], WORKER_RESTARTS,
            )  # fmt: skip
            self.workers[index] = self._spawn(index, *self.worker_starts[index])

    def all(self) -> list[subprocess.Popen[bytes]]:
        return ([self.master] if self.master is not None else []) + self.workers

    def stop(self) -> None:
        """Master first (SIGINT: it saves and shuts workers down), then workers, then SIGKILL the rest."""
        if self.master is not None and self.master.poll() is None:
            self.master.send_signal(signal.SIGINT)
            wait_all([self.master], MASTER_STOP_GRACE)
        for process in self.workers:
            if process.poll() is None:
                process.terminate()
        wait_all(self.workers, WORKER_STOP_GRACE)
        for process in self.all():
            if process.poll() is None:
                logger.warning("killing process %d that did not stop", process.pid)
                process.kill()
                process.wait()


def wait_all(processes: list[subprocess.Popen[bytes]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(0.0, deadline - time.monotonic()))


def supervise(group: ProcessGroup, poll_interval: float = 0.5) -> int:
    """Wait for the master; stop early when every worker has died (the master would wait forever)."""
    assert group.master is not None
    while group.master.poll() is None:
        group.replace_dead_workers()
        if group.workers and all(process.poll() is not None for process in group.workers):
            if all(process.returncode == 0 for process in group.workers) and master_ends(group.master):
                break  # the master shut its workers down at the end of the run, then exited
            codes = sorted({process.returncode for process in group.workers})
            logger.error(
                "every worker exited (exit codes %s) before the run ended; stopping the master", codes
            )
            group.stop()
            return 1
        time.sleep(poll_interval)
    # The master's shutdown call ends the workers; give them a moment, then stop whoever is left.
    wait_all(group.workers, WORKER_STOP_GRACE)
    group.stop()
    return exit_code(group.master.returncode)


def master_ends(master: subprocess.Popen[bytes]) -> bool:
    """Whether the master exits within its stop grace: workers exit with 0 only when the master shut them
    down, which it does at the end of the run, just before it exits itself."""
    wait_all([master], MASTER_STOP_GRACE)
    return master.poll() is not None


def prepare_tls(settings: LaunchSettings) -> None:
    """RUN_DIR/tls: this run's certificates, made now, or the ones a resumed run already has."""
    if not settings.tls:
        logger.warning("--no-tls: any local user can reach the run's ports and control it")
        return
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    files = ensure_tls(in_run_dir(settings.run_dir), hosts=[settings.host])
    logger.info("TLS credentials of the run: %s (copy it to workers on other machines)", files.directory)


@contextlib.contextmanager
def watched(settings: LaunchSettings) -> Iterator[None]:
    """The terminal (status block, or plain lines from the process logs) and the dashboard, if asked for,
    for the duration of the search."""
    terminal = LaunchTerminal.choose(settings.run_dir, settings.verbose)
    terminal.start()
    dashboard = None
    try:
        if settings.dashboard_command is not None:
            dashboard = Dashboard(
                settings.dashboard_command,
                log_path(settings.run_dir, "dashboard"),
                terminal.announce,
            )
            dashboard.start()
        yield
    finally:
        if dashboard is not None:
            dashboard.stop()
        terminal.stop()


def launch(settings: LaunchSettings) -> int:
    try:
        prepare_tls(settings)
    except (SettingsError, OSError) as error:
        logger.error("cannot prepare the run's TLS credentials: %s", error)
        return 2
    with watched(settings):
        code = run_processes(settings)
    report(settings, code)
    return code


def run_processes(settings: LaunchSettings) -> int:
    """Start master and workers (their output in RUN_DIR/logs), supervise them, stop them all."""
    group = ProcessGroup(settings.run_dir / LOG_DIRECTORY)
    try:
        logger.info("run %s in %s: %s with %d worker(s) on %s", settings.run_id, settings.run_dir,
                    settings.spec.optimizer, settings.n_workers, settings.spec.dataset)  # fmt: skip
        # The stopped master's nameserver address: workers must wait for the new one.
        remove_credentials(settings.run_dir)
        if settings.resume:  # the workers read the spec there, at once: in this version's form
            open_description(settings.run_dir, settings.spec)
        else:  # an earlier launch's spec (it has no results: refused otherwise) is not this one's
            (settings.run_dir / run_files.RUN_DESCRIPTION).unlink(missing_ok=True)
        started = time.time()
        group.start_master(settings.master_command())
        placements = worker_placements(settings)
        early = early_workers(len(placements))
        for device, environment in placements[:early]:
            group.start_worker(settings.worker_command(device), environment)
        if early < len(placements):
            wait_for_workers(group, settings.run_dir, early, started)
        for device, environment in placements[early:]:
            group.start_worker(settings.worker_command(device), environment)
        code = supervise(group)
    except KeyboardInterrupt:
        logger.warning("interrupted: stopping master and workers")
        # A second Ctrl-C must not abandon the stop half way; it is bounded by the grace periods anyway.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        group.stop()
        code = 130
    return code


def python_command() -> str:
    """This interpreter as the user would type it: ``.venv/bin/python`` from the project dir."""
    relative = os.path.relpath(sys.executable)
    return relative if not relative.startswith("..") else sys.executable


def report(settings: LaunchSettings, code: int) -> None:
    if code == 0:
        logger.info("done. Results: %s", settings.run_dir)
        analysis = "analysis sweep" if settings.spec.optimizer in STUDY_OPTIMIZERS else "analysis"
        logger.info("analyse with: %s -m %s %s", python_command(), analysis, settings.run_dir)
    elif (settings.run_dir / run_files.RESULTS).is_file():
        logger.warning("run ended with exit code %d; finished results are in %s", code, settings.run_dir)
    else:
        logger.error("run ended with exit code %d", code)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m launch.local",
        description="Run a whole search on this machine: nameserver and master in one process, N workers in "
        "others. With no flags: BOHB on the embedded digits dataset, a few minutes on 2 CPU cores.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--n-workers",
        type=int,
        default=None,
        help=f"worker processes, each with cores/N torch threads; on GPUs they take the GPUs round-robin "
        f"(default: GPUs x --workers-per-gpu, or {CPU_WORKERS} without GPUs)",
        metavar="N",
    )
    parser.add_argument(
        "--workers-per-gpu",
        type=int,
        default=1,
        metavar="K",
        help="workers per visible GPU when --n-workers is not given (CUDA_VISIBLE_DEVICES, when set, says "
        "which GPUs are visible)",
    )
    parser.add_argument("--run-id", default=None, help="default: OPTIMIZER-DATE-TIME")
    parser.add_argument("--run-dir", type=Path, default=None, help="default: runs/RUN_ID")
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="e.g. ../shared/data for MNIST/raw/*-ubyte.gz"
    )
    parser.add_argument(
        "--download", action="store_true", help="let workers download the dataset (needs internet)"
    )
    parser.add_argument(
        "--device", default="auto", help="auto (one GPU per worker if any, else CPU), cpu, cuda"
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address nameserver, master and workers listen on"
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="workers' forward-pass precision: auto = fp32 with TF32 on GPUs, bf16 on CPUs with native bf16",
    )
    parser.add_argument(
        "--step-mode",
        choices=STEP_MODES,
        default="auto",
        help="workers' training steps: auto = captured once per job as a CUDA graph and replayed (CUDA "
        "only; eager where capture fails, with the reason in the result), eager, graph",
    )
    parser.add_argument(
        "--keep-checkpoints", action="store_true", help="keep RUN_DIR/checkpoints at the end of the run"
    )
    add_failure_arguments(parser)
    parser.set_defaults(tls=True)  # not on the action: the help would show "--no-tls (default: True)"
    parser.add_argument(
        "--no-tls",
        dest="tls",
        action="store_false",
        default=argparse.SUPPRESS,
        help="no TLS: with a loopback --host only, and then any user of this machine can reach the ports "
        "and control the run; by default every connection is mutually authenticated with certificates "
        "made for the run in RUN_DIR/tls",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="stream every line of the master's and workers' logs (always in RUN_DIR/logs) to the terminal",
    )
    parser.add_argument(
        "--dashboard",
        action="store_true",
        help="start the live web dashboard (python -m analysis serve) beside the search, on a free port of "
        "127.0.0.1, and print its URL",
    )
    add_run_arguments(parser)
    parser.add_argument(
        "--resume",
        type=Path,
        default=None,
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR (its master stopped): results kept, settings and space from the "
        "run, new workers started",
    )
    return parser  # fmt: skip


def worker_count(args: argparse.Namespace) -> int:
    if args.workers_per_gpu < 1:
        raise LaunchError(f"--workers-per-gpu must be at least 1, got {args.workers_per_gpu}")
    return (
        args.n_workers
        if args.n_workers is not None
        else default_worker_count(args.device, args.workers_per_gpu)
    )


def resumed_settings(args: argparse.Namespace, argv: Sequence[str] | None) -> LaunchSettings:
    """``--resume RUN_DIR``: the run's own settings; options that conflict with them are refused."""
    from hpo_service.errors import HpoServiceError
    from hpo_service.resume import explicit_options, settings_fields

    try:
        fields = settings_fields(args.resume, explicit_options(build_parser(), argv))
    except HpoServiceError as error:
        raise LaunchError(str(error)) from None
    return LaunchSettings(
        n_workers=worker_count(args), run_dir=fields["run_dir"], run_id=fields["run_id"],
        spec=RunSpec.from_fields(fields), data_dir=args.data_dir, download=args.download, device=args.device,
        host=args.host, verbose=args.verbose, precision=args.precision, step_mode=args.step_mode,
        keep_checkpoints=args.keep_checkpoints, resume=True, tls=args.tls, max_attempts=args.max_attempts,
        job_timeout=args.job_timeout,
        dashboard_command=serve_command(args.resume) if args.dashboard else None,
    )  # fmt: skip


def settings_from_args(args: argparse.Namespace, argv: Sequence[str] | None = None) -> LaunchSettings:
    if args.resume is not None:
        return resumed_settings(args, argv)
    run_id = args.run_id or default_run_id(args.optimizer)
    run_dir = args.run_dir or Path("runs") / run_id
    return LaunchSettings(
        n_workers=worker_count(args),
        run_dir=run_dir,
        run_id=run_id,
        spec=spec_from_args(args),
        data_dir=args.data_dir,
        download=args.download,
        device=args.device,
        host=args.host,
        verbose=args.verbose,
        precision=args.precision,
        step_mode=args.step_mode,
        keep_checkpoints=args.keep_checkpoints,
        tls=args.tls,
        max_attempts=args.max_attempts,
        job_timeout=args.job_timeout,
        dashboard_command=serve_command(run_dir) if args.dashboard else None,
    )


def main(argv: Sequence[str] | None = None) -> int:
    # First: a SIGINT inherited as ignored (started in the background) must still stop the launch.
    interrupt_on_stop_signals()
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        try:
            settings = settings_from_args(args, argv)
        except (LaunchError, SettingsError) as error:
            parser.error(str(error))
        configure_logging(args.verbose, prefix="launch ")
        if not args.verbose and sys.stderr.isatty():  # the processes' full records are in RUN_DIR/logs
            short_log_lines()
        return launch(settings)
    except KeyboardInterrupt:
        return 130  # stopped before any process started


if __name__ == "__main__":
    sys.exit(main())
