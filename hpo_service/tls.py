"""Per-run certificates for Pyro4's mutual TLS: holding the run's node key is what lets a process take part.

Without them anyone who reaches a port of the service can register a rogue worker, feed the master
results, list or remove the nameserver's entries and shut workers down (``docs/security.md``). With them
every process of a run (nameserver, master, workers, the container helpers) presents the same node
certificate, signed by a certificate authority made for this run alone, and accepts only peers that
present a certificate signed by that authority. The authority's private key is dropped once the node
certificate is signed, so nothing else can ever be signed: the three files below are the run's whole
credential, and a copy of the directory is what a worker on another machine needs.

``python -m hpo_service.tls DIR [--host NAME ...]`` writes them for setups that are not started by
``launch.local`` (which writes ``RUN_DIR/tls``) or compose (an init service writes them to a volume).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import ipaddress
import os
import socket
import ssl
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hpo_service import run_files
from hpo_service.errors import SettingsError

if TYPE_CHECKING:  # imported where used: the CLIs answer --help without loading it
    from cryptography.x509 import GeneralName

CA_FILE = "ca.pem"
CERTIFICATE_FILE = "node.pem"
KEY_FILE = "node.key"
# Long enough for a run that is resumed months later; nothing can be signed after generation anyway.
VALID_DAYS = 730
# Machines' clocks differ: a certificate made on the master's machine is valid on a slower worker's too.
CLOCK_SKEW = datetime.timedelta(hours=1)
LOOPBACK_NAMES = frozenset({"localhost", "ip6-localhost"})


def in_run_dir(run_dir: Path) -> Path:
    """Where a run keeps its credentials when its processes share the run dir (launch.local, SLURM
    scripts); a worker given only ``--run-dir`` looks there."""
    return run_dir / run_files.TLS


@dataclass(frozen=True)
class TlsFiles:
    """The three files of a run's credentials in ``directory``."""

    directory: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "directory", Path(self.directory))  # a str from an environment variable

    @property
    def ca(self) -> Path:
        """The run's certificate authority: peers must present a certificate it signed."""
        return self.directory / CA_FILE

    @property
    def certificate(self) -> Path:
        """This node's certificate (the same for every process of the run), signed by :attr:`ca`."""
        return self.directory / CERTIFICATE_FILE

    @property
    def key(self) -> Path:
        """The node certificate's private key: the secret (mode 0600)."""
        return self.directory / KEY_FILE

    def paths(self) -> tuple[Path, Path, Path]:
        return self.ca, self.certificate, self.key


def is_loopback(host: str) -> bool:
    """True for an address only this machine reaches: 127.0.0.0/8, ::1 or ``localhost``.

    An empty host or 0.0.0.0 (every interface) and every other name count as reachable from outside.
    """
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def require_authentication(host: str, tls_dir: Path | None, allow_insecure: bool) -> None:
    """SettingsError when a process would listen on a non-loopback ``host`` with no credentials.

    Anyone who reaches such a port can take over the run, so it takes an explicit ``--insecure``.
    """
    if tls_dir is None and not allow_insecure and not is_loopback(host):
        raise SettingsError(
            f"--host {host or '(every interface)'} is reachable from other machines and there is no "
            "--tls-dir: anyone who reaches it could control the run; give --tls-dir DIR (python -m "
            "hpo_service.tls DIR writes one) or --insecure on a trusted network"
        )


def check(directory: Path) -> TlsFiles:
    """The credentials in ``directory``, or SettingsError saying in one line what is wrong with them."""
    files = TlsFiles(Path(directory))
    for path in files.paths():
        if not path.is_file():
            raise SettingsError(f"--tls-dir {directory}: {path.name} is missing (python -m hpo_service.tls "
                                f"{directory} writes the run's certificates)")  # fmt: skip
        if not os.access(path, os.R_OK):
            raise SettingsError(f"--tls-dir {directory}: {path.name} is not readable by this user")
    try:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_cert_chain(files.certificate, files.key)
        context.load_verify_locations(cafile=files.ca)
    except (ssl.SSLError, OSError) as error:
        raise SettingsError(f"--tls-dir {directory}: unusable certificate or key ({error})") from None
    _check_signature_and_dates(files)
    return files


def _check_signature_and_dates(files: TlsFiles) -> None:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature

    ca = x509.load_pem_x509_certificate(files.ca.read_bytes())
    node = x509.load_pem_x509_certificate(files.certificate.read_bytes())
    try:
        node.verify_directly_issued_by(ca)
    except (InvalidSignature, ValueError, TypeError):
        raise SettingsError(
            f"--tls-dir {files.directory}: {CERTIFICATE_FILE} is not signed by {CA_FILE}: the files are not "
            "from the same run"
        ) from None
    now = datetime.datetime.now(datetime.timezone.utc)
    for name, certificate in ((CA_FILE, ca), (CERTIFICATE_FILE, node)):
        if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
            raise SettingsError(
                f"--tls-dir {files.directory}: {name} is valid only from {certificate.not_valid_before_utc} "
                f"to {certificate.not_valid_after_utc}; remove the directory to make new certificates"
            )


def default_hosts() -> list[str]:
    """Names and addresses every node certificate carries: loopback, and this machine's host names."""
    hosts = ["localhost", "127.0.0.1", "::1", socket.gethostname()]
    with contextlib.suppress(OSError):  # an unresolvable host name: the plain one is there already
        hosts.append(socket.getfqdn())
    return hosts


def generate(directory: Path, hosts: Iterable[str] = (), *, overwrite: bool = False) -> TlsFiles:
    """Write a new certificate authority and a node certificate it signs into ``directory`` (mode 0700).

    The node certificate names ``hosts`` and :func:`default_hosts` (IP addresses as IP entries), so that
    stock Pyro4, which checks host names, also accepts it where the URIs use those names. Existing files
    are refused unless ``overwrite``: replacing them would lock out every process that has the old ones.
    """
    files = TlsFiles(Path(directory))
    existing = [path.name for path in files.paths() if path.exists()]
    if existing and not overwrite:
        raise SettingsError(f"{directory} already holds {', '.join(existing)}; not overwriting them")
    files.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    files.directory.chmod(0o700)
    ca_pem, certificate_pem, key_pem = _make_certificates([*default_hosts(), *hosts])
    # Key first, certificates last: a reader that finds ca.pem finds the other two.
    _write_atomically(files.key, key_pem, mode=0o600)
    _write_atomically(files.certificate, certificate_pem, mode=0o644)
    _write_atomically(files.ca, ca_pem, mode=0o644)
    return files


def ensure(directory: Path, hosts: Iterable[str] = ()) -> TlsFiles:
    """The credentials in ``directory``: the existing ones (a resumed run), or new ones where there are
    none. A directory with only some of the files is refused rather than half replaced."""
    files = TlsFiles(Path(directory))
    present = [path.exists() for path in files.paths()]
    if not any(present):
        return generate(directory, hosts)
    return check(directory)


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(descriptor, mode)  # whatever the umask
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    os.replace(temporary, path)


def _subject_names(hosts: Iterable[str]) -> list[GeneralName]:
    from cryptography import x509

    names: list[GeneralName] = []
    seen: set[str] = set()
    for given in hosts:
        host = given.strip().strip("[]")
        if not host or host in seen or host in ("0.0.0.0", "::"):
            continue
        seen.add(host)
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def _make_certificates(hosts: Iterable[str]) -> tuple[bytes, bytes, bytes]:
    """PEM bytes of (CA certificate, node certificate, node key); the CA key is never written."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - CLOCK_SKEW, now + datetime.timedelta(days=VALID_DAYS)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"hpo-service run CA {now:%Y%m%d-%H%M%S}")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    node_key = ec.generate_private_key(ec.SECP256R1())
    node = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hpo-service node")]))
        .issuer_name(ca_name)
        .public_key(node_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=True, key_cert_sign=False, crl_sign=False,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        # Every process is both a server (its daemon) and a client (its proxies).
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(_subject_names(hosts)), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key_pem = node_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    pem = serialization.Encoding.PEM
    return ca.public_bytes(pem), node.public_bytes(pem), key_pem


def add_tls_arguments(
    parser: argparse.ArgumentParser, *, from_run_dir: bool = False, made_in_run_dir: bool = False
) -> None:
    """``--tls-dir`` and ``--insecure``, the same for the master and the workers."""
    default = " (default: RUN_DIR/tls when the --run-dir has one)" if from_run_dir else ""
    if made_in_run_dir:
        default = " (default: RUN_DIR/tls, made for a new run unless --insecure; workers find it there)"
    parser.add_argument(
        "--tls-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="the run's TLS credentials (ca.pem, node.pem, node.key; python -m hpo_service.tls DIR writes "
        "them): every Pyro connection is then mutually authenticated and only processes holding them "
        f"take part (docs/security.md){default}",
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="no TLS without --tls-dir (and allow a --host other than loopback): anyone who reaches the "
        "port could register workers, send results, or stop the run",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hpo_service.tls",
        description="Write a run's TLS credentials: a new certificate authority (its key is not kept) and a "
        "node certificate and key it signs. Give the directory as --tls-dir to the master, the workers and "
        "the nameserver role, and copy it to every machine of the run; the key is the run's secret.",
    )
    parser.add_argument("directory", type=Path, help="where ca.pem, node.pem and node.key go (made 0700)")
    parser.add_argument(
        "--host",
        action="append",
        default=[],
        help="a further host name or address of the run's machines to name in the certificate (repeatable)",
    )
    parser.add_argument("--force", action="store_true", help="replace existing files")
    args = parser.parse_args(argv)
    try:
        generate(args.directory, args.host, overwrite=args.force)
    except (SettingsError, OSError) as error:
        parser.error(str(error))
    return 0


if __name__ == "__main__":
    sys.exit(main())
