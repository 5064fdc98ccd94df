"""The container entry point: HPO_* variables become the roles' command lines; healthchecks; GPU pinning."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import Pyro4
import pytest

from hpo_service import tls
from hpo_service.nameserver import LocalNameserver
from launch import container
from launch.nameserver_role import ended_name
from tests.conftest import REPO


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A run's TLS directory, for command lines that the roles' CLIs check."""
    return str(tls.generate(tmp_path_factory.mktemp("tls") / "run").directory)


def test_master_command_from_environment_leaves_unset_and_empty_values_to_the_cli() -> None:
    environment = {"HPO_RUN_ID": "study", "HPO_MAX_BUDGET": "9", "HPO_ETA": "", "HPO_N_WORKERS": "4"}
    environment["HPO_ADVERTISE_HOST"] = "10.0.0.5"
    command = container.master_command(environment)
    assert command[:3] == [sys.executable, "-m", "hpo_service"]
    arguments = command[3:]
    assert arguments[arguments.index("--run-dir") + 1] == "/runs/study"
    assert arguments[arguments.index("--nameserver") + 1] == "nameserver:9090"
    assert arguments[arguments.index("--host") + 1] == "10.0.0.5"
    assert arguments[arguments.index("--max-budget") + 1] == "9"
    assert arguments[arguments.index("--min-workers") + 1] == "4"
    assert "--eta" not in arguments and "--min-budget" not in arguments


def test_master_command_parses_with_the_master_cli(certificates: str) -> None:
    from hpo_service.__main__ import build_parser, settings_from_args

    environment = {"HPO_RUN_ID": "x", "HPO_ADVERTISE_HOST": "10.0.0.5", "HPO_OPTIMIZER": "hyperband"}
    environment["HPO_TLS_DIR"] = certificates
    settings = settings_from_args(build_parser().parse_args(container.master_command(environment)[3:]))
    assert settings.optimizer == "hyperband"
    assert settings.shutdown_workers  # the master's exit ends the run: it stops the workers
    assert str(settings.nameserver) == "nameserver:9090"
    assert str(settings.tls_dir) == certificates


def test_roles_use_the_runs_certificates_unless_insecure() -> None:
    arguments = container.master_command({"HPO_RUN_ID": "study", "HPO_ADVERTISE_HOST": "10.0.0.5"})
    assert arguments[arguments.index("--tls-dir") + 1] == "/tls/study"
    worker = container.worker_command({"HPO_RUN_ID": "study", "HPO_TLS_DIR": "/secrets/run"}, "172.19.0.4")
    assert worker[worker.index("--tls-dir") + 1] == "/secrets/run"
    insecure = {"HPO_INSECURE": "true", "HPO_ADVERTISE_HOST": "10.0.0.5"}
    for command in (container.master_command(insecure), container.worker_command(insecure, "172.19.0.4")):
        assert "--insecure" in command and "--tls-dir" not in command


def test_tls_role_makes_the_certificates_once_per_run_id(tmp_path: Path) -> None:
    environment = {"HPO_RUN_ID": "study", "HPO_TLS_ROOT": str(tmp_path)}
    assert container.make_tls(environment) == 0
    made = tls.check(tmp_path / "study")
    first = made.key.read_bytes()
    assert container.make_tls(environment) == 0  # a second `up` of the same run keeps them
    assert made.key.read_bytes() == first
    assert made.key.stat().st_mode & 0o077 == 0


def test_roles_without_certificates_fail_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HPO_TLS_ROOT", str(tmp_path))
    assert container.main(["health", "nameserver"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "ca.pem is missing" in error and "HPO_INSECURE" in error


def test_worker_command_reads_the_mounted_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(container, "DEFAULT_DATA_DIR", str(tmp_path))  # the compose volume, mounted
    environment = {"HPO_DATASET": "mnist", "HPO_N_WORKERS": "3", "HPO_DEVICE": "cpu", "HPO_THREADS": ""}
    command = container.worker_command(environment, "172.19.0.4")
    arguments = command[3:]
    assert command[:3] == [sys.executable, "-m", "workers"]
    assert arguments[arguments.index("--run-id") + 1] == "compose"
    assert arguments[arguments.index("--host") + 1] == "172.19.0.4"
    assert arguments[arguments.index("--data-dir") + 1] == str(tmp_path)
    assert arguments[arguments.index("--workers-on-host") + 1] == "3"
    assert arguments[arguments.index("--device") + 1] == "cpu"
    # The dataset is the run's: the worker reads it from the master's run.json on the runs volume.
    assert "--threads" not in arguments and "--dataset" not in arguments
    monkeypatch.setattr(container, "DEFAULT_DATA_DIR", str(tmp_path / "not-mounted"))
    assert "--data-dir" not in container.worker_command({}, "172.19.0.4")


def test_worker_command_parses_with_the_worker_cli(certificates: str) -> None:
    from workers.__main__ import build_parser, settings_from_args

    environment = {"HPO_RUN_ID": "r", "HPO_N_WORKERS": "2", "HPO_TLS_DIR": certificates}
    command = container.worker_command(environment, "172.19.0.4")
    settings = settings_from_args(build_parser().parse_args(command[3:]))
    assert settings.run_id == "r"
    assert settings.workers_on_host == 2
    assert settings.nameserver is not None and settings.nameserver.port == 9090


@pytest.mark.parametrize(
    ("index", "count", "expected"), [(0, 2, "0"), (1, 2, "1"), (2, 2, "0"), (None, 4, "0")]
)
def test_replicas_take_gpus_round_robin(index: int | None, count: int, expected: str) -> None:
    assert container.gpu_for_replica(index, count) == expected


def test_workers_per_gpu_packs_consecutive_replicas_on_one_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(container, "visible_gpu_count", lambda: 2)
    monkeypatch.setattr(container, "replica_index", lambda address: int(address.rsplit(".", 1)[1]))
    environment = {"HPO_WORKERS_PER_GPU": "3"}
    gpus = [
        container.worker_environment(environment, f"10.0.0.{index}")["CUDA_VISIBLE_DEVICES"]
        for index in range(6)
    ]
    assert gpus == ["0", "0", "0", "1", "1", "1"]
    with pytest.raises(ValueError, match="HPO_WORKERS_PER_GPU"):
        container.worker_environment({"HPO_WORKERS_PER_GPU": "0"}, "10.0.0.1")


def test_no_gpu_no_pinning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(container, "visible_gpu_count", lambda: 0)
    assert "CUDA_VISIBLE_DEVICES" not in container.worker_environment({}, "172.19.0.4")


def test_gpu_pinning_uses_the_replica_number(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(container, "visible_gpu_count", lambda: 2)
    monkeypatch.setattr(container, "reverse_lookup", lambda address: "main-worker-4.main_default")
    assert container.worker_environment({}, "172.19.0.4")["CUDA_VISIBLE_DEVICES"] == "1"
    # An explicit choice wins.
    given = container.worker_environment({"CUDA_VISIBLE_DEVICES": "3"}, "172.19.0.4")
    assert given["CUDA_VISIBLE_DEVICES"] == "3"


def ptr_reply(owner_compressed: bool) -> bytes:
    """A DNS reply as Docker's resolver sends it, with or without a compression pointer."""

    def encode(name: str) -> bytes:
        return b"".join(bytes([len(part)]) + part.encode() for part in name.split(".")) + b"\0"

    question = encode("4.0.19.172.in-addr.arpa") + struct.pack(">HH", 12, 1)
    owner = b"\xc0\x0c" if owner_compressed else encode("4.0.19.172.in-addr.arpa")
    data = encode("main-worker-3.main_default")
    answer = owner + struct.pack(">HHIH", 12, 1, 600, len(data)) + data
    return struct.pack(">HHHHHH", 1, 0x8180, 1, 1, 0, 0) + question + answer


@pytest.mark.parametrize("compressed", [False, True])
def test_ptr_reply_is_decoded(compressed: bool) -> None:
    reply = ptr_reply(compressed)
    _, offset = container.read_name(reply, 12)
    _, offset = container.read_name(reply, offset + 4)
    assert container.read_name(reply, offset + 10)[0] == "main-worker-3.main_default"


def test_reverse_lookup_without_a_dns_server_is_none() -> None:
    # Nothing listens on this loopback port: the lookup gives up instead of raising.
    assert container.reverse_lookup("127.0.0.1", server="127.0.0.1", timeout=0.2) is None


def test_health_of_nameserver_and_missing_master() -> None:
    with LocalNameserver("127.0.0.1", 0) as address:
        # A plain nameserver on loopback: what is under test is the health logic, not TLS.
        environment = {"HPO_NAMESERVER": str(address), "HPO_RUN_ID": "health", "HPO_INSECURE": "true"}
        assert container.health(environment, "nameserver") == 0
        assert container.health(environment, "master") == 1
        with Pyro4.locateNS(host=address.host, port=address.port) as proxy:
            proxy.register("hpbandster.run_health.dispatcher", "PYRO:x@127.0.0.1:1")
        assert container.health(environment, "master") == 0
    assert container.health({"HPO_NAMESERVER": str(address), "HPO_INSECURE": "1"}, "master") == 1  # gone


def test_unknown_role_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert container.main(["frobnicate"]) == 2
    assert "usage: python -m launch.container" in capsys.readouterr().err


def test_master_role_announces_the_end_even_when_the_master_fails(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "failed"
    run_dir.mkdir(parents=True)
    (run_dir / "results.json").write_text("[]\n")  # the master refuses a run dir that holds results
    with LocalNameserver("127.0.0.1", 0) as address:
        environment = {
            "HPO_NAMESERVER": str(address),
            "HPO_RUN_ID": "failed",
            "HPO_RUNS_ROOT": str(tmp_path / "runs"),
            "HPO_ADVERTISE_HOST": "127.0.0.1",
            "HPO_INSECURE": "true",
            "PYTHONPATH": str(REPO),
        }
        assert container.run_master(environment, []) == 2
        with Pyro4.locateNS(host=address.host, port=address.port) as proxy:
            assert list(proxy.list(prefix=ended_name("failed"))) == [ended_name("failed")]
