"""TF Serving REST against a real ovserve: the four body formats, ovmsclient, OVMS's errors."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from ovmsclient import make_http_client
from ovmsclient.tfs_compat.base.errors import ModelNotFoundError

from _models import add_mul_model, save_ir, scale_model
from _rest import error_of, get, post, still_serves
from _server import F32_FLAGS, ServerPool, ServerProcess

X = np.array([[1.0, 2.5, -3.0, 4.0], [0.5, 0.25, 8.0, -1.0]], np.float32)
A = X
B = np.array([[2.0, 2.0, -0.5, 0.25], [1.0, 3.0, 3.0, -2.0]], np.float32)


@pytest.fixture(scope="module")
def scale(
    module_server_factory: ServerPool, tmp_path_factory: pytest.TempPathFactory
) -> ServerProcess:
    """One input ``data`` [-1, 4] → ``out = data * 2`` (REST only)."""
    base = tmp_path_factory.mktemp("scale")
    save_ir(scale_model((-1, 4)), base)
    args = ["--model_name", "scale", "--model_path", str(base), *F32_FLAGS]
    return module_server_factory.start(args, grpc=False, rest=True)


@pytest.fixture(scope="module")
def add_mul(
    module_server_factory: ServerPool, tmp_path_factory: pytest.TempPathFactory
) -> ServerProcess:
    """``a``, ``b`` [-1, 4] → ``sum``, ``product``."""
    base = tmp_path_factory.mktemp("add_mul")
    save_ir(add_mul_model(), base)
    args = ["--model_name", "add_mul", "--model_path", str(base), *F32_FLAGS]
    return module_server_factory.start(args, rest=True)


def predict(server: ServerProcess, model: str, document: Any, version: int | None = None) -> Any:
    versioned = f"/versions/{version}" if version is not None else ""
    response = post(f"{server.rest_url}/v1/models/{model}{versioned}:predict", json.dumps(document))
    assert response.status_code == 200, response.text
    return response.json()


# --- the four formats ---------------------------------------------------------------------------


def test_row_unnamed(scale: ServerProcess) -> None:
    reply = predict(scale, "scale", {"instances": X.tolist()})
    assert reply == {"predictions": (X * 2).tolist()}


def test_row_named(scale: ServerProcess) -> None:
    instances = [{"data": row} for row in X.tolist()]
    reply = predict(scale, "scale", {"signature_name": "serving_default", "instances": instances})
    assert reply == {"predictions": (X * 2).tolist()}


def test_column_unnamed(scale: ServerProcess) -> None:
    assert predict(scale, "scale", {"inputs": X.tolist()}, version=1) == {
        "outputs": (X * 2).tolist()
    }


def test_column_named(scale: ServerProcess) -> None:
    assert predict(scale, "scale", {"inputs": {"data": X.tolist()}}) == {
        "outputs": (X * 2).tolist()
    }


def test_several_inputs_and_outputs(add_mul: ServerProcess) -> None:
    rows = [{"a": a, "b": b} for a, b in zip(A.tolist(), B.tolist(), strict=True)]
    reply = predict(add_mul, "add_mul", {"instances": rows})
    assert reply == {
        "predictions": [
            {"sum": total, "product": product}
            for total, product in zip((A + B).tolist(), (A * B).tolist(), strict=True)
        ]
    }
    reply = predict(add_mul, "add_mul", {"inputs": {"a": A.tolist(), "b": B.tolist()}})
    assert reply == {"outputs": {"sum": (A + B).tolist(), "product": (A * B).tolist()}}


# --- status, metadata, config -------------------------------------------------------------------


def test_status_and_metadata(scale: ServerProcess) -> None:
    status = get(f"{scale.rest_url}/v1/models/scale").json()
    assert status == {
        "model_version_status": [
            {
                "version": "1",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": "OK"},
            }
        ]
    }
    assert get(f"{scale.rest_url}/v1/models/scale/versions/1").json() == status
    metadata = get(f"{scale.rest_url}/v1/models/scale/versions/1/metadata").json()
    assert metadata["modelSpec"]["name"] == "scale"
    assert metadata["modelSpec"]["version"] == "1"
    signature = metadata["metadata"]["signature_def"]["signatureDef"]["serving_default"]
    data = signature["inputs"]["data"]
    assert data["dtype"] == "DT_FLOAT"
    assert [dim["size"] for dim in data["tensorShape"]["dim"]] == ["-1", "4"]
    assert get(f"{scale.rest_url}/v1/config").json() == {"scale": status}


def test_ovmsclient_over_rest(add_mul: ServerProcess) -> None:
    client = make_http_client(add_mul.rest_url.removeprefix("http://"))
    outputs = client.predict({"a": A, "b": B}, "add_mul")
    np.testing.assert_array_equal(outputs["sum"], A + B)
    np.testing.assert_array_equal(outputs["product"], A * B)
    metadata = client.get_model_metadata("add_mul")
    assert metadata["model_version"] == 1
    assert metadata["inputs"]["a"] == {"dtype": "DT_FLOAT", "shape": [-1, 4]}
    assert client.get_model_status("add_mul")[1]["state"] == "AVAILABLE"
    with pytest.raises(ModelNotFoundError):
        client.get_model_status("nope")


def test_ovmsclient_single_output_over_rest(scale: ServerProcess) -> None:
    client = make_http_client(scale.rest_url.removeprefix("http://"))
    np.testing.assert_array_equal(client.predict({"data": X}, "scale", model_version=1), X * 2)


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ("{oops", 400, "The file is not valid json"),
        ("[]", 400, "Request body should be JSON object"),
        (
            '{"signature_name": "x"}',
            400,
            "Invalid JSON structure. Could not detect row or column format",
        ),
        (
            '{"instances": [], "inputs": []}',
            400,
            "Invalid JSON structure. Could not detect row or column format",
        ),
        (
            '{"instances": {"data": 1}}',
            400,
            "Invalid JSON structure. Nonamed instance is not an array.",
        ),
        ('{"instances": []}', 400, "Invalid JSON structure. Missing instances in row format"),
        ('{"instances": ["a"]}', 400, "Could not detect neither named or nonamed format"),
        (
            '{"instances": [{"data": [1, 2, 3, 4]}, [1, 2, 3, 4]]}',
            400,
            "Invalid JSON structure. One of named instances is not a JSON object.",
        ),
        (
            '{"instances": [[1, 2, 3, 4], [1, 2]]}',
            400,
            "Could not parse instance content. Not valid ndarray detected",
        ),
        (
            '{"instances": [{"data": [1, 2, 3, 4], "x": [1]}, {"data": [1, 2, 3, 4]}]}',
            400,
            "Invalid JSON structure. Request inputs have different batch sizes",
        ),
        ('{"inputs": 3}', 400, "Invalid JSON structure. One of inputs is not a JSON object."),
        ('{"inputs": {}}', 400, "Invalid JSON structure, missing inputs"),
        (
            '{"inputs": {"data": [[1, 2], [3]]}}',
            400,
            "Could not parse input content. Not valid ndarray detected",
        ),
        ('{"inputs": {"data": [{"b64": "*"}]}}', 400, "Decode Base64 to string error"),
        ('{"inputs": {"data": [[1, 2, 3]]}}', 400, "Invalid input shape"),
        ('{"inputs": {"other": [[1, 2, 3, 4]]}}', 400, "Missing input with specific name"),
        ('{"inputs": {"data": [[1, 2, 3, 4]], "x": [1]}}', 400, "Invalid number of inputs"),
        ('{"inputs": {"data": ' + "[" * 101 + "]" * 101 + "}}", 400, "JSON nesting depth"),
    ],
)
def test_bad_bodies(scale: ServerProcess, body: str, status: int, error: str) -> None:
    response = post(f"{scale.rest_url}/v1/models/scale:predict", body)
    assert response.status_code == status, response.text
    assert error_of(response).startswith(error)
    still_serves(scale.rest_url, "scale")


@pytest.mark.parametrize(
    ("method", "path", "status", "error"),
    [
        ("post", "/v1/models/nope:predict", 404, "Model with requested name is not found"),
        (
            "post",
            "/v1/models/scale/versions/4:predict",
            404,
            "Model with requested version is not found",
        ),
        ("get", "/v1/models/nope", 404, "Model with requested name is not found"),
        ("get", "/v1/models/scale/versions/4", 404, "Model with requested version is not found"),
        (
            "get",
            "/v1/models/scale/versions/4/metadata",
            404,
            "Model with requested version is not found",
        ),
        ("get", "/v1/models/scale:predict", 406, "Unsupported method"),
        ("post", "/v1/models/scale", 406, "Unsupported method"),
        ("post", "/v1/models/scale:regress", 404, "Requested REST resource not found"),
        ("post", "/v1/config/reload", 400, "Config file not found or cannot open."),
    ],
)
def test_resources(scale: ServerProcess, method: str, path: str, status: int, error: str) -> None:
    body = json.dumps({"instances": X.tolist()})
    response = post(scale.rest_url + path, body) if method == "post" else get(scale.rest_url + path)
    assert response.status_code == status, response.text
    assert error_of(response) == error


# --- integer inputs: never a silent truncation or wrap ----------------------------------------


@pytest.fixture(scope="module")
def uint8(
    module_server_factory: ServerPool, tmp_path_factory: pytest.TempPathFactory
) -> ServerProcess:
    """One UINT8 input ``data`` [-1, 3] → ``out = data * 2`` (REST only)."""
    base = tmp_path_factory.mktemp("uint8")
    save_ir(scale_model((-1, 3), 2, dtype=np.uint8), base)
    return module_server_factory.start(
        ["--model_name", "u8", "--model_path", str(base)], grpc=False, rest=True
    )


ROW = "Could not parse instance content. Not valid ndarray detected"
COLUMN = "Could not parse input content. Not valid ndarray detected"


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"instances": [[1, 2, 300]]}, f"{ROW} - value out of range for UINT8; input name: data"),
        ({"instances": [[1, 2, -1]]}, f"{ROW} - value out of range for UINT8; input name: data"),
        ({"inputs": [[1.7, 2, 3]]}, f"{COLUMN} - UINT8 values must be integers; input name: data"),
        (
            {"inputs": {"data": [[1, 2, 256]]}},
            f"{COLUMN} - value out of range for UINT8; input name: data",
        ),
    ],
)
def test_integer_input_refuses_fractions_and_out_of_range(
    uint8: ServerProcess, document: Any, message: str
) -> None:
    response = post(f"{uint8.rest_url}/v1/models/u8:predict", json.dumps(document))
    assert (response.status_code, error_of(response)) == (400, message)
    assert predict(uint8, "u8", {"instances": [[1, 2, 127]]}) == {"predictions": [[2, 4, 254]]}
