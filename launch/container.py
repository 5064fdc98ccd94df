"""Container entry point: ``python -m launch.container ROLE`` runs one role of the service.

The search is configured by ``HPO_*`` environment variables (``.env.example`` lists them); a variable
that is unset or empty leaves the command-line default of the role's own CLI, so the defaults live in one
place. Roles: ``nameserver``, ``master``, ``worker``, ``analysis`` (arguments pass through),
``health ROLE`` (the compose healthchecks) and ``tls`` (compose's init service: the run's certificates).

Every Pyro connection uses mutual TLS with the run's certificates in ``HPO_TLS_DIR`` (default
``/tls/RUN_ID``, the volume the ``tls`` role writes); ``HPO_INSECURE=true`` runs without them.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from hpo_service.logging_setup import configure_logging
from hpo_service.nameserver import NameserverAddress
from hpo_service.run_spec import ENVIRONMENT as RUN_ENVIRONMENT
from launch.local import visible_gpus

logger = logging.getLogger("launch.container")

ROLES = ("nameserver", "master", "worker", "analysis", "health", "tls")
DEFAULT_RUN_ID = "compose"
DEFAULT_RUNS_ROOT = "/runs"
DEFAULT_DATA_DIR = "/data"
DEFAULT_NAMESERVER_PORT = 9090
DEFAULT_TLS_ROOT = "/tls"
DOCKER_DNS = "127.0.0.11"

# Environment variable -> option of `python -m hpo_service`: the run's options under their own names
# (hpo_service.run_spec: HPO_MAX_BUDGET is --max-budget), then this master process's.
MASTER_OPTIONS = {
    **RUN_ENVIRONMENT,
    "HPO_N_WORKERS": "--min-workers",
    "HPO_PING_INTERVAL": "--ping-interval",
    "HPO_MAX_ATTEMPTS": "--max-attempts",
    "HPO_JOB_TIMEOUT": "--job-timeout",
}
# Environment variable -> option of `python -m workers`: this process's own. The run's (HPO_DATASET,
# HPO_SEED, ...) reach the workers through the master's run.json on the shared runs volume.
WORKER_OPTIONS = {
    "HPO_DEVICE": "--device",
    "HPO_THREADS": "--threads",
    "HPO_CONNECT_TIMEOUT": "--connect-timeout",
    "HPO_PRECISION": "--precision",
    "HPO_STEP_MODE": "--step-mode",
}
FALSE_WORDS = ("0", "false", "no", "off")
TRUE_WORDS = ("1", "true", "yes", "on")


def value(environment: Mapping[str, str], name: str, default: str | None = None) -> str | None:
    text = environment.get(name, "").strip()
    return text or default


def switch(environment: Mapping[str, str], name: str) -> bool | None:
    """A yes/no variable: True, False, or None when unset or empty."""
    text = (value(environment, name) or "").lower()
    if text in TRUE_WORDS or text in FALSE_WORDS:
        return text in TRUE_WORDS
    if text:
        raise ValueError(f"{name}={text!r}: use one of {', '.join(TRUE_WORDS + FALSE_WORDS)}")
    return None


def continuation_options(environment: Mapping[str, str]) -> list[str]:
    """``--no-continuation`` for the master when ``HPO_CONTINUATION`` is false."""
    return ["--no-continuation"] if switch(environment, "HPO_CONTINUATION") is False else []


def runs_dir(environment: Mapping[str, str]) -> str:
    """The run's directory on the shared ``runs`` volume: results, run.json and checkpoints."""
    runs_root = value(environment, "HPO_RUNS_ROOT", DEFAULT_RUNS_ROOT) or DEFAULT_RUNS_ROOT
    return f"{runs_root}/{run_id(environment)}"


def options(environment: Mapping[str, str], table: Mapping[str, str]) -> list[str]:
    arguments: list[str] = []
    for name, option in table.items():
        text = value(environment, name)
        if text is not None:
            arguments += [option, text]
    return arguments


def run_id(environment: Mapping[str, str]) -> str:
    return value(environment, "HPO_RUN_ID", DEFAULT_RUN_ID) or DEFAULT_RUN_ID


def nameserver(environment: Mapping[str, str]) -> NameserverAddress:
    return NameserverAddress.parse(
        value(environment, "HPO_NAMESERVER", f"nameserver:{DEFAULT_NAMESERVER_PORT}") or ""
    )


def advertised_host(environment: Mapping[str, str]) -> str:
    """The address other containers (or hosts) reach this one at.

    On compose's bridge network that is the container's own address; with host networking (workers on
    other machines) it must be given as ``HPO_ADVERTISE_HOST``, since Pyro4 registers it in the
    nameserver and a wrong one is HpBandSter's classic "registered but unreachable" worker.
    """
    given = value(environment, "HPO_ADVERTISE_HOST")
    return given if given is not None else socket.gethostbyname(socket.gethostname())


def master_command(environment: Mapping[str, str]) -> list[str]:
    identifier = run_id(environment)
    runs_root = value(environment, "HPO_RUNS_ROOT", DEFAULT_RUNS_ROOT) or DEFAULT_RUNS_ROOT
    command = [sys.executable, "-m", "hpo_service", "--run-id", identifier]
    command += ["--run-dir", f"{runs_root}/{identifier}", "--nameserver", str(nameserver(environment))]
    command += ["--host", advertised_host(environment)]
    command += continuation_options(environment)
    command += ["--keep-checkpoints"] if switch(environment, "HPO_KEEP_CHECKPOINTS") else []
    command += tls_options(environment)
    command += warm_start_options(environment)
    return command + options(environment, MASTER_OPTIONS)


def warm_start_options(environment: Mapping[str, str]) -> list[str]:
    """``--warm-start`` from ``HPO_WARM_START``: space-separated runs, a bare name being a run on the runs
    volume (``sweep-1`` is ``/runs/sweep-1``)."""
    runs_root = value(environment, "HPO_RUNS_ROOT", DEFAULT_RUNS_ROOT) or DEFAULT_RUNS_ROOT
    names = (value(environment, "HPO_WARM_START") or "").split()
    paths = [name if "/" in name else f"{runs_root}/{name}" for name in names]
    return ["--warm-start", *paths] if paths else []


def read_name(message: bytes, offset: int) -> tuple[str, int]:
    """A DNS name at ``offset`` (labels, maybe compressed); returns it and the offset after it."""
    labels: list[str] = []
    end = None
    while True:
        length = message[offset]
        if length & 0xC0 == 0xC0:  # a pointer to a name earlier in the message
            end = offset + 2 if end is None else end
            offset = ((length & 0x3F) << 8) | message[offset + 1]
            continue
        if length == 0:
            return ".".join(labels), (offset + 1 if end is None else end)
        labels.append(message[offset + 1 : offset + 1 + length].decode("ascii", "replace"))
        offset += 1 + length


def reverse_lookup(address: str, server: str = DOCKER_DNS, timeout: float = 2.0) -> str | None:
    """Ask Docker's embedded DNS for the name of ``address`` (the resolver library would answer from
    /etc/hosts, which holds only the container id)."""
    name = ".".join(reversed(address.split("."))) + ".in-addr.arpa"
    query = struct.pack(">HHHHHH", 0x4850, 0x0100, 1, 0, 0, 0)
    query += b"".join(bytes([len(part)]) + part.encode() for part in name.split("."))
    query += b"\0" + struct.pack(">HH", 12, 1)  # PTR, IN
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as connection:
            connection.settimeout(timeout)
            connection.sendto(query, (server, 53))
            reply = connection.recv(512)
        if struct.unpack(">H", reply[6:8])[0] < 1:
            return None
        _, offset = read_name(reply, 12)
        _, offset = read_name(reply, offset + 4)  # the answer's owner name, after the question's type/class
        return read_name(reply, offset + 10)[0]  # type, class, ttl, length, then the PTR name
    except (OSError, IndexError, struct.error):
        return None


def replica_index(address: str) -> int | None:
    """Compose names replicas PROJECT-worker-N (from 1); returns N - 1, or None outside compose."""
    name = reverse_lookup(address)
    match = re.search(r"-(\d+)(?:\.|$)", name or "")
    return int(match.group(1)) - 1 if match else None


def visible_gpu_count() -> int:
    return len(visible_gpus())


def gpu_for_replica(index: int | None, gpu_count: int, per_gpu: int = 1) -> str:
    """Replica N (from 0) takes GPU (N // per_gpu) mod count: ``per_gpu`` consecutive replicas share a GPU
    (``HPO_WORKERS_PER_GPU``), round-robin when there are more replicas than GPUs x per_gpu."""
    return str(((index or 0) // per_gpu) % gpu_count)


def workers_per_gpu(environment: Mapping[str, str]) -> int:
    text = value(environment, "HPO_WORKERS_PER_GPU", "1") or "1"
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"HPO_WORKERS_PER_GPU={text!r}: give a whole number of at least 1")
    return int(text)


def worker_command(environment: Mapping[str, str], address: str) -> list[str]:
    command = [sys.executable, "-m", "workers", "--run-id", run_id(environment)]
    command += ["--nameserver", str(nameserver(environment)), "--host", address]
    # The master's run dir: the run's spec (run.json), and checkpoints to resume promoted configurations.
    command += ["--run-dir", runs_dir(environment)]
    data_dir = value(environment, "HPO_DATA_DIR")
    if data_dir is None and Path(DEFAULT_DATA_DIR).is_dir():  # the data volume compose mounts
        data_dir = DEFAULT_DATA_DIR
    if data_dir is not None:
        command += ["--data-dir", data_dir]
    # Worker containers on one host share its cores: each takes cores / workers-on-host torch threads.
    workers_on_host = value(environment, "HPO_WORKERS_ON_HOST") or value(environment, "HPO_N_WORKERS")
    if workers_on_host is not None:
        command += ["--workers-on-host", workers_on_host]
    command += tls_options(environment)
    return command + options(environment, WORKER_OPTIONS)


def worker_environment(environment: Mapping[str, str], address: str) -> dict[str, str]:
    """With all GPUs visible (the GPU override file), pin this replica to one of them."""
    result = dict(environment)
    if "CUDA_VISIBLE_DEVICES" in environment or value(environment, "HPO_DEVICE") == "cpu":
        return result
    gpu_count = visible_gpu_count()
    if gpu_count > 0:
        index = replica_index(address)
        result["CUDA_VISIBLE_DEVICES"] = gpu_for_replica(index, gpu_count, workers_per_gpu(environment))
    return result


def tls_dir(environment: Mapping[str, str]) -> str | None:
    """The run's credentials: ``HPO_TLS_DIR``, else ``/tls/RUN_ID``; None with ``HPO_INSECURE=true``."""
    if switch(environment, "HPO_INSECURE"):
        return None
    root = value(environment, "HPO_TLS_ROOT", DEFAULT_TLS_ROOT) or DEFAULT_TLS_ROOT
    return value(environment, "HPO_TLS_DIR", f"{root}/{run_id(environment)}")


def tls_options(environment: Mapping[str, str]) -> list[str]:
    """``--tls-dir DIR`` for the master and the workers, or ``--insecure`` with ``HPO_INSECURE=true``
    (they listen on the container's address, which other containers and machines reach)."""
    directory = tls_dir(environment)
    return ["--insecure"] if directory is None else ["--tls-dir", directory]


def configure_pyro_for(environment: Mapping[str, str]) -> None:
    """TLS (or, with ``HPO_INSECURE=true``, none) for this process's own Pyro calls; SettingsError saying
    what is missing when the certificates are not there."""
    from hpo_service.errors import SettingsError
    from hpo_service.pyro_setup import configure_pyro
    from hpo_service.tls import check

    directory = tls_dir(environment)
    if directory is None:
        configure_pyro()
        return
    try:
        check(Path(directory))
    except SettingsError as error:
        raise SettingsError(
            f"{error}; compose's tls service writes them (HPO_INSECURE=true: no TLS, trusted networks only)"
        ) from None
    configure_pyro(Path(directory))


def make_tls(environment: Mapping[str, str]) -> int:
    """The ``tls`` role: the run's certificates in :func:`tls_dir`, made once per run id and kept for
    every later ``up`` of the same run (a restarted worker, a resumed run, workers on other machines)."""
    from hpo_service.tls import ensure

    directory = tls_dir(environment)
    if directory is None:
        logger.warning("HPO_INSECURE=true: no TLS; anyone who reaches the ports can control the run")
        return 0
    hosts = [nameserver(environment).host, "master", "worker"]
    hosts += [value(environment, "HPO_ADVERTISE_HOST") or ""]
    files = ensure(Path(directory), hosts)
    logger.info("TLS credentials of run %s: %s", run_id(environment), files.directory)
    return 0


def serve_nameserver(environment: Mapping[str, str]) -> int:
    from launch.nameserver_role import serve_until_run_ends

    configure_pyro_for(environment)
    port = int(value(environment, "HPO_NAMESERVER_PORT", str(DEFAULT_NAMESERVER_PORT)) or 0)
    return serve_until_run_ends(port, run_id(environment), allow_insecure=tls_dir(environment) is None)


def health(environment: Mapping[str, str], role: str) -> int:
    """0 when ROLE is up: the nameserver answers; the master or this worker is registered in it."""
    import Pyro4
    import Pyro4.errors

    configure_pyro_for(environment)
    address = nameserver(environment)
    host = "127.0.0.1" if role == "nameserver" else address.host
    try:
        with Pyro4.locateNS(host=host, port=address.port) as proxy:
            names = proxy.list(prefix=f"hpbandster.run_{run_id(environment)}.")
    except Pyro4.errors.PyroError as error:
        print(f"nameserver {host}:{address.port} unreachable: {error}", file=sys.stderr)
        return 1
    if role == "master":
        return 0 if any(name.endswith(".dispatcher") for name in names) else 1
    if role == "worker":
        return 0 if any(f".worker.{socket.gethostname()}" in name for name in names) else 1
    return 0


def run_master(environment: Mapping[str, str], extra: Sequence[str]) -> int:
    """Run the master as a child, then tell the nameserver the run is over, whatever the exit code.

    A master that fails before its dispatcher registers (bad settings, a run dir that holds results)
    would otherwise leave the nameserver and the workers waiting forever.
    """
    command = master_command(environment) + list(extra)
    logger.info("master: %s", " ".join(command))
    child = subprocess.Popen(command, env=dict(environment))

    def forward(signum: int, frame: object) -> None:
        child.send_signal(signum)

    previous = {number: signal.signal(number, forward) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = child.wait()
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    announce_end(environment, code)
    return code


def announce_end(environment: Mapping[str, str], code: int) -> None:
    import Pyro4
    import Pyro4.errors

    from launch.nameserver_role import ended_name

    configure_pyro_for(environment)
    address = nameserver(environment)
    try:
        with Pyro4.locateNS(host=address.host, port=address.port) as proxy:
            proxy._pyroTimeout = 5.0
            # A name, not an object: the nameserver's watch only looks for it.
            proxy.register(ended_name(run_id(environment)), f"PYRO:exit_code_{abs(code)}@localhost:1")
    except Pyro4.errors.PyroError as error:
        logger.warning("could not tell the nameserver that the run ended: %s", error)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if not arguments or arguments[0] not in ROLES:
        print(f"usage: python -m launch.container {{{','.join(ROLES)}}} [ARGS]", file=sys.stderr)
        return 2
    role, rest = arguments[0], arguments[1:]
    environment = dict(os.environ)
    configure_logging(verbose=False, prefix="container ")
    try:
        return run_role(role, rest, environment)
    except ValueError as error:  # a bad HPO_* variable (SettingsError is one): one line, nothing started
        print(f"python -m launch.container {role}: error: {error}", file=sys.stderr)
        return 2


def run_role(role: str, rest: list[str], environment: dict[str, str]) -> int:
    if role == "health":
        return health(environment, rest[0] if rest else "nameserver")
    if role == "nameserver":
        return serve_nameserver(environment)
    if role == "tls":
        return make_tls(environment)
    if role == "master":
        return run_master(environment, rest)
    if role == "analysis":
        command = [sys.executable, "-m", "analysis", *rest]
    else:
        address = advertised_host(environment)
        command = worker_command(environment, address) + rest
        environment = worker_environment(environment, address)
    logger.info("%s: %s", role, " ".join(command))
    # exec: the role's process takes this PID, so stop signals from tini reach it directly.
    os.execvpe(command[0], command, environment)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
