"""TLS for both ports from one :class:`~ovserve.config.tls.TlsConfig`.

gRPC gets ``grpc.ssl_server_credentials`` and REST an ``ssl.SSLContext``; with a client CA
both require a client certificate that chains to it. Plaintext clients fail the handshake.
"""

from __future__ import annotations

import ssl
import tempfile
from pathlib import Path

import grpc

from ovserve.config.tls import TlsConfig


def grpc_credentials(tls: TlsConfig) -> grpc.ServerCredentials:
    """Server credentials; client certificates required when a client CA is set."""
    return grpc.ssl_server_credentials(
        [(tls.key_pem, tls.cert_pem)],
        root_certificates=tls.client_ca_pem,
        require_client_auth=tls.mutual,
    )


def rest_ssl_context(tls: TlsConfig) -> ssl.SSLContext:
    """The REST port's context (ALPN ``http/1.1``)."""
    return ssl_context(tls, "http/1.1")


def ssl_context(tls: TlsConfig, protocol: str) -> ssl.SSLContext:
    """A server context (TLS 1.2+) offering ``protocol`` by ALPN; client certificates required
    when a client CA is set."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols([protocol])
    # load_cert_chain takes paths only; the bytes read at start-up are what is served, so a
    # file replaced since then cannot change the key halfway.
    with tempfile.TemporaryDirectory(prefix="ovserve-tls-") as folder:
        cert, key = Path(folder) / "cert.pem", Path(folder) / "key.pem"
        cert.write_bytes(tls.cert_pem)
        key.touch(mode=0o600)
        key.write_bytes(tls.key_pem)
        context.load_cert_chain(cert, key)
    if tls.client_ca_pem is not None:
        context.load_verify_locations(cadata=tls.client_ca_pem.decode("ascii", "replace"))
        context.verify_mode = ssl.CERT_REQUIRED
    return context
