"""How launch.local reads its children's exits (issue 14): the workers' orderly exit at the end of a run is
not a failure, and a master killed by a signal is reported as a shell would (128 + N)."""

from __future__ import annotations

import signal
import subprocess
import sys

from launch.local import ProcessGroup, exit_code, supervise


def python(code: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", code])


def test_workers_shut_down_by_the_master_at_the_end_are_not_a_failure() -> None:
    group = ProcessGroup()
    # The master shuts its workers down (they exit 0 at once), then writes its results for a while.
    group.master = python("import time; time.sleep(2)")
    group.workers = [python("pass"), python("pass")]
    group.restarts = [0, 0]
    assert supervise(group, poll_interval=0.05) == 0


def test_workers_that_fail_while_the_master_waits_stop_the_run() -> None:
    group = ProcessGroup()
    group.master = python("import time; time.sleep(60)")
    group.workers = [python("raise SystemExit(2)")]
    group.restarts = [0]
    assert supervise(group, poll_interval=0.05) == 1
    assert group.master.poll() is not None  # stopped, not left behind


def test_a_master_killed_by_a_signal_exits_as_the_shell_reports_it() -> None:
    group = ProcessGroup()
    group.master = python("import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    assert supervise(group, poll_interval=0.05) == 128 + signal.SIGKILL
    assert exit_code(-signal.SIGTERM) == 143 and exit_code(3) == 3
