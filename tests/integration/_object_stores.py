"""Real object-storage servers on loopback ports, started by the tests, and upload helpers.

- S3: moto's server (``moto[server]``), in this process (:class:`MotoS3`) or as a separate
  process with IAM checks on (:func:`moto_s3_process`, every unknown key is refused).
- GCS: gcp-storage-emulator (PyPI), in this process.
- Azure Blob: azurite (npm), installed by ``scripts/setup`` into ``.tools/``.

Each server gets a free port on 127.0.0.1 and its own data; the environment an ovserve
process needs to reach it is in ``.env`` (OVMS's variable names).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _server import HOST, free_port, port_is_open

ROOT = Path(__file__).resolve().parents[2]
AZURITE = ROOT / ".tools" / "node_modules" / ".bin" / "azurite-blob"
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (  # azurite's documented, public development key
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
NO_PROXY = {"NO_PROXY": f"{HOST},localhost", "no_proxy": f"{HOST},localhost"}
START_SECONDS = 60.0


def files_under(folder: Path) -> list[tuple[str, Path]]:
    """``(relative posix path, file)`` for every file under ``folder``."""
    return sorted(
        (path.relative_to(folder).as_posix(), path) for path in folder.rglob("*") if path.is_file()
    )


def wait_port(port: int, what: str, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if port_is_open(port):
            return
        if process is not None and process.poll() is not None:
            raise AssertionError(f"{what} exited with {process.returncode}")
        time.sleep(0.05)
    raise AssertionError(f"{what} did not listen on {port} within {START_SECONDS:.0f} s")


class MotoS3:
    """moto's S3 server in a thread of this process."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self.port = free_port()
        self._server = ThreadedMotoServer(ip_address=HOST, port=self.port, verbose=False)
        self.endpoint = f"{HOST}:{self.port}"
        self.env = {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "S3_ENDPOINT": self.endpoint,
            **NO_PROXY,
        }

    def start(self) -> MotoS3:
        self._server.start()
        wait_port(self.port, "moto")
        return self

    def stop(self) -> None:
        self._server.stop()

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=f"http://{self.endpoint}",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )

    def upload(self, bucket: str, prefix: str, folder: Path, acl: str = "private") -> None:
        client = self.client()
        for relative, path in files_under(folder):
            key = f"{prefix}/{relative}" if prefix else relative
            client.upload_file(str(path), bucket, key, ExtraArgs={"ACL": acl})

    def delete(self, bucket: str, prefix: str) -> None:
        client = self.client()
        listing = client.list_objects_v2(Bucket=bucket, Prefix=prefix)
        for item in listing.get("Contents", []):
            client.delete_object(Bucket=bucket, Key=item["Key"])


@contextlib.contextmanager
def moto_s3_process(log: Path) -> Iterator[str]:
    """moto's server as a process with IAM authentication on; yields ``host:port``."""
    port = free_port()
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0", **NO_PROXY}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        wait_port(port, "moto server", process)
        yield f"{HOST}:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


class GcsEmulator:
    """gcp-storage-emulator in this process (in memory)."""

    def __init__(self) -> None:
        from gcp_storage_emulator.server import create_server

        self.port = free_port()
        self._server = create_server(HOST, self.port, in_memory=True)
        self.env = {"STORAGE_EMULATOR_HOST": f"http://{HOST}:{self.port}", **NO_PROXY}

    def start(self) -> GcsEmulator:
        self._server.start()
        wait_port(self.port, "gcp-storage-emulator")
        return self

    def stop(self) -> None:
        self._server.stop()

    def upload(self, bucket: str, prefix: str, folder: Path) -> None:
        from google.cloud import storage

        with _environ(self.env):
            client = storage.Client.create_anonymous_client()
            target = client.bucket(bucket)
            if not target.exists():
                client.create_bucket(bucket)
            for relative, path in files_under(folder):
                target.blob(f"{prefix}/{relative}").upload_from_filename(str(path))


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class Azurite:
    """azurite's Blob service as a process, data in ``folder``."""

    def __init__(self, folder: Path) -> None:
        if not AZURITE.exists():
            raise AssertionError(
                f"azurite is not installed at {AZURITE}: scripts/setup installs it with npm "
                "(node and npm are needed)"
            )
        self.port = free_port()
        self._folder = folder
        self._process: subprocess.Popen[bytes] | None = None
        self.connection_string = (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
            f"AccountKey={AZURITE_KEY};BlobEndpoint=http://{HOST}:{self.port}/{AZURITE_ACCOUNT};"
        )
        self.env = {"AZURE_STORAGE_CONNECTION_STRING": self.connection_string, **NO_PROXY}

    def start(self) -> Azurite:
        self._folder.mkdir(parents=True, exist_ok=True)
        with (self._folder / "azurite.log").open("wb") as out:
            self._process = subprocess.Popen(
                [
                    str(AZURITE),
                    "--blobHost",
                    HOST,
                    "--blobPort",
                    str(self.port),
                    "--location",
                    str(self._folder),
                    "--skipApiVersionCheck",
                    "--loose",
                    "--silent",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_port(self.port, "azurite", self._process)
        return self

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=30)

    def upload(self, container: str, prefix: str, folder: Path) -> None:
        from azure.core.exceptions import ResourceExistsError
        from azure.storage.blob import BlobServiceClient

        service = BlobServiceClient.from_connection_string(self.connection_string)
        with contextlib.suppress(ResourceExistsError):
            service.create_container(container)
        client = service.get_container_client(container)
        for relative, path in files_under(folder):
            with path.open("rb") as data:
                client.upload_blob(f"{prefix}/{relative}", data, overwrite=True)
