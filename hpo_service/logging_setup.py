"""Logging for entry points (``__main__`` modules and the launcher); library modules only get loggers."""

from __future__ import annotations

import logging
import sys


def configure_logging(verbose: bool = False, prefix: str = "") -> None:
    """Readable one-line records on stderr; HpBandSter's chatter only with ``verbose``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(f"%(asctime)s {prefix}%(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    if not verbose:
        logging.getLogger("hpbandster").setLevel(logging.WARNING)
        # Pyro4 logs every failed connection attempt at ERROR before raising; our code reports the
        # failures that matter, so retry loops do not flood the log.
        logging.getLogger("Pyro4").setLevel(logging.CRITICAL)
