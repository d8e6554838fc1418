"""Object-storage clients behind one two-method interface: list keys, download one key.

Each store wraps the provider's own client library, installed as an optional extra
(``ovserve[s3]``, ``[gcs]``, ``[azure]``, ``[cloud]``) and imported only when a model uses
that scheme. Credentials and endpoints come from OVMS's environment variables, read when the
store opens (the SDKs read theirs at that point too):

- S3: ``AWS_ACCESS_KEY_ID`` + ``AWS_SECRET_ACCESS_KEY`` (+ ``AWS_SESSION_TOKEN``,
  ``AWS_REGION``), else ``AWS_PROFILE``, else a web-identity token (``AWS_WEB_IDENTITY_TOKEN_FILE``,
  as on EKS), else anonymous. ``S3_ENDPOINT`` (or ``s3://host:port/bucket``) for S3-compatible
  servers such as MinIO; plain HTTP unless ``https://`` is given. Proxy variables as usual.
- GCS: ``GOOGLE_APPLICATION_CREDENTIALS``, else anonymous.
- Azure Blob (``az://``) and Azure Files (``azfs://``): ``AZURE_STORAGE_CONNECTION_STRING``.

Failures become a ConfigError naming the model path and the reason (missing bucket, access
denied, unreachable endpoint), so that model shows the error while others keep serving.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from ovserve.config.model_path import RemotePath
from ovserve.errors import ConfigError

CONNECT_TIMEOUT_SECONDS = 10.0
READ_TIMEOUT_SECONDS = 60.0
RETRIES = 2

_EXTRA = {"s3": "s3", "gs": "gcs", "az": "azure", "azfs": "azure"}


class ObjectStore(Protocol):
    """A bucket (container, share) of one provider."""

    def list_keys(self, prefix: str) -> list[str]:
        """Every object key under ``prefix`` (recursive; folder markers left out)."""

    def download(self, key: str, target: Path) -> None:
        """Write one object to ``target``."""


def open_store(path: RemotePath, environ: Mapping[str, str]) -> ObjectStore:
    """A client for ``path``'s bucket; ConfigError when its library is not installed."""
    try:
        if path.scheme == "s3":
            return S3Store(path, environ)
        if path.scheme == "gs":
            return GcsStore(path, environ)
        if path.scheme == "az":
            return AzureBlobStore(path, environ)
        return AzureFilesStore(path, environ)
    except ImportError as error:
        extra = _EXTRA[path.scheme]
        raise ConfigError(
            f"Model path {path}: {path.scheme}:// needs the {error.name} package: "
            f"pip install 'ovserve[{extra}]'"
        ) from None


@contextmanager
def _reasons(path: RemotePath, explain: Callable[[Exception], str | None]) -> Iterator[None]:
    """Turn a client library's exception into a ConfigError that says what went wrong."""
    try:
        yield
    except ConfigError:
        raise
    except Exception as error:
        reason = explain(error) or f"{type(error).__name__}: {error}"
        raise ConfigError(f"Model path {path}: {reason}") from None


def _denied(path: RemotePath) -> str:
    return f"access denied to {path.bucket} (check the credentials)"


def _missing(path: RemotePath) -> str:
    return f"bucket {path.bucket} does not exist"


def _unreachable(error: Exception) -> str:
    return f"cannot reach the storage endpoint: {error}"


class S3Store:
    """Amazon S3 or an S3-compatible server, through boto3."""

    def __init__(self, path: RemotePath, environ: Mapping[str, str]) -> None:
        import boto3
        from botocore import UNSIGNED
        from botocore.config import Config

        self._path = path
        endpoint = path.endpoint or environ.get("S3_ENDPOINT", "")
        if endpoint and not endpoint.startswith(("http://", "https://")):
            endpoint = f"http://{endpoint}"  # OVMS talks plain HTTP to S3_ENDPOINT
        region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        config = Config(
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            read_timeout=READ_TIMEOUT_SECONDS,
            retries={"max_attempts": RETRIES, "mode": "standard"},
            s3={"addressing_style": "path"} if endpoint else {},
        )
        key, secret = environ.get("AWS_ACCESS_KEY_ID"), environ.get("AWS_SECRET_ACCESS_KEY")
        with _reasons(path, self._explain):
            if key and secret:
                session = boto3.session.Session(
                    aws_access_key_id=key,
                    aws_secret_access_key=secret,
                    aws_session_token=environ.get("AWS_SESSION_TOKEN") or None,
                    region_name=region,
                )
            elif environ.get("AWS_PROFILE"):
                session = boto3.session.Session(
                    profile_name=environ["AWS_PROFILE"], region_name=region
                )
            elif environ.get("AWS_WEB_IDENTITY_TOKEN_FILE"):
                session = boto3.session.Session(region_name=region)
            else:  # anonymous, as OVMS (and no instance-metadata look-ups)
                session = boto3.session.Session(region_name=region)
                config = config.merge(Config(signature_version=UNSIGNED))
            self._client: Any = session.client("s3", endpoint_url=endpoint or None, config=config)

    def _explain(self, error: Exception) -> str | None:
        from botocore.exceptions import (
            ClientError,
            ConnectionError,
            HTTPClientError,
            NoCredentialsError,
            ProfileNotFound,
        )

        if isinstance(error, ClientError):
            code = str(error.response.get("Error", {}).get("Code", ""))
            if code in ("NoSuchBucket", "404"):
                return _missing(self._path)
            if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                return f"{_denied(self._path)}: {code}"
            return f"S3 error {code}: {error}"
        if isinstance(error, ConnectionError | HTTPClientError):
            return _unreachable(error)
        if isinstance(error, NoCredentialsError | ProfileNotFound):
            return f"no usable credentials: {error}"
        return None

    def list_keys(self, prefix: str) -> list[str]:
        """All keys under ``prefix``, page by page."""
        keys: list[str] = []
        with _reasons(self._path, self._explain):
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self._path.bucket, Prefix=prefix
            )
            for page in pages:
                keys.extend(
                    item["Key"]
                    for item in page.get("Contents", [])
                    if not item["Key"].endswith("/")
                )
        return keys

    def download(self, key: str, target: Path) -> None:
        """One object to a file."""
        with _reasons(self._path, self._explain):
            self._client.download_file(self._path.bucket, key, str(target))


class GcsStore:
    """Google Cloud Storage, through google-cloud-storage (``STORAGE_EMULATOR_HOST`` works)."""

    def __init__(self, path: RemotePath, environ: Mapping[str, str]) -> None:
        with warnings.catch_warnings():
            # google-api-core asks for grpcio-status, which only its gRPC transport needs
            warnings.simplefilter("ignore", ImportWarning)
            from google.api_core import exceptions  # noqa: F401  (imported once, quietly)
            from google.cloud import storage

        self._path = path
        with _reasons(path, self._explain):
            client = (
                storage.Client()
                if environ.get("GOOGLE_APPLICATION_CREDENTIALS")
                else storage.Client.create_anonymous_client()
            )
            self._bucket: Any = client.bucket(path.bucket)
            self._client: Any = client

    def _explain(self, error: Exception) -> str | None:
        from google.api_core import exceptions as api
        from google.auth import exceptions as auth
        from requests import exceptions as http

        if isinstance(error, api.NotFound):
            return _missing(self._path)
        if isinstance(error, api.Forbidden | api.Unauthorized | auth.GoogleAuthError):
            return f"{_denied(self._path)}: {error}"
        if isinstance(error, http.ConnectionError | http.Timeout):
            return _unreachable(error)
        return None

    def list_keys(self, prefix: str) -> list[str]:
        """All blob names under ``prefix``."""
        with _reasons(self._path, self._explain):
            blobs = self._client.list_blobs(
                self._bucket, prefix=prefix, timeout=(CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS)
            )
            return [blob.name for blob in blobs if not blob.name.endswith("/")]

    def download(self, key: str, target: Path) -> None:
        """One blob to a file."""
        with _reasons(self._path, self._explain):
            self._bucket.blob(key).download_to_filename(
                str(target), timeout=(CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS)
            )


def _azure_connection_string(path: RemotePath, environ: Mapping[str, str]) -> str:
    # The Azure SDK logs every HTTP request and response at INFO: keep the server's log readable.
    logging.getLogger("azure").setLevel(logging.WARNING)
    value = environ.get("AZURE_STORAGE_CONNECTION_STRING", "")
    if not value:
        raise ConfigError(
            f"Model path {path}: set AZURE_STORAGE_CONNECTION_STRING to reach Azure storage"
        )
    return value


def _azure_explain(path: RemotePath, error: Exception) -> str | None:
    from azure.core import exceptions as az

    if isinstance(error, az.ResourceNotFoundError):
        return f"{_missing(path)} (or the path is not there): {error.message}"
    if isinstance(error, az.ClientAuthenticationError) or (
        isinstance(error, az.HttpResponseError) and error.status_code == 403
    ):
        return f"{_denied(path)}: {error.message}"
    if isinstance(error, az.ServiceRequestError | az.ServiceResponseError):
        return _unreachable(error)
    return None


_AZURE_OPTIONS: dict[str, Any] = {
    "connection_timeout": CONNECT_TIMEOUT_SECONDS,
    "read_timeout": READ_TIMEOUT_SECONDS,
    "retry_total": RETRIES,
}


class AzureBlobStore:
    """Azure Blob Storage (``az://container/path``), through azure-storage-blob."""

    def __init__(self, path: RemotePath, environ: Mapping[str, str]) -> None:
        from azure.storage.blob import ContainerClient

        self._path = path
        connection = _azure_connection_string(path, environ)
        with _reasons(path, self._explain):
            self._container: Any = ContainerClient.from_connection_string(
                connection, path.bucket, **_AZURE_OPTIONS
            )

    def _explain(self, error: Exception) -> str | None:
        return _azure_explain(self._path, error)

    def list_keys(self, prefix: str) -> list[str]:
        """All blob names under ``prefix``."""
        with _reasons(self._path, self._explain):
            return [
                blob.name
                for blob in self._container.list_blobs(name_starts_with=prefix)
                if not blob.name.endswith("/")
            ]

    def download(self, key: str, target: Path) -> None:
        """One blob to a file."""
        with _reasons(self._path, self._explain), target.open("wb") as file:
            self._container.download_blob(key).readinto(file)


class AzureFilesStore:
    """Azure Files (``azfs://share/path``), through azure-storage-file-share."""

    def __init__(self, path: RemotePath, environ: Mapping[str, str]) -> None:
        from azure.storage.fileshare import ShareClient

        self._path = path
        connection = _azure_connection_string(path, environ)
        with _reasons(path, self._explain):
            self._share: Any = ShareClient.from_connection_string(
                connection, path.bucket, **_AZURE_OPTIONS
            )

    def _explain(self, error: Exception) -> str | None:
        return _azure_explain(self._path, error)

    def list_keys(self, prefix: str) -> list[str]:
        """All file paths under the ``prefix`` directory (walked recursively)."""
        keys: list[str] = []
        pending = [prefix.rstrip("/")]
        with _reasons(self._path, self._explain):
            while pending:
                folder = pending.pop()
                directory = self._share.get_directory_client(folder)
                for item in directory.list_directories_and_files():
                    child = f"{folder}/{item['name']}" if folder else item["name"]
                    if item["is_directory"]:
                        pending.append(child)
                    else:
                        keys.append(child)
        return keys

    def download(self, key: str, target: Path) -> None:
        """One file to a local file."""
        with _reasons(self._path, self._explain), target.open("wb") as file:
            self._share.get_file_client(key).download_file().readinto(file)
