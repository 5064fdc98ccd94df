"""``python -m hpo_service``: run the master of one search (BOHB, Hyperband, random search) or study
(sweep, grid)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from hpo_service.errors import HpoServiceError
from hpo_service.logging_setup import configure_logging
from hpo_service.nameserver import NameserverAddress
from hpo_service.resume import explicit_options
from hpo_service.run_spec import add_run_arguments, spec_from_args
from hpo_service.settings import (
    MasterSettings,
    add_failure_arguments,
    check_fresh_run_dir,
    default_run_id,
)
from hpo_service.signals import interrupt_on_stop_signals
from hpo_service.sweeps.options import STUDY_OPTIMIZERS
from hpo_service.tls import add_tls_arguments, in_run_dir
from hpo_service.tls import ensure as ensure_tls

logger = logging.getLogger("hpo_service.master")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m hpo_service",
        description="Master of a distributed hyperparameter search. Workers (python -m workers) connect "
        "through the Pyro4 nameserver; results are written to --run-dir as they arrive.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--run-id", default=None, help="name of the run; workers must use the same (default: OPTIMIZER-TIME)"
    )
    parser.add_argument("--run-dir", type=Path, default=None, help="where results go (default: runs/RUN_ID)")
    parser.add_argument("--min-workers", type=int, default=1, help="workers to wait for before the first job")
    parser.add_argument(
        "--nameserver",
        type=NameserverAddress.argument,
        default=None,
        metavar="HOST:PORT",
        help="join this nameserver instead of starting one",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address the master (and its nameserver) listens on"
    )
    add_tls_arguments(parser, made_in_run_dir=True)
    parser.add_argument(
        "--nameserver-port", type=int, default=0, help="port of the nameserver it starts (0: any free port)"
    )
    parser.add_argument(
        "--ping-interval",
        type=int,
        default=MasterSettings.ping_interval,
        help="seconds between checks of every worker: a dead or frozen worker is found within about this",
    )
    add_failure_arguments(parser)
    parser.add_argument("--keep-workers", action="store_true", help="do not shut workers down at the end")
    parser.add_argument(
        "--keep-checkpoints", action="store_true", help="keep RUN_DIR/checkpoints at the end of the run"
    )
    parser.add_argument("--verbose", action="store_true", help="debug logging, including HpBandSter's")
    add_run_arguments(parser)
    parser.add_argument(
        "--resume",
        type=Path,
        default=None,
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR whose master stopped: its results are kept, its settings and "
        "space come from the run (options it fixes may be left out), new results are appended",
    )
    return parser  # fmt: skip


def resumed_settings(args: argparse.Namespace, given: dict[str, object]) -> MasterSettings:
    """Settings of ``--resume RUN_DIR``: the run's own, with the options that do not touch the search."""
    from hpo_service.resume import settings_fields

    return MasterSettings(**settings_fields(args.resume, given), **process_options(args))


def process_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options of this master process, not of the search: a resumed run may change them."""
    return {
        "min_workers": args.min_workers,
        "nameserver": args.nameserver,
        "host": args.host,
        "nameserver_port": args.nameserver_port,
        "tls_dir": args.tls_dir,
        "allow_insecure": args.insecure,
        "ping_interval": args.ping_interval,
        "max_attempts": args.max_attempts,
        "job_timeout": args.job_timeout,
        "shutdown_workers": not args.keep_workers,
        "keep_checkpoints": args.keep_checkpoints,
    }


def with_run_credentials(settings: MasterSettings) -> MasterSettings:
    """Mutual TLS unless told otherwise: a new run without --tls-dir (or --insecure) gets certificates made
    for it in RUN_DIR/tls, as launch.local does, where workers given --run-dir find them. A resumed run
    keeps what it had (its RUN_DIR/tls if any): workers already waiting must not be locked out."""
    if settings.tls_dir is not None or settings.allow_insecure:
        return settings
    directory = in_run_dir(settings.run_dir)
    if settings.resume and not directory.is_dir():
        logger.warning("the run %s has no %s: Pyro connections are not authenticated", settings.run_id,
                       directory)  # fmt: skip
        return settings
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    files = ensure_tls(directory, hosts=[settings.host])
    logger.info("TLS credentials of the run: %s (workers given --run-dir use them)", files.directory)
    return replace(settings, tls_dir=files.directory)


def settings_from_args(args: argparse.Namespace) -> MasterSettings:
    run_id = args.run_id or default_run_id(args.optimizer)
    return MasterSettings(
        run_dir=args.run_dir or Path("runs") / run_id,
        run_id=run_id,
        **spec_from_args(args).values(),
        **process_options(args),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.resume is not None:
            settings = resumed_settings(args, explicit_options(build_parser(), argv))
        else:
            settings = settings_from_args(args)
            check_fresh_run_dir(settings.run_dir)
    except HpoServiceError as error:
        parser.error(str(error))
    configure_logging(args.verbose, prefix="master ")
    interrupt_on_stop_signals()
    try:
        settings = with_run_credentials(settings)
        # Imported here so that --help and argument errors answer without loading HpBandSter's stack (and
        # inside the try: a Ctrl-C during the import is an interrupt like any other).
        from hpo_service.console import live_console
        from hpo_service.master import run_master

        # On a terminal: a live status block instead of a line per job (those go to RUN_DIR/logs).
        with live_console(settings.run_dir, sys.stderr.isatty() and not args.verbose):
            run_master(settings)
    except HpoServiceError as error:
        logger.error("%s", error)
        return 2
    except OSError as error:  # the run dir became unwritable, the disk filled: one line, not a traceback
        logger.error("cannot write the run's files: %s", error)
        return 2
    except KeyboardInterrupt:
        logger.warning(
            "interrupted; every finished result is in %s (configs.json, results.json)", settings.run_dir
        )
        return 130
    analysis = "analysis sweep" if settings.optimizer in STUDY_OPTIMIZERS else "analysis"
    logger.info("results in %s; analyse with: python -m %s %s", settings.run_dir, analysis, settings.run_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
