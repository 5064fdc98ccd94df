"""The progress state behind the per-job lines and the terminal's status block, the incremental log reader,
and which process-log lines reach the terminal in each mode: pure parts, no processes."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from hpo_service.console import ConsoleHandler, LiveStatus, ResultsFeed, swapped_log_handlers
from hpo_service.follow import AppendedLines
from hpo_service.progress import LiveCounts, Outcome, ProgressState, format_duration, outcome_of_line
from launch.console import LIVE, PLAIN, VERBOSE, LogFeed, LogForwarder


def ok(config_id: tuple[int, ...], budget: float, loss: float) -> Outcome:
    return Outcome(config_id, budget, loss, "ok")


def test_the_incumbent_is_the_best_loss_at_the_largest_budget_so_far() -> None:
    state = ProgressState(planned=10)
    assert state.record(ok((0, 0, 0), 1, 0.5))
    assert not state.record(ok((0, 0, 1), 1, 0.6))  # worse on the same budget
    assert state.record(ok((0, 0, 1), 3, 0.7))  # worse loss, but a larger budget wins
    assert not state.record(ok((0, 0, 2), 1, 0.1))  # better loss on a smaller budget does not
    assert state.record(ok((1, 0, 0), 3, 0.2))
    assert state.best is not None
    assert (state.best.loss, state.best.config_id, state.best.budget) == (0.2, (1, 0, 0), 3)
    assert (state.finished, state.failures, state.iteration) == (5, 0, 1)


def test_failed_and_crashed_jobs_count_as_failures_and_never_as_incumbent() -> None:
    state = ProgressState(planned=3)
    assert not state.record(Outcome((0, 0, 0), 9, 0.0, "failed", reason="diverged"))
    assert not state.record(Outcome((0, 0, 1), 9, None, "crashed"))
    assert not state.record(Outcome((0, 0, 2), 9, float("nan"), "ok"))
    assert state.best is None
    assert (state.finished, state.failures) == (3, 2)


def test_time_left_follows_the_speed_since_the_clock_started() -> None:
    state = ProgressState(planned=100)
    assert state.remaining_seconds(10.0) is None  # nothing finished yet
    for index in range(40):  # a resumed run: 40 results were there before
        state.record(ok((0, 0, index), 1, 0.5))
    state.start_clock()
    assert state.remaining_seconds(10.0) is None
    for index in range(10):
        state.record(ok((1, 0, index), 1, 0.5))
    # 10 jobs in 20 s, 50 left: 100 s.
    assert state.remaining_seconds(20.0) == pytest.approx(100.0)
    assert format_duration(100.0) == "1:40"
    assert format_duration(3725.0) == "1:02:05"


def test_result_lines_become_outcomes_and_broken_lines_none() -> None:
    line = json.dumps(
        [[2, 0, 1], 9.0, {"submitted": 0}, {"loss": 0.25, "info": {"status": "ok", "test_error": 0.3}}, None]
    )
    assert outcome_of_line(line) == Outcome((2, 0, 1), 9.0, 0.25, "ok", 0.3, None)
    crashed = json.dumps([[0, 0, 0], 1.0, {}, None, "Traceback ..."])
    assert outcome_of_line(crashed) == Outcome((0, 0, 0), 1.0, None, "crashed")
    assert outcome_of_line('[[0, 0, 0], 1.0, {"submi') is None  # cut short by a kill
    assert outcome_of_line("[1, 2]") is None


def test_live_counts_round_trip_and_a_missing_file_is_none(tmp_path: Path) -> None:
    assert LiveCounts.read(tmp_path) is None
    LiveCounts(planned=130, running=4, queued=1, workers=4, updated=5.0).write(tmp_path)
    assert LiveCounts.read(tmp_path) == LiveCounts(130, 4, 1, 4, 5.0)
    (tmp_path / "progress.json").write_text("{")
    assert LiveCounts.read(tmp_path) is None


def test_appended_lines_returns_only_complete_new_lines(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    lines = AppendedLines(path)
    assert lines.read() == []  # not there yet
    path.write_bytes(b"one\ntw")
    assert lines.read() == ["one"]
    with open(path, "ab") as handle:
        handle.write(b"o\nthree\n")
    assert lines.read() == ["two", "three"]
    assert lines.read() == []
    path.write_bytes(b"new\n")  # replaced by a shorter file: read from its start
    assert lines.read() == ["new"]


MASTER_JOB = "12:00:01 master INFO hpo_service.master: [1/4] iteration 0 (0, 0, 0) budget 1: loss 0.5 (ok)"
WORKER_READY = "12:00:00 worker INFO workers.process: ready in 4.5 s"
WORKER_ERROR = "12:00:02 worker ERROR workers.process: no such file: train-images-idx3-ubyte.gz"
TRACEBACK = ["Traceback (most recent call last):", '  File "x.py", line 1', "FileNotFoundError: x"]
REDISPATCH = (
    "12:00:03 master WARNING hpo_service.hpbandster.dispatch: re-dispatching job (0, 0, 1) (attempt 2 of 3)"
)


def test_on_a_terminal_only_the_first_line_of_each_warning_or_error_is_shown() -> None:
    worker = LogForwarder(LIVE, "worker-1")
    assert worker.select([WORKER_READY, WORKER_ERROR, *TRACEBACK]) == [WORKER_ERROR]
    master = LogForwarder(LIVE, "master")
    assert master.select([MASTER_JOB, REDISPATCH]) == [REDISPATCH]


def test_plain_output_keeps_the_masters_lines_and_the_workers_problems_with_tracebacks() -> None:
    master = LogForwarder(PLAIN, "master")
    assert master.select([MASTER_JOB, REDISPATCH]) == [MASTER_JOB, REDISPATCH]
    worker = LogForwarder(PLAIN, "worker-1")
    assert worker.select([WORKER_READY, *TRACEBACK, WORKER_ERROR, *TRACEBACK, WORKER_READY]) == [
        WORKER_ERROR,
        *TRACEBACK,
    ]
    # Output before any record (a crash before logging was set up, a C++ abort) is a problem.
    assert LogForwarder(PLAIN, "worker-2").select(["terminate called without an active exception"]) == [
        "terminate called without an active exception"
    ]


def test_verbose_shows_every_line() -> None:
    lines = [WORKER_READY, *TRACEBACK, "12:00:00 worker DEBUG x: y"]
    assert LogForwarder(VERBOSE, "worker-1").select(lines) == lines


def test_log_feed_follows_every_process_log_including_ones_that_appear_later(tmp_path: Path) -> None:
    shown: list[str] = []
    feed = LogFeed(tmp_path, LIVE, shown.append)
    (tmp_path / "master.log").write_text(MASTER_JOB + "\n")
    feed.poll()
    assert shown == []
    (tmp_path / "worker-2.log").write_text(WORKER_READY + "\n" + WORKER_ERROR + "\n")
    with open(tmp_path / "master.log", "a") as handle:
        handle.write(REDISPATCH + "\n")
    feed.poll()
    feed.poll()
    assert shown == [REDISPATCH, WORKER_ERROR]


def result_line(config_id: list[int], budget: float, loss: float, status: str = "ok") -> str:
    info = {"status": status, "reason": None if status == "ok" else "diverged", "test_error": 0.5}
    return json.dumps([config_id, budget, {}, {"loss": loss, "info": info}, None]) + "\n"


def test_results_feed_prints_each_new_incumbent_and_each_failure_above_the_block(tmp_path: Path) -> None:
    printed: list[str] = []
    status = LiveStatus(console=None)  # type: ignore[arg-type]  # never rendered here
    status.print_line = printed.append  # type: ignore[method-assign]
    feed = ResultsFeed(tmp_path, status)
    # A resumed run's results: counted, not announced again.
    (tmp_path / "results.json").write_text(
        result_line([0, 0, 3], 1, 0.9) + result_line([0, 0, 4], 1, 1.0, "error")
    )
    feed.poll()
    assert printed == [] and status.state.finished == 2
    with open(tmp_path / "results.json", "a") as handle:
        handle.write(result_line([0, 0, 0], 1, 0.5) + result_line([0, 0, 1], 1, 0.6))
        handle.write(result_line([0, 0, 2], 1, 1.0, "failed"))
    feed.poll()
    with open(tmp_path / "results.json", "a") as handle:
        handle.write(result_line([0, 0, 1], 3, 0.7))
    feed.poll()
    assert printed == [
        "new best 0.5000 (test error 0.5000) at budget 1: (0, 0, 0), job 3",
        "job (0, 0, 2) budget 1 failed: diverged",
        "new best 0.7000 (test error 0.5000) at budget 3: (0, 0, 1), job 6",
    ]
    assert status.state.finished == 6 and status.state.failures == 2
    # The clock of the time left started with the first job that finished while the feed looked.
    assert status.clock is not None and status.state.finished_at_start == 3


def test_status_lines_say_what_is_running_and_how_long_is_left() -> None:
    status = LiveStatus(console=None)  # type: ignore[arg-type]
    assert status.counts_line() == "waiting for the master | failures 0"
    status.counts = LiveCounts(planned=10, running=0, queued=0, workers=0)
    status.state.planned = 10
    assert status.counts_line() == "waiting for workers | failures 0"
    status.counts = LiveCounts(planned=10, running=3, queued=1, workers=4)
    for index in range(5):
        status.state.record(ok((0, 0, index), 1, 0.5))
    assert status.counts_line() == "iteration 1 | running 3, queued 1 | workers 3/4 busy | failures 0"
    assert status.jobs_line(status.started + 30.0) == "5/10 jobs  0:30"  # no clock yet: no estimate
    status.start_clock()
    assert status.clock is not None
    for index in range(5, 7):
        status.state.record(ok((0, 0, index), 1, 0.5))
    # Two jobs in the 10 s since the clock started, 3 left: 15 s.
    assert (
        status.jobs_line(status.clock + 10.0)
        == f"7/10 jobs  {format_duration(status.clock + 10.0 - status.started)}, ~0:15 left"
    )


def test_console_handler_writes_short_lines_and_handlers_come_back(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    written: list[str] = []
    root = logging.getLogger()
    before = list(root.handlers)
    with swapped_log_handlers([ConsoleHandler(written.append)]):
        logging.getLogger("launch.local").warning("worker 1 exited\nwith details")
        logging.getLogger("launch.local").info("run r in d")
    assert root.handlers == before
    assert written == ["WARNING launch.local: worker 1 exited", "run r in d"]
