"""Version folders and policies: which versions serve, and which one a request gets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import tritonclient.grpc as triton
from ovmsclient import make_grpc_client
from ovmsclient.tfs_compat.base.errors import ModelNotFoundError
from tritonclient.utils import InferenceServerException

from _models import save_ir, scale_model
from _server import ServerPool, ServerProcess

SHAPE = (1, 3, 4, 5)
DATA = np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE)


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Versions 1, 2, 3 of a static (1,3,4,5) IR; version N multiplies by N."""
    base = tmp_path_factory.mktemp("versions")
    for version in (1, 2, 3):
        save_ir(scale_model(SHAPE, factor=float(version)), base, version)
    (base / "0").mkdir()  # not a version: versions start at 1
    (base / "v4").mkdir()
    return base


def serve(pool: ServerPool, repository: Path, policy: dict[str, object] | None) -> ServerProcess:
    args = ["--model_name", "m", "--model_path", str(repository)]
    if policy is not None:
        args += ["--model_version_policy", json.dumps(policy)]
    return pool.start(args)


@pytest.fixture(scope="module")
def latest(module_server_factory: ServerPool, repository: Path) -> ServerProcess:
    return serve(module_server_factory, repository, None)


@pytest.fixture(scope="module")
def every(module_server_factory: ServerPool, repository: Path) -> ServerProcess:
    return serve(module_server_factory, repository, {"all": {}})


@pytest.fixture(scope="module")
def specific(module_server_factory: ServerPool, repository: Path) -> ServerProcess:
    return serve(module_server_factory, repository, {"specific": {"versions": [1, 2]}})


def infer(server: ServerProcess, version: str = "") -> tuple[str, npt.NDArray[np.float32]]:
    tensor = triton.InferInput("data", list(SHAPE), "FP32")
    tensor.set_data_from_numpy(DATA)
    result = triton.InferenceServerClient(server.grpc_target).infer(
        "m", [tensor], model_version=version
    )
    return result.get_response().model_version, result.as_numpy("out")


def statuses(server: ServerProcess) -> dict[int, str]:
    status = make_grpc_client(server.grpc_target).get_model_status("m")
    return {version: entry["state"] for version, entry in status.items()}


def test_default_policy_serves_only_the_latest(latest: ServerProcess) -> None:
    assert statuses(latest) == {3: "AVAILABLE"}
    version, out = infer(latest)
    assert version == "3"
    np.testing.assert_array_equal(out, DATA * 3)
    metadata = triton.InferenceServerClient(latest.grpc_target).get_model_metadata("m")
    assert list(metadata.versions) == ["3"]
    assert [list(t.shape) for t in metadata.inputs] == [list(SHAPE)]


@pytest.mark.parametrize("version", ["1", "2", "4"])
def test_versions_outside_the_policy_are_not_found(latest: ServerProcess, version: str) -> None:
    with pytest.raises(InferenceServerException) as caught:
        infer(latest, version)
    assert caught.value.status() == "StatusCode.NOT_FOUND"
    assert caught.value.message() == "Model with requested version is not found"


def test_all_versions(every: ServerProcess) -> None:
    assert statuses(every) == {1: "AVAILABLE", 2: "AVAILABLE", 3: "AVAILABLE"}
    assert infer(every)[0] == "3"
    for version in (1, 2, 3):
        served, out = infer(every, str(version))
        assert served == str(version)
        np.testing.assert_array_equal(out, DATA * version)
    client = triton.InferenceServerClient(every.grpc_target)
    assert list(client.get_model_metadata("m").versions) == ["1", "2", "3"]
    assert client.is_model_ready("m", "1")


def test_tfs_version_selection(every: ServerProcess) -> None:
    client = make_grpc_client(every.grpc_target)
    np.testing.assert_array_equal(client.predict({"data": DATA}, "m", 2), DATA * 2)
    np.testing.assert_array_equal(client.predict({"data": DATA}, "m"), DATA * 3)
    assert client.get_model_metadata("m", 1)["model_version"] == 1
    assert client.get_model_metadata("m")["model_version"] == 3
    assert client.get_model_status("m", 2) == {
        2: {"state": "AVAILABLE", "error_code": 0, "error_message": "OK"}
    }
    with pytest.raises(ModelNotFoundError, match="Model with requested version is not found"):
        client.get_model_status("m", 4)


def test_specific_versions(specific: ServerProcess) -> None:
    assert statuses(specific) == {1: "AVAILABLE", 2: "AVAILABLE"}
    served, out = infer(specific)
    assert served == "2"
    np.testing.assert_array_equal(out, DATA * 2)
    with pytest.raises(InferenceServerException, match="Model with requested version is not"):
        infer(specific, "3")


def test_static_shape_is_enforced(latest: ServerProcess) -> None:
    tensor = triton.InferInput("data", [1, 3, 4, 6], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 3, 4, 6), np.float32))
    with pytest.raises(InferenceServerException) as caught:
        triton.InferenceServerClient(latest.grpc_target).infer("m", [tensor])
    assert caught.value.message() == (
        "Invalid input shape - Expected: (1,3,4,5); Actual: (1,3,4,6); input name: data"
    )
