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
from workers.settings import DATASETS, PRECISIONS, WorkerSettings

logger = logging.getLogger("workers")

DATASET_CHOICES = DATASETS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m workers",
        description="A worker of a distributed search: loads the dataset once, registers with the nameserver "
        "and trains every configuration the master sends it until the master shuts it down.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--run-id", required=True, help="the master's run id")
    parser.add_argument("--nameserver", type=NameserverAddress.argument, default=None, metavar="HOST:PORT")
    parser.add_argument(
        "--run-dir", type=Path, default=None, help="shared run dir; read the nameserver address from it"
    )
    parser.add_argument(
        "--dataset",
        choices=DATASET_CHOICES,
        default="digits",
        help="digits is embedded (scikit-learn) and needs no network",
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
    parser.add_argument("--seed", type=int, default=0, help="training seed (weights and batch order)")
    parser.add_argument("--host", default="127.0.0.1", help="address this worker listens on for jobs")
    add_tls_arguments(parser, from_run_dir=True)
    parser.add_argument(
        "--connect-timeout",
        type=float,
        default=WorkerSettings.connect_timeout,
        help="seconds to wait for the nameserver and the run's master (at start, and for a nameserver that "
        "went away) before giving up with exit code 1",
    )
    parser.add_argument("--train-limit", type=int, default=None, help="use only the first N training images")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="forward-pass precision: auto = bf16 on GPUs that have it (else fp16 with gradient scaling) and "
        "on CPUs with native bf16 (else fp32)",
    )
    parser.add_argument(
        "--no-continuation",
        dest="continuation",
        action="store_false",
        help="train every job from scratch instead of resuming promoted configurations from checkpoints",
    )
    parser.add_argument(
        "--max-budget",
        type=float,
        default=None,
        help="the run's largest budget (schedule horizon); default: read from the run dir's run.json",
    )
    parser.add_argument("--verbose", action="store_true")
    return parser  # fmt: skip


def settings_from_args(args: argparse.Namespace) -> WorkerSettings:
    return WorkerSettings(
        run_id=args.run_id,
        nameserver=args.nameserver,
        run_dir=args.run_dir,
        dataset=args.dataset,
        data_dir=args.data_dir,
        download=args.download,
        device=args.device,
        workers_on_host=args.workers_on_host,
        threads=args.threads,
        seed=args.seed,
        host=args.host,
        tls_dir=args.tls_dir,
        allow_insecure=args.insecure,
        connect_timeout=args.connect_timeout,
        train_limit=args.train_limit,
        precision=args.precision,
        continuation=args.continuation,
        max_budget=args.max_budget,
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
