"""Stop signals as ``KeyboardInterrupt`` in entry points, so every stop path runs the same cleanup."""

from __future__ import annotations

import signal
from types import FrameType


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def interrupt_on_stop_signals() -> None:
    """SIGINT and SIGTERM raise ``KeyboardInterrupt`` in the main thread.

    Set explicitly because a process started in the background by a non-interactive shell inherits an
    ignored SIGINT, and ``docker stop`` sends SIGTERM: both would otherwise skip the orderly shutdown
    (results saved, workers told to stop) and end in a SIGKILL.
    """
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
