"""Which run directories the server may read: those named on the command line, and the runs directly
inside a named parent directory (found again as new runs start). Requests name a run by its id, looked
up in this table only, so no path from a request ever reaches the file system: ``../`` and run dirs that
were not named cannot be read.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from analysis.dashboard.follow import RunFollower, is_run_dir
from analysis.load import RunDirError
from hpo_service import run_files

# How often (at most) the named parents are listed again for new runs.
RESCAN_SECONDS = 1.0
# What a run dir holds before its first log line (``launch.local --dashboard`` starts the server then):
# the process logs, the TLS credentials, the nameserver's address, the search space, the live counts, a
# study's plan and what --space-from-sweep made.
STARTING = (
    run_files.LOGS, run_files.TLS, run_files.NAMESERVER, run_files.SPACE, run_files.CHECKPOINTS,
    run_files.PROGRESS, run_files.STUDY_PLAN, run_files.SPACE_FROM_SWEEP,
)  # fmt: skip


@dataclass(frozen=True)
class Root:
    """A directory named on the command line: a run itself, or a parent of runs (``parent=True``)."""

    path: Path
    label: str


def check_root(path: Path) -> Root:
    """``path`` as a root; raises :class:`RunDirError` when it is missing or holds no run.

    An empty directory, or one holding only what a run holds as it starts (:data:`STARTING`), is
    accepted: a run (or runs inside it) may start there after the server did.
    """
    if not path.exists():
        raise RunDirError(f"{path}: no such directory")
    if not path.is_dir():
        raise RunDirError(f"{path}: not a directory")
    resolved = path.resolve()
    starting = all(entry.name in STARTING for entry in resolved.iterdir())
    if not is_run_dir(resolved) and not starting and not child_runs(resolved):
        raise RunDirError(
            f"{path}: not a run directory (no configs.json, results.json or run.json) "
            "and no run directories inside it"
        )
    return Root(resolved, path.name or str(path))


def child_runs(parent: Path) -> list[Path]:
    """The run directories directly inside ``parent`` that really are inside it (no symbolic link out)."""
    found = []
    try:
        entries = sorted(parent.iterdir())
    except OSError:
        return []
    for entry in entries:
        resolved = entry.resolve()
        if resolved.parent == parent and is_run_dir(resolved):
            found.append(resolved)
    return found


class RunRegistry:
    """Run id -> :class:`RunFollower`, for the roots given; ids are the dir name (``parent/child`` for
    runs inside a named parent), made unique with ``#2``, ``#3``."""

    def __init__(self, roots: Sequence[Root]) -> None:
        self.roots = tuple(roots)
        self.followers: dict[str, RunFollower] = {}
        self.paths: dict[Path, str] = {}
        self.lock = threading.Lock()
        self.scanned = -float("inf")

    def discover(self) -> None:
        """Add runs that appeared in the roots since the last scan (at most every RESCAN_SECONDS)."""
        with self.lock:
            now = time.monotonic()
            if now - self.scanned < RESCAN_SECONDS:
                return
            self.scanned = now
            for root in self.roots:
                if is_run_dir(root.path):
                    self.add(root.path, root.label)
                else:
                    for child in child_runs(root.path):
                        self.add(child, f"{root.label}/{child.name}")

    def add(self, path: Path, label: str) -> None:
        if path in self.paths:
            return
        run_id, number = label, 1
        while run_id in self.followers:
            number += 1
            run_id = f"{label}#{number}"
        self.paths[path] = run_id
        self.followers[run_id] = RunFollower(path)

    def get(self, run_id: str) -> RunFollower | None:
        """The follower of a known run id, else ``None`` (the caller answers 404)."""
        self.discover()
        with self.lock:
            return self.followers.get(run_id)

    def all(self) -> dict[str, RunFollower]:
        self.discover()
        with self.lock:
            return dict(self.followers)
