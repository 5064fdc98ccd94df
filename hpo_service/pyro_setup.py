"""The one module that touches ``Pyro4.config`` (process-global state)."""

from __future__ import annotations

import logging
import socket
import ssl
from pathlib import Path

import Pyro4
import Pyro4.socketutil

from hpo_service.tls import TlsFiles

logger = logging.getLogger(__name__)


def configure_pyro(tls_dir: Path | None = None) -> None:
    """Serpent only, no Nagle delay; mutual TLS with the run's certificates in ``tls_dir`` when given.

    Idempotent; call it from entry points before any Pyro object exists. TLS is decided once per process,
    by the entry point: a call without ``tls_dir`` (library code that only wants the serializer settings)
    leaves TLS as an earlier call set it, so it can never switch authentication off by accident.

    Never the pickle serializer: with pickle anyone who reaches a port can run code in our processes.
    Without TCP_NODELAY each small job message waits ~50 ms for the delayed ACK.
    """
    Pyro4.config.SERIALIZER = "serpent"
    Pyro4.config.SERIALIZERS_ACCEPTED = {"serpent"}
    Pyro4.config.SOCK_NODELAY = True
    # Each daemon serves one connection per thread; the default pool of 40 is too small for a dispatcher
    # talking to many workers at once.
    Pyro4.config.THREADPOOL_SIZE = 256
    if tls_dir is not None:
        enable_tls(TlsFiles(tls_dir))


def tls_enabled() -> bool:
    return bool(Pyro4.config.SSL)


def enable_tls(tls: TlsFiles) -> None:
    """Every daemon and proxy of this process uses two-way TLS: it presents the run's node certificate and
    accepts only peers whose certificate the run's CA signed.

    Pyro4 builds its SSL contexts from ``Pyro4.config`` on first use and caches them in
    ``Pyro4.socketutil``; we put our own there instead, for two reasons:

    * Host names are not checked. Every process of a run holds the same node certificate, so a verified
      name would prove nothing beyond what the CA signature proves (possession of the run's key), and
      under compose workers register container addresses unknown when the certificates are made. The
      certificate is still required and must be signed by the run's CA: that is the authentication.
    * The server's handshake runs in the connection's own thread, not in the daemon's accept loop: a
      stranger who opens a TCP connection and sends nothing would otherwise block the whole daemon
      (nameserver, dispatcher or worker) for everyone, since Pyro4 has no accept timeout.
    """
    Pyro4.config.SSL = True
    Pyro4.config.SSL_REQUIRECLIENTCERT = True
    Pyro4.config.SSL_SERVERCERT = Pyro4.config.SSL_CLIENTCERT = str(tls.certificate)
    Pyro4.config.SSL_SERVERKEY = Pyro4.config.SSL_CLIENTKEY = str(tls.key)
    Pyro4.config.SSL_CACERTS = str(tls.ca)
    # Module globals of Pyro4.socketutil that getSSLcontext() returns when set (no name mangling at
    # module level, so these are their real names).
    setattr(Pyro4.socketutil, "__ssl_server_context", _context(tls, server=True))  # noqa: B010
    setattr(Pyro4.socketutil, "__ssl_client_context", _context(tls, server=False))  # noqa: B010
    logger.info("Pyro connections: mutual TLS with the run's certificates in %s", tls.directory)


class _DeferredHandshakeContext(ssl.SSLContext):
    """Server sockets it wraps hand accepted connections over before the TLS handshake; OpenSSL performs
    the handshake on the connection's first read, in the thread that serves it."""

    def wrap_socket(  # noqa: PLR0917 - ssl.SSLContext's signature
        self,
        sock: socket.socket,
        server_side: bool = False,
        do_handshake_on_connect: bool = True,
        suppress_ragged_eofs: bool = True,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLSocket:
        return super().wrap_socket(
            sock,
            server_side=server_side,
            do_handshake_on_connect=do_handshake_on_connect and not server_side,
            suppress_ragged_eofs=suppress_ragged_eofs,
            server_hostname=server_hostname,
            session=session,
        )


def _context(tls: TlsFiles, *, server: bool) -> ssl.SSLContext:
    context = _DeferredHandshakeContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(tls.certificate, tls.key)
    context.load_verify_locations(cafile=tls.ca)
    context.check_hostname = False  # see enable_tls; must precede verify_mode on a client context
    context.verify_mode = ssl.CERT_REQUIRED
    return context
