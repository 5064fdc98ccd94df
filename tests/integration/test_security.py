"""Authenticated Pyro connections: with the run's certificates everything works; without them (stock
Pyro4, TLS without a certificate, a certificate from another CA) nobody can register a worker, call the
dispatcher, read or remove the nameserver's entries or shut a worker down. Real processes on 127.0.0.1.

TLS is configured per process (Pyro4 caches its SSL contexts), so every TLS client here is a subprocess
(``tests/support/pyro_client.py``) and this test process never turns TLS on.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hpo_service import tls
from hpo_service.brackets import planned_jobs
from hpo_service.errors import SettingsError
from hpo_service.nameserver import read_credentials
from hpo_service.pyro_setup import tls_enabled
from hpo_service.settings import MasterSettings
from tests.conftest import REPO, ProcessRun, fake_worker_command, master_command, result_lines, wait_for
from workers.settings import WorkerSettings

RUN_ID = "test-security"
SEARCH = ("--optimizer", "hyperband", "--min-budget", "1", "--max-budget", "3", "--eta", "3",
          "--n-iterations", "1", "--ping-interval", "1")  # fmt: skip
CLIENT = str(REPO / "tests" / "support" / "pyro_client.py")
# What a refused connection looks like to the client: the server closes it during or right after the TLS
# handshake (plain Pyro4 gets no answer at all to its first message).
TLS_REFUSALS = ("CERTIFICATE_REQUIRED", "UNKNOWN_CA", "EOF occurred in violation of protocol")


def client(*arguments: str) -> Any:
    completed = subprocess.run(
        [sys.executable, CLIENT, *arguments],
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout)


def stranger_credentials(tmp_path: Path, run_tls: tls.TlsFiles) -> Path:
    """A certificate from another CA, with the run's CA certificate (public) as the one it trusts: the
    refusal is then the run's servers rejecting the stranger, not the stranger rejecting them."""
    other = tls.generate(tmp_path / "other-ca")
    forged = tmp_path / "stranger"
    forged.mkdir()
    for path in (other.certificate, other.key, run_tls.ca):
        shutil.copy(path, forged / path.name)
    return forged


@pytest.mark.integration
@pytest.mark.slow
def test_only_holders_of_the_runs_certificates_take_part(process_run: ProcessRun, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_tls = tls.generate(run_dir / "tls")
    credentials = ("--tls-dir", str(run_tls.directory))
    # Three workers to start: the master waits for all three, so the run stands still while the
    # strangers try their luck against a registered dispatcher and two registered workers.
    master = process_run.start("master", master_command(run_dir, RUN_ID, *SEARCH, "--min-workers", "3",
                                                        *credentials))  # fmt: skip
    workers = [
        process_run.start(
            f"worker{index}", fake_worker_command(run_dir, RUN_ID, "--name", f"w{index}", *credentials)
        )  # fmt: skip
        for index in range(2)
    ]
    # The stock rogue worker: the fake worker without certificates. It cannot even register.
    rogue = process_run.start("rogue", fake_worker_command(run_dir, RUN_ID, "--name", "rogue", "--insecure"))
    nameserver = read_credentials(run_dir, timeout=60)
    address = str(nameserver)
    insider = ("--mode", "tls", "--tls-dir", str(run_tls.directory), "--nameserver", address)
    prefix = f"hpbandster.run_{RUN_ID}."

    def registered() -> dict[str, str]:
        return {name: uri for name, uri in client(*insider, "list").items() if name.startswith(prefix)}

    assert wait_for(lambda: len(registered()) == 3, timeout=60), process_run.log("master")
    before = registered()  # the insider also bound to the dispatcher and each worker: they answer it
    dispatcher = next(uri for name, uri in before.items() if name.endswith(".dispatcher"))
    worker_uris = [uri for name, uri in before.items() if ".worker." in name]

    # A TCP connection that never starts its handshake must not block the nameserver for others.
    forged = stranger_credentials(tmp_path, run_tls)
    with socket.create_connection((nameserver.host, nameserver.port)):
        # plain: stock Pyro4; no-cert: TLS trusting the run's CA, no certificate; tls: another CA's.
        for mode in ("plain", "no-cert", "tls"):
            arguments = ["--mode", mode, "--tls-dir", str(forged), "--nameserver", address, "attack"]
            arguments += ["--run-id", RUN_ID, "--dispatcher", dispatcher]
            arguments += [option for uri in worker_uris for option in ("--worker", uri)]
            outcomes = client(*arguments)
            assert len(outcomes) == 5 + len(worker_uris)
            for attack, outcome in outcomes.items():
                assert outcome.startswith("refused: ConnectionClosedError: "), (mode, attack, outcome)
                if mode != "plain":
                    assert any(reason in outcome for reason in TLS_REFUSALS), (mode, attack, outcome)
        assert registered() == before  # nothing registered or removed, and everything still answers
    assert all(worker.poll() is None for worker in workers)
    assert "hpo_service.pyro_setup: Pyro connections: mutual TLS" in process_run.log("worker0")
    assert master.poll() is None and result_lines(run_dir) == []

    workers.append(process_run.start("worker2", fake_worker_command(run_dir, RUN_ID, "--name", "w2",
                                                                    *credentials)))  # fmt: skip
    assert master.wait(timeout=90) == 0, process_run.log("master")
    results = result_lines(run_dir)
    assert len(results) == planned_jobs("hyperband", 1, 3, 3, 1)
    assert all(result[3]["loss"] > 0 for result in results)  # no forged -1e9
    assert {result[3]["info"]["worker"] for result in results} <= {"w0", "w1", "w2"}  # none for "rogue"
    assert rogue.poll() is None or rogue.returncode != 0  # still trying to reach the nameserver, or gave up
    for worker in workers:  # shut down by the master, not by a stranger
        assert worker.wait(timeout=30) == 0


@pytest.mark.integration
@pytest.mark.slow
def test_a_master_started_by_hand_makes_certificates(process_run: ProcessRun, tmp_path: Path) -> None:
    """No --tls-dir, no --insecure, on 127.0.0.1: the master makes RUN_DIR/tls as launch.local does, a
    worker given only --run-dir finds it, and a client without the run's certificates is refused."""
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "hpo_service", "--run-dir", str(run_dir), "--run-id", RUN_ID, *SEARCH,
               "--min-workers", "2"]  # fmt: skip
    master = process_run.start("master", command)
    process_run.start("worker0", fake_worker_command(run_dir, RUN_ID, "--name", "w0"))
    nameserver = read_credentials(run_dir, timeout=60)
    run_tls = tls.check(run_dir / "tls")
    insider = ("--mode", "tls", "--tls-dir", str(run_tls.directory), "--nameserver", str(nameserver))
    prefix = f"hpbandster.run_{RUN_ID}."

    def registered() -> dict[str, str]:
        return {name: uri for name, uri in client(*insider, "list").items() if name.startswith(prefix)}

    assert wait_for(lambda: len(registered()) == 2, timeout=60), process_run.log("master")
    dispatcher = next(uri for name, uri in registered().items() if name.endswith(".dispatcher"))
    forged = stranger_credentials(tmp_path, run_tls)
    for mode in ("plain", "no-cert", "tls"):
        arguments = ["--mode", mode, "--tls-dir", str(forged), "--nameserver", str(nameserver), "attack"]
        outcomes = client(*arguments, "--run-id", RUN_ID, "--dispatcher", dispatcher)
        assert len(outcomes) == 5
        for attack, outcome in outcomes.items():
            assert outcome.startswith("refused: ConnectionClosedError: "), (mode, attack, outcome)
    assert "hpo_service.pyro_setup: Pyro connections: mutual TLS" in process_run.log("worker0")
    process_run.start("worker1", fake_worker_command(run_dir, RUN_ID, "--name", "w1"))
    assert master.wait(timeout=90) == 0, process_run.log("master")
    assert len(result_lines(run_dir)) == planned_jobs("hyperband", 1, 3, 3, 1)


# --- refusing to listen on the network without credentials -----------------------------------------


def test_master_on_a_non_loopback_host_needs_tls_or_insecure(tmp_path: Path) -> None:
    # Validation only: nothing binds a public address in tests.
    command = [sys.executable, "-m", "hpo_service", "--run-dir", str(tmp_path / "r"), "--host", "10.0.0.5"]
    completed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert completed.returncode == 2
    error = completed.stderr.strip().splitlines()[-1]
    assert "--host 10.0.0.5 is reachable from other machines and there is no --tls-dir" in error
    assert not (tmp_path / "r").exists()
    MasterSettings(run_dir=tmp_path / "r", run_id="x", host="10.0.0.5", allow_insecure=True)
    run_tls = tls.generate(tmp_path / "tls")
    MasterSettings(run_dir=tmp_path / "r", run_id="x", host="10.0.0.5", tls_dir=run_tls.directory)
    for host in ("127.0.0.1", "localhost", "::1", "127.0.1.1"):
        MasterSettings(run_dir=tmp_path / "r", run_id="x", host=host)
    for host in ("0.0.0.0", "", "myhost", "192.168.1.2"):
        with pytest.raises(SettingsError, match="reachable from other machines"):
            MasterSettings(run_dir=tmp_path / "r", run_id="x", host=host)


def test_worker_on_a_non_loopback_host_needs_tls_or_insecure(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="reachable from other machines"):
        WorkerSettings(run_id="x", run_dir=tmp_path, host="10.0.0.7")
    WorkerSettings(run_id="x", run_dir=tmp_path, host="10.0.0.7", allow_insecure=True)
    # launch.local's certificates in RUN_DIR/tls are found from --run-dir alone.
    tls.generate(tmp_path / "tls")
    assert WorkerSettings(run_id="x", run_dir=tmp_path, host="10.0.0.7").tls_dir == tmp_path / "tls"


def test_launcher_refuses_no_tls_off_loopback(tmp_path: Path) -> None:
    from launch.local import LaunchError, build_parser, settings_from_args

    arguments = ["--run-dir", str(tmp_path / "r"), "--no-tls", "--host", "10.0.0.5"]
    with pytest.raises(LaunchError, match="--no-tls needs a loopback --host"):
        settings_from_args(build_parser().parse_args(arguments))
    settings = settings_from_args(build_parser().parse_args(["--run-dir", str(tmp_path / "r")]))
    assert settings.tls and settings.host == "127.0.0.1"
    assert "--tls-dir" in settings.master_command() and "--tls-dir" in settings.worker_command("cpu")


# --- the certificates -------------------------------------------------------------------------------


def test_generated_certificates_are_private_and_checked(tmp_path: Path) -> None:
    files = tls.generate(tmp_path / "tls", ["nameserver", "10.0.0.5"])
    assert tls.check(files.directory) == files
    assert files.directory.stat().st_mode & 0o777 == 0o700
    assert files.key.stat().st_mode & 0o777 == 0o600
    with pytest.raises(SettingsError, match="not overwriting"):
        tls.generate(files.directory)
    assert tls.ensure(files.directory) == files  # a resumed run keeps its certificates
    other = tls.generate(tmp_path / "other")
    shutil.copy(other.ca, files.ca)
    with pytest.raises(SettingsError, match="node.pem is not signed by ca.pem"):
        tls.check(files.directory)
    files.key.unlink()
    with pytest.raises(SettingsError, match="node.key is missing"):
        tls.check(files.directory)
    with pytest.raises(SettingsError, match="node.key is missing"):
        tls.ensure(files.directory)  # not half replaced
    assert not tls_enabled()  # this test process never turned TLS on


def test_certificate_names_the_hosts(tmp_path: Path) -> None:
    from cryptography import x509

    files = tls.generate(tmp_path / "tls", ["nameserver", "10.0.0.5"])
    names = x509.load_pem_x509_certificate(files.certificate.read_bytes()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    shown = {str(name.value) for name in names.value}
    assert {"localhost", "127.0.0.1", "::1", "nameserver", "10.0.0.5", socket.gethostname()} <= shown


# --- serpent only -------------------------------------------------------------------------------------

SCANNED = ("hpo_service", "workers", "launch", "analysis", "scripts", "Dockerfile", ".env.example")
# Pyro4.config.SERIALIZER = "pickle", SERIALIZERS_ACCEPTED.add("pickle"), PYRO_SERIALIZERS_ACCEPTED=...
PICKLE_ON_THE_WIRE = re.compile(
    r"SERIALIZERS?(?:_ACCEPTED)?\b[^\n]*?(?:=|:|\.add\(|\.update\()[^\n]*\b(pickle|cloudpickle|dill|marshal)\b"
)


@pytest.mark.parametrize(
    ("line", "found"),
    [
        ('Pyro4.config.SERIALIZER = "pickle"', True),
        ('config.SERIALIZERS_ACCEPTED = {"serpent", "pickle"}', True),
        ('Pyro4.config.SERIALIZERS_ACCEPTED.add("dill")', True),
        ("    PYRO_SERIALIZERS_ACCEPTED=serpent,pickle", True),
        ("      PYRO_SERIALIZER: pickle", True),
        ("Never the pickle serializer: with pickle anyone who reaches a port can run code", False),
        ('Pyro4.config.SERIALIZERS_ACCEPTED = {"serpent"}', False),
    ],
)
def test_the_serializer_scan_finds_what_it_should(line: str, found: bool) -> None:
    assert bool(PICKLE_ON_THE_WIRE.search(line)) == found


def test_nothing_enables_a_code_running_serializer() -> None:
    paths = [REPO / name for name in SCANNED] + sorted(REPO.glob("docker-compose*.yml"))
    files = [path for root in paths for path in ([root] if root.is_file() else sorted(root.rglob("*")))]
    scanned = [
        path for path in files if path.is_file() and path.suffix in ("", ".py", ".yml", ".sh", ".example")
    ]
    assert len(scanned) > 50
    offending = [
        f"{path.relative_to(REPO)}: {match.group(0)}"
        for path in scanned
        for match in PICKLE_ON_THE_WIRE.finditer(path.read_text(errors="replace"))
    ]
    assert offending == []
    # And the configuration every process applies.
    import Pyro4

    from hpo_service.pyro_setup import configure_pyro

    configure_pyro()
    assert Pyro4.config.SERIALIZER == "serpent" and {"serpent"} == Pyro4.config.SERIALIZERS_ACCEPTED
    assert Pyro4.config.SOCK_NODELAY
