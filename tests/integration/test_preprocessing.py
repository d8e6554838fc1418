"""``--mean``, ``--scale``, ``--color_format``, ``--precision`` served as OVMS serves them.

The server runs OVMS's ``using_onnx_model`` demo command unchanged on a float NCHW model; clients
send UINT8 NHWC BGR pictures, as the demo's client does. Expected values come from numpy (swap
the colour channels, convert to f32, subtract the mean and divide by the scale per channel,
transpose to NCHW) fed to the unmodified model in this process at f32.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import onnx
import pytest
import requests
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from onnx import TensorProto, helper, numpy_helper
from ovmsclient import make_grpc_client
from tritonclient.utils import InferenceServerException

from _models import add_mul_model, conv_onnx, reference, save_ir, save_onnx
from _server import F32_FLAGS, ServerPool, ServerProcess, run_to_exit

MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float32)
SCALE = np.array([58.395, 57.12, 57.375], dtype=np.float32)
DEMO_FLAGS = (
    "--layout",
    "NHWC:NCHW",
    "--mean",
    "[123.675,116.28,103.53]",
    "--scale",
    "[58.395,57.12,57.375]",
    "--shape",
    "(1,224,224,3)",
    "--color_format",
    "BGR:RGB",
    "--precision",
    "uint8:fp32",
)
"""OVMS's using_onnx_model server flags, verbatim."""
TIMEOUT = 30.0
Array = npt.NDArray[Any]


def bgr_picture(height: int = 224, width: int = 224, seed: int = 3) -> npt.NDArray[np.uint8]:
    """A UINT8 NHWC BGR batch of one, as the demo's client sends."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (1, height, width, 3), dtype=np.uint8)


def numpy_preprocess(bgr: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """What the server must do: BGR→RGB, f32, minus mean, divided by scale, NHWC→NCHW."""
    rgb = bgr[..., ::-1].astype(np.float32)
    normalised: npt.NDArray[np.float32] = (rgb - MEAN) / SCALE
    return np.ascontiguousarray(normalised.transpose(0, 3, 1, 2))


def passthrough_onnx() -> onnx.ModelProto:
    """``out = data * 1`` on [1, 3, h, w]: the reply is the preprocessed tensor itself."""
    graph = helper.make_graph(
        [helper.make_node("Mul", ["data", "one"], ["out"])],
        "passthrough",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, "h", "w"])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, "h", "w"])],
        [numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


@pytest.fixture(scope="module")
def conv_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_onnx(conv_onnx(), tmp_path_factory.mktemp("conv"))


@pytest.fixture(scope="module")
def demo_server(module_server_factory: ServerPool, conv_path: Path) -> ServerProcess:
    """The conv model behind OVMS's demo command."""
    args = ["--model_name", "resnet", "--model_path", str(conv_path.parent.parent)]
    return module_server_factory.start([*args, *DEMO_FLAGS, *F32_FLAGS], rest=True)


def expected_conv(conv_path: Path, bgr: npt.NDArray[np.uint8]) -> Array:
    return reference(conv_path, {"data": numpy_preprocess(bgr)})["out"]


def assert_close(actual: Array, expected: Array) -> None:
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4)


def test_preprocessed_tensor_equals_numpy(server_factory: ServerPool, tmp_path: Path) -> None:
    """Order of operations: colour swap, then type, then mean and scale per RGB channel."""
    path = save_onnx(passthrough_onnx(), tmp_path / "pass")
    server = server_factory.start(
        [
            "--model_name",
            "pass",
            "--model_path",
            str(path.parent.parent),
            *DEMO_FLAGS[:-6],  # layout, mean, scale, shape
            "--color_format",
            "BGR:RGB",
            "--precision",
            "uint8:fp32",
            *F32_FLAGS,
        ]
    )
    picture = bgr_picture()
    client = triton_grpc.InferenceServerClient(server.grpc_target)
    infer_input = triton_grpc.InferInput("data", list(picture.shape), "UINT8")
    infer_input.set_data_from_numpy(picture)
    result = client.infer("pass", [infer_input]).as_numpy("out")
    assert result.shape == (1, 3, 224, 224)
    np.testing.assert_allclose(result, numpy_preprocess(picture), rtol=1e-6, atol=1e-5)


def test_kserve_grpc(demo_server: ServerProcess, conv_path: Path) -> None:
    client = triton_grpc.InferenceServerClient(demo_server.grpc_target)
    metadata = client.get_model_metadata("resnet", as_json=True)
    assert metadata["inputs"] == [
        {"name": "data", "datatype": "UINT8", "shape": ["1", "224", "224", "3"]}
    ]
    picture = bgr_picture()
    infer_input = triton_grpc.InferInput("data", list(picture.shape), "UINT8")
    infer_input.set_data_from_numpy(picture)
    result = client.infer("resnet", [infer_input]).as_numpy("out")
    assert_close(result, expected_conv(conv_path, picture))


def test_kserve_grpc_refuses_fp32(demo_server: ServerProcess) -> None:
    client = triton_grpc.InferenceServerClient(demo_server.grpc_target)
    infer_input = triton_grpc.InferInput("data", [1, 224, 224, 3], "FP32")
    infer_input.set_data_from_numpy(bgr_picture().astype(np.float32))
    with pytest.raises(InferenceServerException, match="Expected: UINT8; Actual: FP32"):
        client.infer("resnet", [infer_input])


def test_kserve_rest(demo_server: ServerProcess, conv_path: Path) -> None:
    base = demo_server.rest_url
    metadata = requests.get(f"{base}/v2/models/resnet", timeout=TIMEOUT).json()
    assert metadata["inputs"] == [{"name": "data", "datatype": "UINT8", "shape": [1, 224, 224, 3]}]
    picture = bgr_picture(seed=4)
    body = {
        "inputs": [
            {
                "name": "data",
                "shape": list(picture.shape),
                "datatype": "UINT8",
                "data": picture.ravel().tolist(),
            }
        ]
    }
    reply = requests.post(f"{base}/v2/models/resnet/infer", json=body, timeout=TIMEOUT).json()
    result = np.array(reply["outputs"][0]["data"], np.float32).reshape(reply["outputs"][0]["shape"])
    assert_close(result, expected_conv(conv_path, picture))


def test_tfserving_grpc(demo_server: ServerProcess, conv_path: Path) -> None:
    """ovmsclient, as OVMS's demo client uses it."""
    client = make_grpc_client(demo_server.grpc_target)
    metadata = client.get_model_metadata("resnet")
    assert metadata["inputs"] == {"data": {"shape": [1, 224, 224, 3], "dtype": "DT_UINT8"}}
    picture = bgr_picture(seed=5)
    result = client.predict({"data": picture}, "resnet")
    assert_close(result, expected_conv(conv_path, picture))


def test_tfserving_rest(demo_server: ServerProcess, conv_path: Path) -> None:
    base = demo_server.rest_url
    metadata = requests.get(f"{base}/v1/models/resnet/metadata", timeout=TIMEOUT).json()
    signature = metadata["metadata"]["signature_def"]["signatureDef"]["serving_default"]
    assert signature["inputs"]["data"]["dtype"] == "DT_UINT8"
    picture = bgr_picture(seed=6)
    reply = requests.post(
        f"{base}/v1/models/resnet:predict",
        data=json.dumps({"inputs": {"data": picture.tolist()}}),
        timeout=TIMEOUT,
    ).json()
    assert_close(np.array(reply["outputs"], np.float32), expected_conv(conv_path, picture))


def test_config_json_keys(server_factory: ServerPool, conv_path: Path, tmp_path: Path) -> None:
    """Beyond OVMS: the four keys in config.json, mean as a JSON list, scale as a string."""
    config = {
        "model_config_list": [
            {
                "config": {
                    "name": "resnet",
                    "base_path": str(conv_path.parent.parent),
                    "layout": "NHWC:NCHW",
                    "shape": "(1,64,48,3)",
                    "mean": [123.675, 116.28, 103.53],
                    "scale": "[58.395,57.12,57.375]",
                    "color_format": "BGR:RGB",
                    "precision": "uint8:fp32",
                    "plugin_config": {"INFERENCE_PRECISION_HINT": "f32"},
                }
            }
        ]
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    server = server_factory.start(["--config_path", str(path)])
    client = make_grpc_client(server.grpc_target)
    assert client.get_model_metadata("resnet")["inputs"]["data"]["dtype"] == "DT_UINT8"
    picture = bgr_picture(64, 48, seed=7)
    assert_close(client.predict({"data": picture}, "resnet"), expected_conv(conv_path, picture))


# --- start-up errors, through the real process -------------------------------------------------


def run_flags(tmp_path: Path, base: Path, *flags: str) -> ServerProcess:
    args = ["--model_name", "m", "--model_path", str(base), *flags]
    return run_to_exit(args, log_dir=tmp_path / "logs")


def test_mean_without_layout_exits_64(conv_path: Path, tmp_path: Path) -> None:
    server = run_flags(tmp_path, conv_path.parent.parent, "--mean", "[1,2,3]")
    assert server.returncode == 64
    log = server.log_text()
    assert log.strip() == "error parsing options - --mean parameter requires --layout to be set"


def test_bad_value_exits_1(conv_path: Path, tmp_path: Path) -> None:
    base = conv_path.parent.parent
    server = run_flags(tmp_path, base, "--layout", "NHWC:NCHW", "--precision", "FLOAT32")
    assert server.returncode == 1
    log = server.log_text()
    assert "The provided precision is in wrong format" in log
    assert "Traceback" not in log


def test_preprocessing_on_a_multi_input_model(tmp_path: Path) -> None:
    base = tmp_path / "add_mul"
    save_ir(add_mul_model(), base)
    server = run_flags(tmp_path, base, "--layout", '{"a":"NC"}', "--mean", "1.0")
    assert server.returncode == 1
    log = server.log_text()
    assert "apply to a model's only input, and this model has 2 inputs" in log
    assert "Traceback" not in log


def test_binary_png_on_the_demo_server(demo_server: ServerProcess, conv_path: Path) -> None:
    """A PNG sent as a KServe binary input is decoded to UINT8 NHWC BGR, as the client sends."""
    picture = bgr_picture(seed=8)
    ok, png = cv2.imencode(".png", picture[0])
    assert ok
    client = triton_http.InferenceServerClient(demo_server.rest_url.removeprefix("http://"))
    tensor = triton_http.InferInput("data", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([png.tobytes()], dtype=np.object_), binary_data=True)
    result = client.infer("resnet", [tensor]).as_numpy("out")
    assert_close(result, expected_conv(conv_path, picture))
