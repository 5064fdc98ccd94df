"""The run directory, described once: the name of every file and folder a run keeps in ``RUN_DIR``.

Writers and readers (the master, workers, launchers, ``analysis`` and its dashboard) take the names from
here; ``docs/architecture.md`` ("Run directory") gives each one's writer, format and readers, and
``tests/unit/test_run_files.py`` checks that the table and this module name the same files. Plain constants
and their writer and waiter, standard library only: ``analysis`` may import it too.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

# What defines the run and how it ended (hpo_service.records.RunDescription); written by the master.
RUN_DESCRIPTION = "run.json"
# HpBandSter's JSON result log: a line per sampled configuration, a line per finished job.
CONFIGS = "configs.json"
RESULTS = "results.json"
# HpBandSter's pickled Result, written by the master at the end (a pickle: load only your own).
RESULT_PICKLE = "results.pkl"
# The search space as ConfigSpace JSON; a resumed run and analysis read it.
SPACE = "configspace.json"
# The master's live counts (planned, running, queued jobs, busy workers) for terminals and the dashboard.
PROGRESS = "progress.json"
# Where the nameserver of a running master listens, for workers that share the run dir.
NAMESERVER = "nameserver.json"
# A sweep's or grid's plan, and what --space-from-sweep made of a study's scores.
STUDY_PLAN = "sweep.json"
SPACE_FROM_SWEEP = "space-from-sweep.json"
# Folders: each process's log, the workers' checkpoints (continuation), the run's TLS credentials.
LOGS = "logs"
CHECKPOINTS = "checkpoints"
TLS = "tls"

# A new run refuses a dir that holds any of these, non-empty (``--resume`` continues such a run).
RESULT_FILES = (CONFIGS, RESULTS, RESULT_PICKLE)
# Every name above.
ALL = (
    RUN_DESCRIPTION, CONFIGS, RESULTS, RESULT_PICKLE, SPACE, PROGRESS, NAMESERVER, STUDY_PLAN,
    SPACE_FROM_SWEEP, LOGS, CHECKPOINTS, TLS,
)  # fmt: skip


def write_json(path: Path, data: Any) -> None:
    """``data`` as indented JSON at ``path``, replaced in one step: a reader sees the old file or the new."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def wait_for(path: Path, timeout: float, interval: float) -> bool:
    """Whether ``path`` exists as a file within ``timeout`` seconds (looked at every ``interval``): what a
    worker does for a file its master writes when it starts."""
    deadline = time.monotonic() + timeout
    while not path.is_file():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True
