"""TLS files (``--tls_cert``, ``--tls_key``, ``--tls_client_ca``), read and checked at start-up.

The PEM files are read once here, so a missing file, a key that does not belong to its
certificate or a CA file with no certificate in it stops the server with a clear message
instead of failing on the first client. The front-ends build their own TLS objects from the
bytes (:mod:`ovserve.frontends.tls`).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from ovserve.errors import ConfigError


@dataclass(frozen=True)
class TlsConfig:
    """Server certificate chain and key, and the CA that client certificates must chain to."""

    cert_path: Path
    key_path: Path
    client_ca_path: Path | None
    cert_pem: bytes
    key_pem: bytes
    client_ca_pem: bytes | None

    @property
    def mutual(self) -> bool:
        """True when clients must present a certificate signed by ``client_ca``."""
        return self.client_ca_pem is not None


def read_tls(cert: Path | None, key: Path | None, client_ca: Path | None) -> TlsConfig | None:
    """Read and check the TLS flags; None when TLS is off. Raises ConfigError."""
    if cert is None and key is None:
        if client_ca is not None:
            raise ConfigError(
                "tls_client_ca requires tls_cert and tls_key: mutual TLS needs the server's "
                "own certificate"
            )
        return None
    if cert is None or key is None:
        raise ConfigError("tls_cert and tls_key must be given together")
    cert_pem = _read(cert, "tls_cert")
    key_pem = _read(key, "tls_key")
    ca_pem = _read(client_ca, "tls_client_ca") if client_ca is not None else None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key, password=_no_password)
    except ssl.SSLError as error:
        reason = error.reason or str(error)
        if "KEY_VALUES_MISMATCH" in str(error):
            raise ConfigError(f"tls_key {key} does not match the certificate in {cert}") from None
        raise ConfigError(
            f"Cannot use tls_cert {cert} with tls_key {key} ({reason}): expected PEM files, "
            "the key not encrypted"
        ) from None
    if client_ca is not None:
        try:
            context.load_verify_locations(cafile=client_ca)
        except ssl.SSLError as error:
            raise ConfigError(
                f"tls_client_ca {client_ca} holds no usable PEM certificate ({error.reason})"
            ) from None
    return TlsConfig(cert, key, client_ca, cert_pem, key_pem, ca_pem)


def _read(path: Path, flag: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"Cannot read {flag} {path}: {error.strerror}") from None
    if b"-----BEGIN" not in data:
        raise ConfigError(f"{flag} {path} is not a PEM file")
    return data


def _no_password() -> bytes:
    return b""
