"""Encoded JPEG/PNG inputs on an NCHW model served with ``--layout NHWC:NCHW``.

Each image sent encoded must give the reply of sending the tensor it should become (decoded by
Pillow and resized by a numpy bilinear reference, independently of the server's OpenCV), over
KServe REST (tritonclient.http, binary BYTES), TF Serving REST (``{"b64": ...}``) and KServe gRPC
(tritonclient.grpc).
"""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http

from _models import conv_onnx, save_ir, save_onnx, scale_model
from _rest import as_model_input, encode, error_of, make_image, post, still_serves
from _server import F32_FLAGS, ServerPool, ServerProcess

SIZE = (32, 32)
MODEL = "conv"


@pytest.fixture(scope="module")
def server(
    module_server_factory: ServerPool, tmp_path_factory: pytest.TempPathFactory
) -> ServerProcess:
    """ONNX conv ``data`` [1,3,H,W] served as NHWC [1,32,32,3], gRPC and REST."""
    base = tmp_path_factory.mktemp("conv")
    save_onnx(conv_onnx(), base)
    args = [
        "--model_name",
        MODEL,
        "--model_path",
        str(base),
        "--layout",
        "NHWC:NCHW",
        "--shape",
        "(1,32,32,3)",
        *F32_FLAGS,
    ]
    return module_server_factory.start(args, rest=True)


@pytest.fixture(scope="module")
def nchw_server(
    module_server_factory: ServerPool, tmp_path_factory: pytest.TempPathFactory
) -> ServerProcess:
    """An NCHW model without ``--layout``: images cannot feed it."""
    base = tmp_path_factory.mktemp("nchw")
    save_ir(scale_model((1, 3, -1, -1)), base)
    args = ["--model_name", "nchw", "--model_path", str(base)]
    return module_server_factory.start(args, grpc=False, rest=True)


IMAGES = {
    "jpeg": encode(make_image(48, 40, seed=1), ".jpg"),
    "png": encode(make_image(20, 24, seed=2), ".png"),
}


def http_client(server: ServerProcess) -> triton_http.InferenceServerClient:
    return triton_http.InferenceServerClient(server.rest_url.removeprefix("http://"))


def http_bytes(encoded: bytes) -> triton_http.InferInput:
    tensor = triton_http.InferInput("data", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([encoded], dtype=np.object_), binary_data=True)
    return tensor


def http_tensor(array: npt.NDArray[np.float32]) -> triton_http.InferInput:
    tensor = triton_http.InferInput("data", list(array.shape), "FP32")
    tensor.set_data_from_numpy(array, binary_data=True)
    return tensor


def assert_same_reply(from_image: npt.NDArray[Any], from_tensor: npt.NDArray[Any]) -> None:
    """The reference tensor matches OpenCV's resize to ~1e-5 (not bit for bit): the conv's
    replies agree to well under one grey level's effect."""
    assert from_image.shape == from_tensor.shape
    np.testing.assert_allclose(from_image, from_tensor, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("kind", sorted(IMAGES))
def test_kserve_rest_image_equals_its_tensor(server: ServerProcess, kind: str) -> None:
    client = http_client(server)
    encoded = IMAGES[kind]
    from_image = client.infer(MODEL, [http_bytes(encoded)]).as_numpy("out")
    from_tensor = client.infer(MODEL, [http_tensor(as_model_input(encoded, SIZE))]).as_numpy("out")
    assert from_image.shape == (1, 4, 32, 32)
    assert np.count_nonzero(from_image) > from_image.size // 4
    assert_same_reply(from_image, from_tensor)


@pytest.mark.parametrize("kind", sorted(IMAGES))
def test_tfs_rest_b64_image_equals_its_tensor(server: ServerProcess, kind: str) -> None:
    encoded = IMAGES[kind]
    url = f"{server.rest_url}/v1/models/{MODEL}:predict"
    b64 = {"b64": base64.b64encode(encoded).decode()}
    from_image = post(url, json.dumps({"instances": [b64]}))
    tensor = as_model_input(encoded, SIZE)
    from_tensor = post(url, json.dumps({"instances": tensor.tolist()}))
    assert from_image.status_code == 200, from_image.text
    assert from_tensor.status_code == 200, from_tensor.text
    assert_same_reply(
        np.array(from_image.json()["predictions"]), np.array(from_tensor.json()["predictions"])
    )
    named = post(url, json.dumps({"inputs": {"data": [b64]}}))
    assert named.json()["outputs"] == from_image.json()["predictions"]


def test_kserve_grpc_image_equals_its_tensor(server: ServerProcess) -> None:
    client = triton_grpc.InferenceServerClient(server.grpc_target)
    encoded = IMAGES["jpeg"]
    image = triton_grpc.InferInput("data", [1], "BYTES")
    image.set_data_from_numpy(np.array([encoded], dtype=np.object_))
    tensor_array = as_model_input(encoded, SIZE)
    tensor = triton_grpc.InferInput("data", list(tensor_array.shape), "FP32")
    tensor.set_data_from_numpy(tensor_array)
    from_image = client.infer(MODEL, [image]).as_numpy("out")
    assert_same_reply(from_image, client.infer(MODEL, [tensor]).as_numpy("out"))


def test_curl_style_binary_request(server: ServerProcess) -> None:
    """What ``curl --data-binary`` of a JSON header plus one JPEG sends."""
    encoded = IMAGES["jpeg"]
    header = json.dumps({"inputs": [{"name": "data", "shape": [1], "datatype": "BYTES"}]}).encode()
    body = header + struct.pack("<I", len(encoded)) + encoded
    response = post(
        f"{server.rest_url}/v2/models/{MODEL}/infer",
        body,
        **{"Inference-Header-Content-Length": str(len(header))},
    )
    assert response.status_code == 200, response.text
    (output,) = response.json()["outputs"]
    assert output["shape"] == [1, 4, 32, 32]


# --- bad images ---------------------------------------------------------------------------------


def kserve_image_request(server: ServerProcess, *images: bytes, model: str = MODEL) -> str:
    header = json.dumps(
        {"inputs": [{"name": "data", "shape": [len(images)], "datatype": "BYTES"}]}
    ).encode()
    payload = b"".join(struct.pack("<I", len(item)) + item for item in images)
    response = post(
        f"{server.rest_url}/v2/models/{model}/infer",
        header + payload,
        **{"Inference-Header-Content-Length": str(len(header))},
    )
    assert response.status_code == 400, response.text
    return error_of(response)


def test_non_image_bytes(server: ServerProcess) -> None:
    assert kserve_image_request(server, b"this is not a jpeg").startswith("Image parsing failed")
    still_serves(server.rest_url, MODEL)


def test_wrong_channel_count(server: ServerProcess) -> None:
    gray = encode(make_image(32, 32, channels=1), ".png")
    assert kserve_image_request(server, gray).startswith(
        "Invalid number of channels in binary input"
    )
    b64 = {"b64": base64.b64encode(gray).decode()}
    response = post(
        f"{server.rest_url}/v1/models/{MODEL}:predict", json.dumps({"instances": [b64]})
    )
    assert response.status_code == 400
    assert error_of(response).startswith("Invalid number of channels in binary input")
    still_serves(server.rest_url, MODEL)


def test_more_images_than_the_batch(server: ServerProcess) -> None:
    error = kserve_image_request(server, IMAGES["png"], IMAGES["png"])
    assert error.startswith("Invalid input batch size - Expected: 1; Actual: 2")


def test_nchw_model_without_layout(nchw_server: ServerProcess) -> None:
    error = kserve_image_request(nchw_server, IMAGES["png"], model="nchw")
    assert error.startswith(
        "Received binary image input but resource not configured to accept NHWC layout"
    )
    still_serves(nchw_server.rest_url, "nchw")
