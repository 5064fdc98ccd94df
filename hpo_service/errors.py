"""The service's exception hierarchy: callers catch these, never bare ``Exception``."""


class HpoServiceError(Exception):
    """Base class of the service's own errors."""


class SettingsError(HpoServiceError, ValueError):
    """A setting or command-line argument is invalid; the message names it."""


class RunDirectoryError(HpoServiceError):
    """A run directory cannot be used: it already holds results, or it is not a run."""


class NameserverError(HpoServiceError):
    """The Pyro4 nameserver cannot be started or reached."""


# Exit code of a worker that finds, at a job, that it read the spec of another start of its run (a stale
# run.json): started again, it reads the current one (hpo_service.hpbandster.worker, launch.local).
STALE_SPEC_EXIT_CODE = 3
