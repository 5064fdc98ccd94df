"""Where checkpoints of promoted configurations live, and the master's side of their lifetime.

Layout (shared by master and workers, so it lives here and imports nothing heavy)::

    RUN_DIR/checkpoints/<config_id as 0_1_2>/<epochs>.pt

A worker writes a configuration's checkpoint after a job on a budget below the run's largest one and
removes that configuration's older ones; the next job of the same configuration (HpBandSter keeps a
configuration's id when successive halving promotes it) resumes from it. The master removes the
checkpoints of every configuration successive halving has dropped (:class:`CheckpointJanitor`, called after
each result) and the whole directory when the run has finished, unless told to keep it (an interrupted run
keeps it: ``--resume`` may continue its brackets).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from hpo_service import run_files

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = run_files.CHECKPOINTS
SUFFIX = ".pt"
# HpBandSter's states of a configuration that successive halving will never run again: not promoted,
# crashed (never promoted), or its iteration (bracket) is over.
FINISHED_STATES = frozenset({"TERMINATED", "CRASHED", "COMPLETED"})


def checkpoint_root(run_dir: Path) -> Path:
    return run_dir / CHECKPOINT_DIR


def config_directory(run_dir: Path, config_id: Sequence[int]) -> Path:
    """The directory of one configuration's checkpoints: ``RUN_DIR/checkpoints/0_1_2``."""
    return checkpoint_root(run_dir) / "_".join(str(int(part)) for part in config_id)


def checkpoint_path(run_dir: Path, config_id: Sequence[int], epochs: int) -> Path:
    """The checkpoint of ``config_id`` after ``epochs`` epochs."""
    return config_directory(run_dir, config_id) / f"{int(epochs)}{SUFFIX}"


def parse_config_directory(name: str) -> tuple[int, ...] | None:
    """The config id a checkpoint directory's name stands for; None for anything else."""
    parts = name.split("_")
    if not all(part.isdigit() for part in parts):
        return None
    return tuple(int(part) for part in parts)


def saved_epochs(directory: Path) -> list[int]:
    """The epochs of the checkpoints in one configuration's directory, largest first (none if missing)."""
    try:
        names = [entry.name for entry in directory.iterdir()]
    except (FileNotFoundError, NotADirectoryError):
        return []
    epochs = [int(name[: -len(SUFFIX)]) for name in names if name.endswith(SUFFIX)]
    # Leftover temporary files of a writer that crashed end in ".tmp-PID", not in ".pt": not listed.
    return sorted((value for value in epochs if value >= 0), reverse=True)


class CheckpointJanitor:
    """The master's result listener that removes the checkpoints successive halving no longer needs.

    ``master`` (an HpBandSter ``Master``, set once the optimizer exists) is read without its lock, as
    :class:`hpo_service.master.ProgressReporter` does: a configuration dropped while we look is removed at
    the next result. Only directories that exist are looked up, so a run without checkpoints costs one
    directory listing per result.
    """

    def __init__(self, run_dir: Path, *, keep: bool = False) -> None:
        self.run_dir = run_dir
        self.keep = keep
        self.master: Any = None

    def __call__(self, job: Any) -> None:
        if self.master is None:
            return
        for config_id in self.finished_configs():
            remove_config(self.run_dir, config_id)

    def finished_configs(self) -> list[tuple[int, ...]]:
        """Configurations with checkpoints that no job will resume from."""
        try:
            names = [entry.name for entry in checkpoint_root(self.run_dir).iterdir()]
        except (FileNotFoundError, NotADirectoryError):
            return []
        states = configuration_states(list(self.master.iterations))
        finished = []
        for name in names:
            config_id = parse_config_directory(name)
            if config_id is not None and states.get(config_id) in FINISHED_STATES:
                finished.append(config_id)
        return finished

    def finish(self) -> None:
        """When the run has finished: remove every checkpoint, unless the run keeps them."""
        root = checkpoint_root(self.run_dir)
        if self.keep or not root.exists():
            return
        shutil.rmtree(root, ignore_errors=True)
        logger.debug("removed the run's checkpoints (%s)", root)


def configuration_states(iterations: Iterable[Any]) -> dict[tuple[int, ...], str]:
    """``{config_id: HpBandSter status}`` over the iterations' ``data`` (``Datum`` objects)."""
    states: dict[tuple[int, ...], str] = {}
    for iteration in iterations:
        # list() copies in one step under the GIL: the master thread may add configurations meanwhile.
        for config_id, datum in list(iteration.data.items()):
            states[tuple(int(part) for part in config_id)] = str(datum.status)
    return states


def remove_config(run_dir: Path, config_id: Sequence[int]) -> None:
    directory = config_directory(run_dir, config_id)
    shutil.rmtree(directory, ignore_errors=True)
    logger.debug("removed the checkpoints of %s", tuple(config_id))


def chain_listeners(*listeners: Callable[[Any], None]) -> Callable[[Any], None]:
    """One result listener that calls ``listeners`` in order."""

    def listener(job: Any) -> None:
        for each in listeners:
            each(job)

    return listener
