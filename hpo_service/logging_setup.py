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
    handler.addFilter(shorten_forbidden_picks)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    if not verbose:
        logging.getLogger("hpbandster").setLevel(logging.WARNING)
        # Pyro4 logs every failed connection attempt at ERROR before raising; our code reports the
        # failures that matter, so retry loops do not flood the log.
        logging.getLogger("Pyro4").setLevel(logging.CRITICAL)


def shorten_forbidden_picks(record: logging.LogRecord) -> bool:
    """BOHB's density model does not know forbidden clauses: when its pick is forbidden, HpBandSter logs the
    whole configuration and a traceback as a warning, then samples a random configuration (which respects
    them). That is expected with our dataset-aware spaces, so it becomes one debug line."""
    if record.name.startswith("hpbandster") and "ForbiddenValueError" in record.getMessage():
        record.msg, record.args = "BOHB's model picked a forbidden configuration; using a random one", None
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger().isEnabledFor(logging.DEBUG)
    return True
