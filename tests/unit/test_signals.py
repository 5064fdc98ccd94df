"""Stop signals: ``KeyboardInterrupt`` in entry points, held back to safe points by ``deferred_stop``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from hpo_service.signals import STOP_SIGNALS, StopRequest, deferred_stop
from tests.conftest import REPO


def take_signal(signum: int) -> None:
    """Send ``signum`` to this process and run Python code until its handler has had its turn."""
    os.kill(os.getpid(), signum)
    for _ in range(100):
        time.sleep(0.001)


@pytest.mark.usefixtures("stop_handlers")
def test_a_stop_signal_raises_keyboard_interrupt_at_once_outside_the_deferral() -> None:
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
        take_signal(signal.SIGTERM)


@pytest.mark.usefixtures("stop_handlers")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_inside_the_deferral_a_stop_signal_is_recorded_and_raised_on_leaving(signum: int) -> None:
    handlers = {number: signal.getsignal(number) for number in STOP_SIGNALS}
    reached_the_end = False
    with pytest.raises(KeyboardInterrupt, match=signal.Signals(signum).name), deferred_stop() as stop:
        assert not stop.requested()
        take_signal(signum)  # nothing raised here: the code goes on to its next safe point
        assert stop.requested() and stop.signal_name == signal.Signals(signum).name
        reached_the_end = True
    assert reached_the_end
    assert {number: signal.getsignal(number) for number in handlers} == handlers


@pytest.mark.usefixtures("stop_handlers")
def test_check_raises_the_held_back_interrupt_where_the_code_calls_it() -> None:
    with pytest.raises(KeyboardInterrupt, match="SIGINT"), deferred_stop() as stop:
        stop.check()  # nothing requested: no exception
        take_signal(signal.SIGINT)
        stop.check()
        pytest.fail("check() did not raise the held-back interrupt")


@pytest.mark.usefixtures("stop_handlers")
def test_an_exception_inside_the_deferral_goes_out_unchanged_and_handlers_come_back() -> None:
    with pytest.raises(ValueError, match="inside"), deferred_stop():
        take_signal(signal.SIGINT)
        raise ValueError("inside")
    with pytest.raises(KeyboardInterrupt):
        take_signal(signal.SIGINT)


@pytest.mark.usefixtures("stop_handlers")  # for the test's own handlers to be undone afterwards
def test_pythons_default_ctrl_c_is_deferred_and_other_handlers_are_left_alone() -> None:
    seen: list[int] = []
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    with pytest.raises(KeyboardInterrupt), deferred_stop() as stop:
        take_signal(signal.SIGTERM)  # a handler of someone else's: it still runs, nothing deferred
        assert seen == [signal.SIGTERM] and not stop.requested()
        take_signal(signal.SIGINT)
        assert stop.requested()


def test_outside_the_main_thread_the_deferral_changes_nothing() -> None:
    outcome: list[object] = []

    def body() -> None:
        try:
            with deferred_stop() as stop:
                outcome.append(stop)
        except BaseException as error:  # noqa: BLE001 - the test reports whatever it was
            outcome.append(error)

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert len(outcome) == 1 and isinstance(outcome[0], StopRequest)


def test_a_second_stop_signal_ends_the_process_at_once() -> None:
    """The first Ctrl-C waits for a safe point; one that never comes must not make Ctrl-C useless."""
    script = textwrap.dedent(
        """
        import os, signal, sys, time
        from hpo_service.signals import deferred_stop, interrupt_on_stop_signals
        interrupt_on_stop_signals()
        with deferred_stop():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.1)
            print("first held back", flush=True)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
            print("not reached", flush=True)
        """
    )
    finished = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )
    assert finished.returncode == 130, finished
    assert finished.stdout.splitlines() == ["first held back"]
    assert "second stop signal: exiting now" in finished.stderr
