"""KServe v2 REST against a real ovserve: tritonclient.http (JSON and binary) and raw HTTP."""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import pytest
import requests
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from _models import add_mul_model, save_ir
from _rest import error_of, get, post, still_serves
from _server import F32_FLAGS, ServerPool, ServerProcess

MODEL = "add_mul"
A = np.array([[1.5, -2.0, 3.25, 4.0], [0.5, 0.0, -1.0, 8.0]], np.float32)
B = np.array([[2.0, 2.0, -0.5, 0.25], [1.0, 3.0, 3.0, -2.0]], np.float32)


@pytest.fixture(scope="module")
def server(
    module_server_factory: ServerPool, tmp_path_factory: pytest.TempPathFactory
) -> ServerProcess:
    """``a``, ``b`` [-1, 4] → ``sum``, ``product``, with gRPC and REST."""
    base = tmp_path_factory.mktemp("add_mul")
    save_ir(add_mul_model(), base)
    args = ["--model_name", MODEL, "--model_path", str(base), *F32_FLAGS]
    return module_server_factory.start(args, rest=True)


@pytest.fixture
def client(server: ServerProcess) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(server.rest_url.removeprefix("http://"))


def infer_input(name: str, array: np.ndarray[Any, Any], binary: bool) -> triton.InferInput:
    tensor = triton.InferInput(name, list(array.shape), "FP32")
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


def infer_url(server: ServerProcess, version: str = "") -> str:
    versioned = f"/versions/{version}" if version else ""
    return f"{server.rest_url}/v2/models/{MODEL}{versioned}/infer"


def json_body(**fields: Any) -> str:
    tensors = [
        {"name": "a", "shape": [2, 4], "datatype": "FP32", "data": A.tolist()},
        {"name": "b", "shape": [2, 4], "datatype": "FP32", "data": B.ravel().tolist()},
    ]
    return json.dumps({"inputs": tensors, **fields})


# --- health and metadata ------------------------------------------------------------------------


def test_health_and_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.get_server_metadata()["name"] == "OpenVINO Model Server"
    assert client.is_model_ready(MODEL)
    assert client.is_model_ready(MODEL, "1")
    metadata = client.get_model_metadata(MODEL)
    assert metadata["name"] == MODEL
    assert metadata["versions"] == ["1"]
    assert metadata["platform"] == "OpenVINO"
    assert metadata["inputs"] == [
        {"name": "a", "datatype": "FP32", "shape": [-1, 4]},
        {"name": "b", "datatype": "FP32", "shape": [-1, 4]},
    ]
    assert {output["name"] for output in metadata["outputs"]} == {"sum", "product"}


def test_health_endpoints_answer_200_with_an_empty_body(server: ServerProcess) -> None:
    for path in ("/v2/health/live", "/v2/health/ready", f"/v2/models/{MODEL}/ready"):
        response = get(server.rest_url + path)
        assert (response.status_code, response.content) == (200, b"")


def test_unknown_model_and_version(client: triton.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as caught:
        client.get_model_metadata("nope")
    assert "Model with requested name is not found" in str(caught.value)
    assert not client.is_model_ready(MODEL, "7")
    with pytest.raises(InferenceServerException) as caught:
        client.get_model_metadata(MODEL, "7")
    assert "Model with requested version is not found" in str(caught.value)


# --- inference ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("binary_in", "binary_out"), [(False, False), (True, True), (True, False)])
def test_infer_json_and_binary(
    client: triton.InferenceServerClient, binary_in: bool, binary_out: bool
) -> None:
    inputs = [infer_input("a", A, binary_in), infer_input("b", B, binary_in)]
    outputs = [
        triton.InferRequestedOutput("sum", binary_data=binary_out),
        triton.InferRequestedOutput("product", binary_data=binary_out),
    ]
    result = client.infer(MODEL, inputs, outputs=outputs, request_id="r1")
    np.testing.assert_array_equal(result.as_numpy("sum"), A + B)
    np.testing.assert_array_equal(result.as_numpy("product"), A * B)
    response = result.get_response()
    assert (response["model_name"], response["model_version"], response["id"]) == (
        MODEL,
        "1",
        "r1",
    )


def test_large_binary_tensors_in_and_out(client: triton.InferenceServerClient) -> None:
    """Bodies of 1.6 MB arrive over many reads (straight into one buffer); outputs of 800 kB
    leave from the arrays; the same keep-alive connection serves three in a row."""
    rng = np.random.default_rng(11)
    for rows in (50_000, 40_001, 50_000):
        a, b = (rng.standard_normal((rows, 4)).astype(np.float32) for _ in range(2))
        outputs = [
            triton.InferRequestedOutput("sum", binary_data=True),
            triton.InferRequestedOutput("product", binary_data=True),
        ]
        reply = client.infer(
            MODEL, [infer_input("a", a, True), infer_input("b", b, True)], outputs=outputs
        )
        np.testing.assert_array_equal(reply.as_numpy("sum"), a + b)
        np.testing.assert_array_equal(reply.as_numpy("product"), a * b)


def test_infer_all_outputs_binary_by_default(client: triton.InferenceServerClient) -> None:
    """With no outputs listed, tritonclient asks for every output as binary data."""
    result = client.infer(MODEL, [infer_input("a", A, True), infer_input("b", B, False)])
    for output in result.get_response()["outputs"]:
        assert "data" not in output
        assert output["parameters"]["binary_data_size"] == A.nbytes
    np.testing.assert_array_equal(result.as_numpy("sum"), A + B)


def test_infer_one_requested_output_on_a_version(client: triton.InferenceServerClient) -> None:
    inputs = [infer_input("a", A, False), infer_input("b", B, True)]
    output = triton.InferRequestedOutput("product", binary_data=False)
    result = client.infer(MODEL, inputs, model_version="1", outputs=[output])
    assert [tensor["name"] for tensor in result.get_response()["outputs"]] == ["product"]
    np.testing.assert_array_equal(result.as_numpy("product"), A * B)


def test_plain_json_without_content_type(server: ServerProcess) -> None:
    response = post(infer_url(server), json_body())
    assert response.status_code == 200, response.text
    document = response.json()
    outputs = {output["name"]: output for output in document["outputs"]}
    assert outputs["sum"]["shape"] == [2, 4]
    assert outputs["sum"]["datatype"] == "FP32"
    assert np.array(outputs["sum"]["data"], np.float32).tolist() == (A + B).ravel().tolist()


def test_hand_built_binary_request(server: ServerProcess) -> None:
    header = json.dumps(
        {
            "inputs": [
                {"name": "a", "shape": [2, 4], "datatype": "FP32"},
                {
                    "name": "b",
                    "shape": [2, 4],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": B.nbytes},
                },
            ],
            "outputs": [{"name": "sum", "parameters": {"binary_data": True}}],
        }
    ).encode()
    response = post(
        infer_url(server, "1"),
        header + A.tobytes() + B.tobytes(),
        **{"Inference-Header-Content-Length": str(len(header))},
    )
    assert response.status_code == 200, response.text
    length = int(response.headers["Inference-Header-Content-Length"])
    reply = json.loads(response.content[:length])
    assert reply["outputs"][0]["parameters"] == {"binary_data_size": A.nbytes}
    values = np.frombuffer(response.content[length:], np.float32).reshape(2, 4)
    np.testing.assert_array_equal(values, A + B)


# --- bad input -----------------------------------------------------------------------------------


def binary_request(sizes: tuple[int, int], payload: bytes) -> tuple[bytes, dict[str, str]]:
    tensors = [
        {
            "name": name,
            "shape": [2, 4],
            "datatype": "FP32",
            "parameters": {"binary_data_size": size},
        }
        for name, size in zip("ab", sizes, strict=True)
    ]
    header = json.dumps({"inputs": tensors}).encode()
    return header + payload, {"Inference-Header-Content-Length": str(len(header))}


@pytest.mark.parametrize(
    ("body", "headers", "status", "error"),
    [
        ("{not json", {}, 400, "The file is not valid json"),
        ('{"inputs": [', {}, 400, "The file is not valid json"),
        ("[1, 2, 3]", {}, 400, "Request body should be JSON object"),
        ("{}", {}, 400, "Invalid JSON structure, missing inputs"),
        ('{"inputs": {"a": 1}}', {}, 400, "Could not parse input content"),
        (json_body(id=7), {}, 400, "Could not parse input content"),
        (json_body(parameters={"p": 0.5}), {}, 400, "Could not parse request parameters"),
        (
            json_body(),
            {"Inference-Header-Content-Length": "-15"},
            400,
            "Inference-Header-Content-Length header is invalid and couldn't be parsed",
        ),
        (
            json_body(),
            {"Inference-Header-Content-Length": "value"},
            400,
            "Inference-Header-Content-Length header is invalid and couldn't be parsed",
        ),
        (
            json_body(),
            {"Inference-Header-Content-Length": "99999999999"},
            400,
            "Inference-Header-Content-Length header is invalid and couldn't be parsed",
        ),
        (
            json_body(),
            {"Inference-Header-Content-Length": "100000"},
            400,
            "Inference-Header-Content-Length header is invalid and couldn't be parsed",
        ),
        (
            *binary_request((32, 32), A.tobytes()),
            400,
            "Received buffer size is smaller than binary_data_size parameter indicates",
        ),
        (
            *binary_request((32, 32), A.tobytes() + B.tobytes() + b"\0"),
            400,
            "binary_data_size parameter is invalid and cannot be parsed",
        ),
        (
            *binary_request((16, 48), A.tobytes() + B.tobytes()),
            400,
            "Invalid content size of tensor proto",
        ),
        (
            json_body().replace(", -2.0]", "]"),
            {},
            400,
            "Invalid number of values in tensor proto container",
        ),
        ("[" * 101 + "]" * 101, {}, 400, "JSON nesting depth exceeds the limit"),
    ],
)
def test_bad_requests_get_ovms_errors(
    server: ServerProcess, body: str | bytes, headers: dict[str, str], status: int, error: str
) -> None:
    response = post(infer_url(server), body, **headers)
    assert response.status_code == status, response.text
    assert error_of(response).startswith(error)
    still_serves(server.rest_url, MODEL)


@pytest.mark.parametrize(
    ("method", "path", "status", "error"),
    [
        ("GET", "/v2/models/add_mul/versions/1/infer", 406, "Unsupported method"),
        ("POST", "/v2/health/ready", 406, "Unsupported method"),
        ("PUT", "/v2/models/add_mul", 406, "Unsupported method"),
        ("GET", "/v2/repository/index", 404, "Requested REST resource not found"),
        ("GET", "/metrics", 404, "Requested REST resource not found"),
        ("POST", "/v2/models/nope/infer", 404, "Model with requested name is not found"),
        (
            "GET",
            "/v2/models/add_mul/versions/3/ready",
            404,
            "Model with requested version is not found",
        ),
    ],
)
def test_paths_and_methods(
    server: ServerProcess, method: str, path: str, status: int, error: str
) -> None:
    response = requests.request(method, server.rest_url + path, data=json_body(), timeout=30)
    assert response.status_code == status
    assert error_of(response) == error


def test_client_sees_validation_errors(client: triton.InferenceServerClient) -> None:
    wrong = np.ones((2, 3), np.float32)
    with pytest.raises(InferenceServerException) as caught:
        client.infer(MODEL, [infer_input("a", wrong, True), infer_input("b", wrong, True)])
    assert "Invalid input shape - Expected: (-1,4); Actual: (2,3); input name: a" in str(
        caught.value
    )


# --- body size limit ------------------------------------------------------------------------------


def test_body_over_the_limit_is_413_and_the_server_keeps_serving(
    server_factory: ServerPool, tmp_path: Any
) -> None:
    save_ir(add_mul_model(), tmp_path / "m")
    args = [
        "--model_name",
        MODEL,
        "--model_path",
        str(tmp_path / "m"),
        "--max_request_size",
        "4096",
    ]
    small = server_factory.start(args, rest=True)
    big = np.ones((200, 4), np.float32)
    header, headers = binary_request((big.nbytes, big.nbytes), big.tobytes() * 2)
    response = post(infer_url(small), header, **headers)
    assert response.status_code == 413
    assert error_of(response).startswith("Request is larger than the configured limit")
    response = post(infer_url(small), json_body())
    assert response.status_code == 200, response.text


def test_bytes_length_prefixes_must_fit(server: ServerProcess) -> None:
    header = json.dumps({"inputs": [{"name": "a", "shape": [1], "datatype": "BYTES"}]}).encode()
    body = header + struct.pack("<I", 50) + b"short"
    response = post(
        infer_url(server), body, **{"Inference-Header-Content-Length": str(len(header))}
    )
    assert response.status_code == 400
    assert error_of(response).startswith("Invalid content size of tensor proto")
    still_serves(server.rest_url, MODEL)
