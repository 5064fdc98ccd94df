"""What one worker process does: device and threads, data once, then serve jobs until shut down."""

from __future__ import annotations

import logging
import os
import time
from functools import partial
from pathlib import Path

import Pyro4.errors
import torch

from hpo_service.nameserver import (
    NameserverAddress,
    current_credentials,
    read_credentials,
    wait_for_nameserver,
)
from hpo_service.pyro_setup import configure_pyro
from hpo_service.records import RunDescription
from hpo_service.run_spec import RunSpec
from hpo_service.tls import in_run_dir
from workers.continuation import continuation_plan
from workers.data import DatasetTensors, load_dataset
from workers.device import (
    configure_device,
    configure_threads,
    device_description,
    select_device,
    threads_per_worker,
)
from workers.precision import resolve_precision
from workers.run_source import ask_master, read_run_description
from workers.settings import WorkerSettings
from workers.warm_up import start_early_imports, warm_up
from workers.worker import TrainingWorker

logger = logging.getLogger(__name__)

SPLIT_SEED = 0


def run_tls_dir(settings: WorkerSettings) -> Path | None:
    """The run's credentials: --tls-dir, else RUN_DIR/tls, looked at once the master wrote nameserver.json
    (it makes the certificates before), so a worker started with a hand-started master finds them."""
    if settings.tls_dir is not None or settings.allow_insecure or settings.run_dir is None:
        return settings.tls_dir
    directory = in_run_dir(settings.run_dir)
    return directory if directory.is_dir() else None


def run_worker(settings: WorkerSettings) -> int:
    """Serve jobs until the master shuts this worker down; returns the process exit code."""
    started = time.monotonic()
    device = select_device(settings.device)
    threads = settings.threads or threads_per_worker(settings.workers_on_host)
    configure_threads(threads)
    configure_device(device)
    precision = resolve_precision(settings.precision, device)
    name = device_description(device, threads)
    imports = start_early_imports()
    try:
        run, data, address = open_run(settings, device)
    finally:
        # Also on an error: a thread still inside torch when the interpreter exits aborts it in C++.
        imports.join()
    warm_up(device, data, precision.name, settings.step_mode)
    worker = TrainingWorker(
        settings.run_id,
        data=data,
        device=device,
        device_name=name,
        seed=run.spec.seed,
        precision=precision.name,
        step_mode=settings.step_mode,
        continuation=continuation_plan(run.spec, settings.run_dir),
        nameserver=address.host,
        nameserver_port=address.port,
        host=settings.host,
        # A run dir's nameserver.json names the current nameserver: a resumed master writes a new one.
        nameserver_source=(
            partial(current_credentials, settings.run_dir)
            if settings.nameserver is None and settings.run_dir is not None
            else None
        ),
        patience=settings.connect_timeout,
        run_started=run.started,
    )
    logger.info(
        "ready in %.1f s: %s on %s (%s), %d training images, run %s, nameserver %s",
        time.monotonic() - started, data.name, name, precision.name, len(data.train_y), settings.run_id,
        address,
    )  # fmt: skip
    return serve(worker)


def open_run(
    settings: WorkerSettings, device: torch.device
) -> tuple[RunDescription, DatasetTensors, NameserverAddress]:
    """The run's description (its spec), its data on ``device`` and its nameserver, answering. With a shared
    run dir the spec is there as soon as the master created the run: the data loads while the master
    starts its nameserver. Without one, the master gives the spec once it listens."""
    run = data = None
    if settings.run_dir is not None:
        run = read_run_description(settings.run_dir, settings.run_id, settings.connect_timeout)
        data = load_data(settings, run.spec, device)
    address = settings.nameserver
    if address is None:
        assert settings.run_dir is not None  # WorkerSettings guarantees one of the two
        address = read_credentials(settings.run_dir, timeout=settings.connect_timeout)
    configure_pyro(run_tls_dir(settings))
    wait_for_nameserver(address, timeout=settings.connect_timeout)
    if run is None or data is None:
        run = ask_master(address, settings.run_id, settings.connect_timeout)
        data = load_data(settings, run.spec, device)
    return run, data, address


def load_data(settings: WorkerSettings, spec: RunSpec, device: torch.device) -> DatasetTensors:
    """The run's dataset, once, on ``device``."""
    return load_dataset(
        # The validation split uses a fixed seed so every worker and every run sees the same split.
        spec.dataset, settings.data_dir, device, seed=SPLIT_SEED, download=settings.download,
        train_limit=spec.train_limit,
    )  # fmt: skip


def serve(worker: TrainingWorker) -> int:
    """Run ``worker`` until the master shuts it down or it gives up; the process exit code."""
    try:
        worker.run(background=False)
    except Pyro4.errors.PyroError as error:
        # After the master's shutdown call the nameserver may already be gone when the worker deregisters.
        if not worker.shutdown_requested:
            raise
        logger.debug("nameserver gone while deregistering: %s", error)
    code = 0
    if worker.exit_error is not None:
        logger.error("giving up: %s", worker.exit_error)
        code = 1
    else:
        logger.info("shut down by the master")
    if worker.busy:
        # The master stopped mid-job (Ctrl-C, end of run): the job's thread is inside torch, and tearing
        # the interpreter down around it aborts in C++ ("terminate called..."). Nothing is left to save.
        logger.info("a job was still running; leaving it")
        logging.shutdown()
        os._exit(code)
    return code
