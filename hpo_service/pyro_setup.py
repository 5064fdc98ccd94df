"""The one module that touches ``Pyro4.config`` (process-global state)."""

from __future__ import annotations

import Pyro4


def configure_pyro() -> None:
    """Serpent only, no Nagle delay. Idempotent; call it from entry points before any Pyro object exists.

    Never the pickle serializer: with pickle anyone who reaches a port can run code in our processes.
    Without TCP_NODELAY each small job message waits ~50 ms for the delayed ACK.
    """
    Pyro4.config.SERIALIZER = "serpent"
    Pyro4.config.SERIALIZERS_ACCEPTED = {"serpent"}
    Pyro4.config.SOCK_NODELAY = True
    # Each daemon serves one connection per thread; the default pool of 40 is too small for a dispatcher
    # talking to many workers at once.
    Pyro4.config.THREADPOOL_SIZE = 256
