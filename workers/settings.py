"""A worker process's settings: one frozen object, validated on construction, built in ``__main__``.

Only this process's own options: what defines the run (dataset, seed, budgets, ...) comes from the run's
spec (``workers.run_source``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hpo_service.errors import SettingsError
from hpo_service.nameserver import NameserverAddress
from hpo_service.tls import check as check_tls
from hpo_service.tls import in_run_dir, require_authentication

# Here, not in workers.precision, so that the CLIs can offer them without importing torch.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# How a training step runs (workers.graph_step): auto = one captured CUDA graph per job on CUDA, else eager.
STEP_MODES = ("auto", "eager", "graph")


@dataclass(frozen=True)
class WorkerSettings:
    run_id: str
    # Where to find the nameserver: an explicit address, or the run dir the master writes nameserver.json to.
    nameserver: NameserverAddress | None = None
    run_dir: Path | None = None
    data_dir: Path | None = None
    download: bool = False
    device: str = "auto"
    # Worker processes sharing this host's cores; torch threads per worker = cores // workers_on_host.
    workers_on_host: int = 1
    threads: int | None = None
    host: str = "127.0.0.1"
    # The run's TLS credentials (hpo_service.tls); None: RUN_DIR/tls when the run dir has one.
    tls_dir: Path | None = None
    # Listen on a non-loopback host without credentials (anyone who reaches it could stop this worker).
    allow_insecure: bool = False
    connect_timeout: float = 120.0
    # Forward-pass precision (workers.precision): auto = fp32 (TF32) on CUDA, bf16 on CPUs with native bf16.
    precision: str = "auto"
    # Training steps replayed as a captured CUDA graph (workers.graph_step) or run eagerly.
    step_mode: str = "auto"

    def __post_init__(self) -> None:
        if self.nameserver is None and self.run_dir is None:
            raise SettingsError(
                "give --nameserver HOST:PORT or --run-dir (where the master writes nameserver.json)"
            )
        if self.run_dir is not None and self.run_dir.exists() and not self.run_dir.is_dir():
            raise SettingsError(f"--run-dir {self.run_dir} is not a directory")
        if self.tls_dir is None and self.run_dir is not None and in_run_dir(self.run_dir).is_dir():
            # launch.local writes the run's certificates there: --run-dir alone is enough.
            object.__setattr__(self, "tls_dir", in_run_dir(self.run_dir))
        require_authentication(self.host, self.tls_dir, self.allow_insecure)
        if self.tls_dir is not None:
            check_tls(self.tls_dir)
        if self.workers_on_host < 1:
            raise SettingsError(f"--workers-on-host must be at least 1, got {self.workers_on_host}")
        if self.threads is not None and self.threads < 1:
            raise SettingsError(f"--threads must be at least 1, got {self.threads}")
        if self.connect_timeout <= 0:
            raise SettingsError(f"--connect-timeout must be positive, got {self.connect_timeout:g}")
        if self.data_dir is not None and not self.download and not self.data_dir.is_dir():
            raise SettingsError(f"--data-dir {self.data_dir} is not a directory")
        if self.step_mode not in STEP_MODES:
            raise SettingsError(f"--step-mode must be one of {', '.join(STEP_MODES)}, got {self.step_mode!r}")
        if self.precision not in PRECISIONS:
            raise SettingsError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
