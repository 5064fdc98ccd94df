"""Where a worker gets the run's spec (dataset, seed, budgets, continuation, ...): the one source of it.

A worker given ``--run-dir`` reads ``RUN_DIR/run.json``, which the master writes when it creates the run
(the worker waits for it, up to its connect timeout, as it waits for ``nameserver.json``). A worker without
the shared run dir (``--nameserver`` only, on another machine) asks the run's master for the same record
over the wire. Nothing that defines the run is taken from the worker's own command line.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from hpo_service import run_files
from hpo_service.errors import RunDirectoryError
from hpo_service.nameserver import NameserverAddress
from hpo_service.records import RunDescription

logger = logging.getLogger(__name__)

# Seconds between looks at a run dir whose run.json is not written yet.
POLL_INTERVAL = 0.05


def read_run_description(run_dir: Path, run_id: str, timeout: float) -> RunDescription:
    """``RUN_DIR/run.json`` once the master has written it; RunDirectoryError when it does not appear within
    ``timeout`` seconds, cannot be read, or describes another run."""
    path = run_dir / run_files.RUN_DESCRIPTION
    if not run_files.wait_for(path, timeout, POLL_INTERVAL):
        raise RunDirectoryError(
            f"--run-dir {run_dir}: no {run_files.RUN_DESCRIPTION} within {timeout:g} s (the master writes it "
            "when it creates the run; is this the master's run dir?)"
        )
    try:
        description = RunDescription.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise RunDirectoryError(f"{path} is not a readable run description ({error})") from None
    return checked(description, run_id, str(path))


def ask_master(address: NameserverAddress, run_id: str, timeout: float) -> RunDescription:
    """The run's description from its master (the worker has no shared run dir)."""
    from hpo_service.hpbandster.membership import run_description_from_master

    try:
        record = run_description_from_master(address, run_id, timeout)
        description = RunDescription.from_dict(record)
    except TimeoutError as error:
        raise RunDirectoryError(str(error)) from None
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise RunDirectoryError(f"the master of run {run_id!r} sent an unreadable spec ({error})") from None
    logger.info("the run's spec came from its master over the wire (no shared run dir)")
    return checked(description, run_id, "the master's spec")


def checked(description: RunDescription, run_id: str, source: str) -> RunDescription:
    if description.run_id != run_id:
        raise RunDirectoryError(
            f"{source} is run {description.run_id!r}, not --run-id {run_id!r}: give the run's own id and dir"
        )
    return description
