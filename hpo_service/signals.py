"""Stop signals as ``KeyboardInterrupt`` in entry points, so every stop path runs the same cleanup; while
threads share locks with the main thread, the interrupt waits for a safe point (:func:`deferred_stop`)."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# Exit code of a process ended by a second stop signal, as a shell reports a Ctrl-C.
FORCED_EXIT_CODE = 130


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def interrupt_on_stop_signals() -> None:
    """SIGINT and SIGTERM raise ``KeyboardInterrupt`` in the main thread.

    Set explicitly because a process started in the background by a non-interactive shell inherits an
    ignored SIGINT, and ``docker stop`` sends SIGTERM: both would otherwise skip the orderly shutdown
    (results saved, workers told to stop) and end in a SIGKILL.
    """
    for signum in STOP_SIGNALS:
        signal.signal(signum, _interrupt)


class StopRequest:
    """The stop signal that arrived while :func:`deferred_stop` held it back (None: none yet)."""

    def __init__(self) -> None:
        self.signal_name: str | None = None

    def requested(self) -> bool:
        return self.signal_name is not None

    def check(self) -> None:
        """Raise the held-back ``KeyboardInterrupt`` here, a point where this thread holds no lock."""
        if self.signal_name is not None:
            raise KeyboardInterrupt(self.signal_name)


@contextlib.contextmanager
def deferred_stop() -> Iterator[StopRequest]:
    """Inside: a stop signal that would raise ``KeyboardInterrupt`` is recorded in the yielded
    :class:`StopRequest` instead, for the code to raise at its safe points (:meth:`StopRequest.check`, the
    waits of :class:`hpo_service.hpbandster.fixed_master.FixedMaster`); on leaving, a recorded one is raised.

    Why: Python raises a signal's exception wherever the main thread is, also right after a lock was
    acquired inside ``Condition.__enter__``, where no ``with`` block will release it. HpBandSter's
    dispatcher shares one plain lock between its threads and the master's; left held, the shutdown that
    follows the Ctrl-C waits for it forever. A second stop signal ends the process at once (the result logs
    are flushed line by line; ``--resume`` repairs a cut line). Signals run in the main thread only, so
    elsewhere there is nothing to defer; handlers other than the two that raise ``KeyboardInterrupt``
    (ours, Python's default for SIGINT) are left alone.
    """
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def hold_back(signum: int, frame: FrameType | None) -> None:
        if request.signal_name is not None:
            # No logging here: the interrupted code may hold the log handler's lock.
            os.write(2, b"second stop signal: exiting now\n")
            os._exit(FORCED_EXIT_CODE)
        request.signal_name = signal.Signals(signum).name

    replaced = {}
    for signum in STOP_SIGNALS:
        handler = signal.getsignal(signum)
        if handler in (_interrupt, signal.default_int_handler):
            replaced[signum] = handler
            signal.signal(signum, hold_back)
    try:
        yield request
    finally:
        for signum, handler in replaced.items():
            signal.signal(signum, handler)
    request.check()
