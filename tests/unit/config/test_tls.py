"""TLS flags: files read and checked once at start-up; the front-ends' TLS objects from them."""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ovserve.cli import parse_args
from ovserve.config.tls import read_tls
from ovserve.errors import ConfigError
from ovserve.frontends.tls import grpc_credentials, rest_ssl_context


def _pem_pair(folder: Path, stem: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, stem)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / f"{stem}.pem", folder / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_tls_off_without_flags() -> None:
    assert read_tls(None, None, None) is None


def test_good_files_give_both_front_ends_their_tls(tmp_path: Path) -> None:
    cert, key = _pem_pair(tmp_path, "server")
    ca, _ = _pem_pair(tmp_path, "ca")
    tls = read_tls(cert, key, ca)
    assert tls is not None
    assert tls.mutual
    context = rest_ssl_context(tls)
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert isinstance(grpc_credentials(tls), grpc.ServerCredentials)
    plain = read_tls(cert, key, None)
    assert plain is not None
    assert not plain.mutual
    assert rest_ssl_context(plain).verify_mode is ssl.CERT_NONE


@pytest.mark.parametrize(
    ("which", "message"),
    [
        ("ca_only", "tls_client_ca requires tls_cert and tls_key"),
        ("cert_only", "tls_cert and tls_key must be given together"),
        ("mismatch", "does not match the certificate"),
        ("missing", "Cannot read tls_key"),
        ("not_pem", "is not a PEM file"),
        ("bad_ca", "holds no usable PEM certificate"),
    ],
)
def test_bad_tls_flags_are_refused(tmp_path: Path, which: str, message: str) -> None:
    cert, key = _pem_pair(tmp_path, "server")
    _, other_key = _pem_pair(tmp_path, "other")
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    text = tmp_path / "text.key"
    text.write_text("hello")
    cases: dict[str, tuple[Path | None, Path | None, Path | None]] = {
        "ca_only": (None, None, cert),
        "cert_only": (cert, None, None),
        "mismatch": (cert, other_key, None),
        "missing": (cert, tmp_path / "nope.key", None),
        "not_pem": (cert, text, None),
        "bad_ca": (cert, key, junk),
    }
    with pytest.raises(ConfigError, match=message):
        read_tls(*cases[which])


def test_limit_flags_parse_and_are_checked(tmp_path: Path) -> None:
    base = ["--model_name", "m", "--model_path", str(tmp_path), "--rest_port", "8000"]
    config = parse_args(
        [
            *base,
            "--rest_header_timeout_seconds",
            "5",
            "--rest_max_connections",
            "100",
            "--grpc_max_connections",
            "50",
            "--rest_memory_quota",
            "0",
        ]
    )
    assert config.rest_header_timeout_seconds == 5
    assert (config.rest_max_connections, config.grpc_max_connections) == (100, 50)
    assert config.rest_memory_quota == 0
    assert config.tls is None
    for bad in (
        ["--rest_body_timeout_seconds", "0"],
        ["--rest_max_connections", "-1"],
        ["--rest_write_buffer_bytes", "10"],
    ):
        with pytest.raises(ConfigError):
            parse_args([*base, *bad])
