"""The KServe contract without a cluster: run deploy/kserve's runtime as KServe would.

KServe renders the ClusterServingRuntime's container: ``{{.Name}}`` becomes the
InferenceService's name, the InferenceService's own args are appended (the last occurrence of
a flag wins), and the storage initializer (kserve-storage's ``Storage.download_files``) fills
``/mnt/models`` from the storageUri, flat. Here a temporary folder stands in for
``/mnt/models``, filled by kserve-storage itself (in a subprocess, as the init container) from
a local folder and from ``s3://`` on moto's server, and the appended args move the ports to free
ones on 127.0.0.1. Then the probes, tritonclient over gRPC and REST, and ``/metrics`` on the
annotated port are checked. ModelMesh's OVMS adapter drives a server through
``POST /v1/config/reload`` and ``GET /v1/config``: their shapes are checked as it reads them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import yaml

from _models import save_ir, scale_model
from _object_stores import NO_PROXY, MotoS3
from _server import HOST, ServerPool, free_port

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ROOT / "deploy" / "kserve" / "kserve-ovserve.yaml"
ISVC = ROOT / "deploy" / "kserve" / "examples" / "isvc-local.yaml"
MOUNT = "/mnt/models"
FACTOR = 3.0


def runtime_container() -> dict[str, Any]:
    doc = yaml.safe_load(RUNTIME.read_text())
    container: dict[str, Any] = doc["spec"]["containers"][0]
    container["annotations"] = doc["spec"]["annotations"]
    return container


def render_args(name: str, appended: list[str], mount: Path) -> list[str]:
    """The container's args as KServe renders them, with ``/mnt/models`` at ``mount``."""
    args = [arg.replace("{{.Name}}", name) for arg in runtime_container()["args"]]
    isvc = yaml.safe_load(ISVC.read_text())["spec"]["predictor"]["model"]
    return [arg.replace(MOUNT, str(mount)) for arg in [*args, *isvc.get("args", []), *appended]]


def storage_initializer(uri: str, target: Path, env: dict[str, str]) -> None:
    """kserve-storage's own download, in a process of its own (as KServe's init container)."""
    code = (
        "import sys; from kserve_storage import Storage; "
        "Storage.download_files([sys.argv[1]], [sys.argv[2]])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, uri, str(target)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def flat_model(folder: Path) -> Path:
    """A scale model's files directly in ``folder`` (KServe's flat layout)."""
    save_ir(scale_model((1, 3, -1, -1), FACTOR), folder)
    for path in (folder / "1").iterdir():
        path.rename(folder / path.name)
    (folder / "1").rmdir()
    return folder


@pytest.fixture(scope="module")
def s3() -> Iterator[MotoS3]:
    server = MotoS3().start()
    yield server
    server.stop()


def fill_mount(source: str, tmp_path: Path, s3: MotoS3) -> Path:
    """``/mnt/models`` as the storage initializer leaves it, from a local folder or s3://."""
    model = flat_model(tmp_path / "model")
    mount = tmp_path / "mnt-models"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **NO_PROXY}
    if source == "local":
        storage_initializer(str(model), mount, env)
    else:
        s3.client().create_bucket(Bucket="isvc")
        s3.upload("isvc", "face-detection", model)
        env |= {
            "AWS_ENDPOINT_URL": f"http://{s3.endpoint}",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "S3_USE_HTTPS": "0",
            "S3_VERIFY_SSL": "0",
        }
        storage_initializer("s3://isvc/face-detection", mount, env)
    assert sorted(path.name for path in mount.iterdir()) == ["model.bin", "model.xml"]
    return mount


@pytest.mark.parametrize("source", ["local", "s3"])
def test_runtime_serves_what_the_storage_initializer_leaves(
    source: str, s3: MotoS3, server_factory: ServerPool, tmp_path: Path
) -> None:
    mount = fill_mount(source, tmp_path, s3)
    container = runtime_container()
    rest_in_runtime = next(a for a in container["args"] if a.startswith("--rest_port="))
    annotated = container["annotations"]["prometheus.kserve.io/port"]
    assert rest_in_runtime == f"--rest_port={annotated}", "metrics must be on the REST port"
    grpc_port, rest_port = free_port(), free_port()
    args = render_args(
        "face-detection",
        # InferenceService args appended after the runtime's: these must win.
        [
            f"--port={grpc_port}",
            f"--rest_port={rest_port}",
            f"--grpc_bind_address={HOST}",
            f"--rest_bind_address={HOST}",
        ],
        mount,
    )
    assert "--port=9000" in args
    assert "--model_name=face-detection" in args
    server = server_factory.start(args, grpc=False, rest=True, rest_port=rest_port)
    rest = f"http://{HOST}:{rest_port}"

    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert requests.get(f"{rest}{get['path']}", timeout=10).status_code == 200, probe
    assert "serving it as version 1" in server.log_text()

    data = np.ones((1, 3, 8, 8), np.float32)
    grpc_client = grpcclient.InferenceServerClient(f"{HOST}:{grpc_port}")
    grpc_input = grpcclient.InferInput("data", list(data.shape), "FP32")
    grpc_input.set_data_from_numpy(data)
    grpc_out = grpc_client.infer("face-detection", [grpc_input]).as_numpy("out")
    http_client = httpclient.InferenceServerClient(f"{HOST}:{rest_port}")
    http_input = httpclient.InferInput("data", list(data.shape), "FP32")
    http_input.set_data_from_numpy(data, binary_data=True)
    http_out = http_client.infer("face-detection", [http_input]).as_numpy("out")
    for out in (grpc_out, http_out):
        assert out is not None
        np.testing.assert_allclose(out, data * FACTOR, rtol=1e-2)

    path = container["annotations"]["prometheus.kserve.io/path"]
    metrics = requests.get(f"{rest}{path}", timeout=10)
    assert metrics.status_code == 200
    assert 'ovms_requests_success{api="KServe",interface="gRPC",method="ModelInfer"' in (
        metrics.text
    )
    assert 'ovms_requests_streams_ratio{name="face-detection",version="1"}' in metrics.text


def test_modelmesh_adapter_calls(server_factory: ServerPool, tmp_path: Path) -> None:
    """ModelMesh's ovms adapter: writes model_config_list, POSTs /v1/config/reload, reads
    ``{name: {model_version_status: [{version, state, status: {error_code, error_message}}]}}``
    (200 or 201) or ``{"error": ...}`` otherwise, and waits for ``state == "AVAILABLE"``."""
    config = tmp_path / "model_config_list.json"
    config.write_text(json.dumps({"model_config_list": []}))  # the adapter writes it on boot
    rest_port = free_port()
    server_factory.start(
        # ModelMesh's ovms-1.x runtime args (ports moved to free ones)
        [
            f"--config_path={config}",
            "--file_system_poll_wait_seconds=0",
            f"--grpc_bind_address={HOST}",
            f"--rest_bind_address={HOST}",
            f"--rest_port={rest_port}",
        ],
        rest=False,
    )
    rest = f"http://{HOST}:{rest_port}"
    model = flat_model(tmp_path / "models" / "mm-model")
    entries = [
        {"config": {"name": "mm-model", "base_path": str(model)}},
        {"config": {"name": "mm-broken", "base_path": str(tmp_path / "nowhere")}},
    ]
    config.write_text(json.dumps({"model_config_list": entries}))

    reload = requests.post(f"{rest}/v1/config/reload", timeout=60)
    if reload.status_code in (200, 201):
        answers = [reload.json(), requests.get(f"{rest}/v1/config", timeout=10).json()]
    else:
        assert isinstance(reload.json()["error"], str)
        answers = [requests.get(f"{rest}/v1/config", timeout=10).json()]
    for answer in answers:
        good = answer["mm-model"]["model_version_status"][0]
        assert good["state"] == "AVAILABLE"
        assert isinstance(good["version"], str)
        assert set(good["status"]) >= {"error_code", "error_message"}
        bad = answer["mm-broken"]["model_version_status"][0]
        assert bad["state"] != "AVAILABLE"
        # the reason, without the path: replies never name filesystem paths (the log does)
        assert bad["status"]["error_message"] == "Model path does not exist"

    config.write_text(json.dumps({"model_config_list": entries[:1]}))  # an unload
    after = requests.post(f"{rest}/v1/config/reload", timeout=60)
    assert after.status_code in (200, 201)
    assert after.json()["mm-model"]["model_version_status"][0]["state"] == "AVAILABLE"
