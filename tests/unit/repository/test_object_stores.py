"""Opening object stores: which client, which credentials, and clear errors (no network)."""

from __future__ import annotations

import sys

import pytest

from ovserve.config.model_path import RemotePath
from ovserve.errors import ConfigError
from ovserve.repository.object_stores import (
    AzureBlobStore,
    AzureFilesStore,
    GcsStore,
    S3Store,
    open_store,
)

AZURE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
    "BlobEndpoint=http://127.0.0.1:1/devstoreaccount1;FileEndpoint=http://127.0.0.1:1/f;"
)


@pytest.mark.parametrize(
    ("path", "env", "kind"),
    [
        (RemotePath("s3", "b", "m"), {}, S3Store),
        (RemotePath("s3", "b", "m", "minio:9000"), {"AWS_ACCESS_KEY_ID": "k"}, S3Store),
        (
            RemotePath("s3", "b", "m"),
            {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s", "S3_ENDPOINT": "https://x"},
            S3Store,
        ),
        (RemotePath("gs", "b", "m"), {}, GcsStore),
        (RemotePath("az", "c", "m"), {"AZURE_STORAGE_CONNECTION_STRING": AZURE}, AzureBlobStore),
        (RemotePath("azfs", "s", "m"), {"AZURE_STORAGE_CONNECTION_STRING": AZURE}, AzureFilesStore),
    ],
)
def test_each_scheme_opens_its_store(path: RemotePath, env: dict[str, str], kind: type) -> None:
    assert isinstance(open_store(path, env), kind)


@pytest.mark.parametrize(
    ("scheme", "module", "extra"), [("s3", "boto3", "s3"), ("az", "azure.storage.blob", "azure")]
)
def test_a_missing_library_names_the_extra(
    scheme: str, module: str, extra: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError
    env = {"AZURE_STORAGE_CONNECTION_STRING": AZURE}
    with pytest.raises(ConfigError, match=rf"pip install 'ovserve\[{extra}\]'"):
        open_store(RemotePath(scheme, "b", "m"), env)


@pytest.mark.parametrize("scheme", ["az", "azfs"])
def test_azure_needs_a_connection_string(scheme: str) -> None:
    with pytest.raises(ConfigError, match="set AZURE_STORAGE_CONNECTION_STRING"):
        open_store(RemotePath(scheme, "c", "m"), {})


def test_an_unknown_profile_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match=r"Model path s3://b/m: no usable credentials"):
        open_store(RemotePath("s3", "b", "m"), {"AWS_PROFILE": "no-such-profile-here"})
