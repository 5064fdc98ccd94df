"""``python -m workers``: one worker process that trains the configurations the master sends it."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from hpo_service.errors import HpoServiceError
from hpo_service.logging_setup import configure_logging
from hpo_service.nameserver import NameserverAddress
from hpo_service.tls import add_tls_arguments
from workers.settings import PRECISIONS, STEP_MODES, WorkerSettings

logger = logging.getLogger("workers")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m workers",
        description="A worker of a distributed search: reads the run's spec (RUN_DIR/run.json, or from the "
        "master when it has no run dir), loads the run's dataset once, registers with the nameserver and "
        "trains every configuration the master sends it until the master shuts it down.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--run-id", required=True, help="the master's run id")
    parser.add_argument("--nameserver", type=NameserverAddress.argument, default=None, metavar="HOST:PORT")
    parser.add_argument(
        "--run-dir",
        type=Path,
        default=None,
        help="the run's shared dir: the run's spec (run.json), the nameserver address and checkpoints are "
        "read there; without it the spec comes from the master and nothing resumes from checkpoints",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="directory with the dataset files (e.g. MNIST/raw/*-ubyte.gz)",
    )
    parser.add_argument(
        "--download", action="store_true", help="download the dataset with torchvision when it is missing"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument(
        "--workers-on-host", type=int, default=1, help="worker processes sharing this host's CPU cores"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: cores / workers-on-host)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address this worker listens on for jobs")
    add_tls_arguments(parser, from_run_dir=True)
    parser.add_argument(
        "--connect-timeout",
        type=float,
        default=WorkerSettings.connect_timeout,
        help="seconds to wait for the nameserver and the run's master (at start, and for a nameserver that "
        "went away) before giving up with exit code 1",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="forward-pass precision: auto = fp32 with TF32 on GPUs (measured faster than bf16 for these "
        "networks), bf16 on CPUs with native bf16, else fp32",
    )
    parser.add_argument(
        "--step-mode",
        choices=STEP_MODES,
        default="auto",
        help="auto = each job's training step captured once as a CUDA graph and replayed (on CUDA; eager "
        "where capture is not possible, with the reason in the result), eager, graph",
    )
    parser.add_argument("--verbose", action="store_true")
    return parser  # fmt: skip


def settings_from_args(args: argparse.Namespace) -> WorkerSettings:
    return WorkerSettings(
        run_id=args.run_id,
        nameserver=args.nameserver,
        run_dir=args.run_dir,
        data_dir=args.data_dir,
        download=args.download,
        device=args.device,
        workers_on_host=args.workers_on_host,
        threads=args.threads,
        host=args.host,
        tls_dir=args.tls_dir,
        allow_insecure=args.insecure,
        connect_timeout=args.connect_timeout,
        precision=args.precision,
        step_mode=args.step_mode,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = settings_from_args(args)
    except HpoServiceError as error:
        parser.error(str(error))
    configure_logging(args.verbose, prefix="worker ")
    from workers.process import run_worker

    try:
        return run_worker(settings)
    except (HpoServiceError, ValueError, OSError) as error:
        logger.error("%s", error)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
