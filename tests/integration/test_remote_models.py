"""Models in object storage, served from s3:// (moto), gs:// (gcp-storage-emulator) and az://
(azurite): real servers on loopback ports, real client libraries, tritonclient to infer.

Checks OVMS's behaviour: versions are downloaded to a temporary folder, new versions in the
bucket are picked up by polling, retired versions' local copies are deleted, and a missing
bucket, denied access or unreachable endpoint is an error for that model only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient

from _mm_helpers import eventually
from _models import F32, save_ir, scale_model
from _object_stores import Azurite, GcsEmulator, MotoS3, moto_s3_process
from _server import HOST, ServerPool, ServerProcess, free_port

pytestmark = pytest.mark.filterwarnings(
    # google-api-core asks for grpcio-status, which gs:// over HTTP does not need
    "ignore:Please install grpcio-status:ImportWarning"
)

POLL = ("--file_system_poll_wait_seconds", "0.2")
F32_FLAGS = ("--plugin_config", json.dumps(F32))


def scale_repo(base: Path, factors: dict[int, float]) -> Path:
    """``<base>/<version>/model.xml|bin`` of ``out = data * factor`` for each version."""
    for version, factor in factors.items():
        save_ir(scale_model((1, 3, -1, -1), factor), base, version)
    return base


def infer(target: str, model: str, version: str = "") -> float:
    """The factor a scale model answers with (input of ones)."""
    client = grpcclient.InferenceServerClient(target)
    data = np.ones((1, 3, 4, 4), np.float32)
    tensor = grpcclient.InferInput("data", list(data.shape), "FP32")
    tensor.set_data_from_numpy(data)
    result = client.infer(model, [tensor], model_version=version)
    out = result.as_numpy("out")
    assert out is not None
    return float(out.flat[0])


def serves(target: str, model: str, factor: float) -> bool:
    """Whether the default version now answers with ``factor`` (False while it changes)."""
    try:
        return infer(target, model) == factor
    except grpcclient.InferenceServerException:
        return False


def exit_of(args: list[str], log_dir: Path, env: dict[str, str]) -> ServerProcess:
    """Run a server expected to fail on start-up; return it after it exited."""
    server = ServerProcess(args, log_dir=log_dir, env=env).start()
    server.wait_exit(120)
    return server


def downloads(server: ServerProcess) -> dict[int, Path]:
    """Version → local folder, from the server's "version N downloaded to PATH" log lines."""
    found = re.findall(r"version (\d+) downloaded to (\S+) \(", server.log_text())
    return {int(version): Path(path) for version, path in found}


@pytest.fixture(scope="module")
def s3() -> Iterator[MotoS3]:
    server = MotoS3().start()
    yield server
    server.stop()


def test_s3_model_serves_and_follows_the_bucket(
    s3: MotoS3, server_factory: ServerPool, tmp_path: Path
) -> None:
    s3.client().create_bucket(Bucket="models")
    repo = scale_repo(tmp_path / "repo", {1: 2.0, 2: 3.0})
    s3.upload("models", "scale/1", repo / "1")
    server = server_factory.start(
        ["--model_name", "scale", "--model_path", "s3://models/scale", *POLL, *F32_FLAGS],
        env=s3.env,
    )
    assert infer(server.grpc_target, "scale") == 2.0
    first = downloads(server)[1]
    assert (first / "model.xml").is_file()
    assert first.parent.stat().st_mode & 0o077 == 0, "the local copies must be private"

    s3.upload("models", "scale/2", repo / "2")  # picked up by polling, no restart
    eventually(lambda: serves(server.grpc_target, "scale", 3.0), what="version 2 serves")
    eventually(lambda: not first.exists(), what="retired version 1's local copy deleted")
    root = downloads(server)[2].parent

    s3.delete("models", "scale/2/")  # gone from the bucket: version 1 comes back
    eventually(lambda: serves(server.grpc_target, "scale", 2.0), what="back to version 1")
    server_factory.close()
    assert not root.exists(), "the temporary folder must go when the server stops"


def test_s3_flat_layout_is_version_1(
    s3: MotoS3, server_factory: ServerPool, tmp_path: Path
) -> None:
    s3.client().create_bucket(Bucket="flat")
    repo = scale_repo(tmp_path / "repo", {1: 5.0})
    s3.upload("flat", "resnet", repo / "1")  # files directly under the prefix, as KServe
    server = server_factory.start(
        ["--model_name", "flat", "--model_path", "s3://flat/resnet", *F32_FLAGS], env=s3.env
    )
    assert infer(server.grpc_target, "flat", "1") == 5.0
    assert "serving them as version 1" in server.log_text()


def test_s3_endpoint_in_the_url(s3: MotoS3, server_factory: ServerPool, tmp_path: Path) -> None:
    """OVMS's ``s3://host:port/bucket/path`` form, with anonymous access."""
    s3.client().create_bucket(Bucket="public", ACL="public-read")
    s3.upload("public", "m/1", scale_repo(tmp_path / "repo", {1: 4.0}) / "1", acl="public-read")
    server = server_factory.start(
        ["--model_name", "m", "--model_path", f"s3://{s3.endpoint}/public/m"],
        env={"NO_PROXY": HOST, "no_proxy": HOST},
    )
    assert infer(server.grpc_target, "m") == 4.0


def test_missing_bucket_stops_a_single_model_server(s3: MotoS3, tmp_path: Path) -> None:
    server = exit_of(
        ["--model_name", "m", "--model_path", "s3://no-such-bucket/m"], tmp_path, s3.env
    )
    assert server.returncode != 0
    assert "Model path s3://no-such-bucket/m: bucket no-such-bucket does not exist" in (
        server.log_text()
    )


def test_bad_remote_models_fail_alone(
    s3: MotoS3, server_factory: ServerPool, tmp_path: Path
) -> None:
    """From a config file: missing bucket, denied access and an unreachable endpoint are each
    that model's error; the good model serves."""
    s3.client().create_bucket(Bucket="good")
    s3.upload("good", "m/1", scale_repo(tmp_path / "repo", {1: 2.0}) / "1")
    closed = free_port()
    with moto_s3_process(tmp_path / "moto-iam.log") as strict:
        config = {
            "model_config_list": [
                {"config": {"name": "good", "base_path": "s3://good/m"}},
                {"config": {"name": "missing", "base_path": "s3://no-such-bucket/m"}},
                {"config": {"name": "denied", "base_path": f"s3://{strict}/any/m"}},
                {"config": {"name": "unreachable", "base_path": f"s3://{HOST}:{closed}/b/m"}},
            ]
        }
        path = tmp_path / "config.json"
        path.write_text(json.dumps(config))
        server = server_factory.start(["--config_path", str(path)], rest=True, env=s3.env)
        assert infer(server.grpc_target, "good") == 2.0
        status = requests.get(f"{server.rest_url}/v1/config", timeout=30).json()
    errors = {
        name: " ".join(v["status"]["error_message"] for v in status[name]["model_version_status"])
        for name in ("missing", "denied", "unreachable")
    }
    assert "bucket no-such-bucket does not exist" in errors["missing"]
    assert "access denied to any" in errors["denied"]
    assert "cannot reach the storage endpoint" in errors["unreachable"]
    assert status["good"]["model_version_status"][0]["state"] == "AVAILABLE"


def test_a_failed_download_is_retried(
    s3: MotoS3, server_factory: ServerPool, tmp_path: Path
) -> None:
    """Listing works but the download is refused (anonymous, private objects): the version
    fails, and loads on a later poll once the objects can be read, with no restart."""
    s3.client().create_bucket(Bucket="half-public", ACL="public-read")
    s3.upload("half-public", "m/1", scale_repo(tmp_path / "repo", {1: 8.0}) / "1")
    config = tmp_path / "config.json"
    base = f"s3://{s3.endpoint}/half-public/m"
    config.write_text(
        json.dumps({"model_config_list": [{"config": {"name": "m", "base_path": base}}]})
    )
    server = server_factory.start(
        ["--config_path", str(config), *POLL], rest=True, env={"NO_PROXY": HOST, "no_proxy": HOST}
    )
    status = requests.get(f"{server.rest_url}/v1/config", timeout=30).json()
    assert "access denied" in status["m"]["model_version_status"][0]["status"]["error_message"]
    for key in ("m/1/model.xml", "m/1/model.bin"):
        s3.client().put_object_acl(Bucket="half-public", Key=key, ACL="public-read")
    eventually(lambda: serves(server.grpc_target, "m", 8.0), what="the download is retried")


def test_config_changes_reuse_the_local_copy(
    s3: MotoS3, server_factory: ServerPool, tmp_path: Path
) -> None:
    """A recompile (new nireq) or a failed one (unknown device) keeps the downloaded files: the
    version is not downloaded again, and a failed reload leaves the old compile serving."""
    s3.client().create_bucket(Bucket="reuse")
    s3.upload("reuse", "m/1", scale_repo(tmp_path / "repo", {1: 2.0}) / "1")
    config = tmp_path / "config.json"

    def write(**extra: object) -> None:
        entry = {"name": "m", "base_path": "s3://reuse/m", **extra}
        config.write_text(json.dumps({"model_config_list": [{"config": entry}]}))

    write()
    server = server_factory.start(["--config_path", str(config)], rest=True, env=s3.env)
    reload = f"{server.rest_url}/v1/config/reload"
    local = downloads(server)[1]
    write(nireq=3)
    assert requests.post(reload, timeout=60).status_code in (200, 201)
    write(target_device="NO_SUCH_DEVICE")  # the recompile fails, version 1 keeps serving
    requests.post(reload, timeout=60)
    assert infer(server.grpc_target, "m") == 2.0
    assert local.is_dir()
    assert server.log_text().count("downloading version 1") == 1


def test_gcs_model(server_factory: ServerPool, tmp_path: Path) -> None:
    emulator = GcsEmulator().start()
    try:
        repo = scale_repo(tmp_path / "repo", {1: 2.0, 3: 6.0})
        emulator.upload("gcs-models", "scale/1", repo / "1")
        server = server_factory.start(
            ["--model_name", "scale", "--model_path", "gs://gcs-models/scale", *POLL],
            env=emulator.env,
        )
        assert infer(server.grpc_target, "scale") == 2.0
        emulator.upload("gcs-models", "scale/3", repo / "3")
        eventually(lambda: serves(server.grpc_target, "scale", 6.0), what="version 3 serves")
        server_factory.close()
    finally:
        emulator.stop()


def test_azure_blob_model(server_factory: ServerPool, tmp_path: Path) -> None:
    azurite = Azurite(tmp_path / "azurite").start()
    try:
        repo = scale_repo(tmp_path / "repo", {1: 2.0, 2: 7.0})
        azurite.upload("models", "scale/1", repo / "1")
        server = server_factory.start(
            ["--model_name", "scale", "--model_path", "az://models/scale", *POLL],
            env=azurite.env,
        )
        assert infer(server.grpc_target, "scale") == 2.0
        azurite.upload("models", "scale/2", repo / "2")
        eventually(lambda: serves(server.grpc_target, "scale", 7.0), what="version 2 serves")
        missing = exit_of(
            ["--model_name", "m", "--model_path", "az://no-such-container/m"], tmp_path, azurite.env
        )
        assert missing.returncode != 0
        assert "bucket no-such-container does not exist" in missing.log_text()
        server_factory.close()
    finally:
        azurite.stop()
