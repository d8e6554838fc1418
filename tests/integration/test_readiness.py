"""Model readiness as OVMS answers it: a known version that does not serve is not an error.

gRPC ``ModelReady`` answers OK with ``ready: false`` for a version that failed to load or was
retired; REST ``GET .../versions/{v}/ready`` answers 404 "not loaded yet"; only a version that
does not exist is NOT_FOUND. (A version still loading is covered by the unit tests: a real
server passes through LOADING too quickly to catch.)
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from _models import save_ir, scale_model
from _server import ServerPool, ServerProcess

NOT_LOADED = {"error": "Model with requested version is not loaded yet"}
NOT_FOUND = {"error": "Model with requested version is not found"}


def write_config(path: Path, base: Path, versions: list[int]) -> None:
    policy = {"specific": {"versions": versions}}
    entry = {"config": {"name": "m", "base_path": str(base), "model_version_policy": policy}}
    path.write_text(json.dumps({"model_config_list": [entry]}))


@pytest.fixture(scope="module")
def server(
    module_server_factory: ServerPool, tmp_path_factory: pytest.TempPathFactory
) -> ServerProcess:
    """Version 1 retired (dropped from the policy by a reload), 2 failed (corrupt), 3 serving."""
    root = tmp_path_factory.mktemp("readiness")
    base = root / "m"
    for version in (1, 3):
        save_ir(scale_model((1, 3)), base, version)
    (base / "2").mkdir()
    (base / "2" / "model.xml").write_text("<net><broken")
    (base / "2" / "model.bin").write_bytes(b"\x00")
    config = root / "config.json"
    write_config(config, base, [1, 2, 3])
    started = module_server_factory.start(
        ["--config_path", str(config), "--file_system_poll_wait_seconds", "0"], rest=True
    )
    write_config(config, base, [2, 3])
    reload = requests.post(f"{started.rest_url}/v1/config/reload", timeout=60)
    assert reload.status_code == 201, reload.text
    states = reload.json()["m"]["model_version_status"]
    assert {entry["version"]: entry["state"] for entry in states} == {
        "1": "END",
        "2": "END",
        "3": "AVAILABLE",
    }
    return started


def test_grpc_model_ready(server: ServerProcess) -> None:
    client = triton.InferenceServerClient(server.grpc_target)
    assert client.is_model_ready("m", "3") is True
    assert client.is_model_ready("m") is True
    assert client.is_model_ready("m", "1") is False  # retired
    assert client.is_model_ready("m", "2") is False  # failed to load
    with pytest.raises(InferenceServerException) as caught:
        client.is_model_ready("m", "9")
    assert caught.value.status() == "StatusCode.NOT_FOUND"
    assert caught.value.message() == NOT_FOUND["error"]


@pytest.mark.parametrize(
    ("version", "status", "body"),
    [("3", 200, None), ("1", 404, NOT_LOADED), ("2", 404, NOT_LOADED), ("9", 404, NOT_FOUND)],
)
def test_rest_model_ready(server: ServerProcess, version: str, status: int, body: object) -> None:
    reply = requests.get(f"{server.rest_url}/v2/models/m/versions/{version}/ready", timeout=30)
    assert reply.status_code == status
    if body is None:
        assert reply.content == b""
    else:
        assert reply.json() == body
