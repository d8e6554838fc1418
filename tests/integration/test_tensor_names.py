"""Tensor names as OVMS reports them, over all four APIs.

OVMS names inputs and outputs after the model as read (and laid out, reshaped), before
compiling. Compiling merges the names of tensors joined by an ``Identity``, so an ONNX export
whose output ``scores`` is an Identity of an inner tensor ``m`` must still be served as
``scores``, not ``m``. The expected names are read here from the saved file with OpenVINO's
``read_model`` (``get_any_name()``), and the values are computed in this process at f32.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnx
import openvino as ov
import openvino.opset13 as ops
import pytest
import requests
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from onnx import TensorProto, helper
from ovmsclient import make_grpc_client
from ovmsclient.tfs_compat.base.errors import InvalidInputError
from tritonclient.utils import InferenceServerException

from _models import F32, save_ir, save_onnx
from _server import F32_FLAGS, ServerPool, ServerProcess

X = np.array([[-2.0, -0.5, 0.5, 3.0]], dtype=np.float32)
TIMEOUT = 30.0


def identity_onnx() -> onnx.ModelProto:
    """``x`` → Relu → ``m``; outputs ``scores`` and ``probs`` are Identities of ``m``.

    Compiled, OpenVINO names the second output ``m`` (names ``{m, probs}``), which is what a
    server taking names from the compiled model reports.
    """
    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["m"]),
            helper.make_node("Identity", ["m"], ["scores"]),
            helper.make_node("Identity", ["m"], ["probs"]),
            helper.make_node("Neg", ["x"], ["negated"]),
        ],
        "identity_outputs",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 4]),
            helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, 4]),
            helper.make_tensor_value_info("negated", TensorProto.FLOAT, [1, 4]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def multi_name_ir() -> ov.Model:
    """IR whose input and output tensors each carry two names."""
    data = ops.parameter(ov.PartialShape([1, 4]), np.float32, name="data")
    data.output(0).get_tensor().set_names({"input_b", "input_a"})
    out = ops.multiply(data, ops.constant(np.float32(3.0)))
    out.output(0).get_tensor().set_names({"result_z", "result_y"})
    return ov.Model([out], [data], "multi_name")


def read_names(path: Path) -> tuple[list[str], list[str]]:
    """Input and output names as OVMS reports them: ``get_any_name()`` of the read model."""
    model = ov.Core().read_model(str(path))
    return (
        [port.get_any_name() for port in model.inputs],
        [port.get_any_name() for port in model.outputs],
    )


def reference(path: Path, inputs: dict[str, np.ndarray[Any, Any]]) -> dict[str, Any]:
    """Outputs by read-model name, computed in this process at f32."""
    core = ov.Core()
    model = core.read_model(str(path))
    names = [port.get_any_name() for port in model.outputs]
    request = core.compile_model(model, "CPU", F32).create_infer_request()
    request.infer(list(inputs.values()))
    return {name: request.get_output_tensor(index).data.copy() for index, name in enumerate(names)}


@pytest.fixture(scope="module")
def identity_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_onnx(identity_onnx(), tmp_path_factory.mktemp("identity"))


@pytest.fixture(scope="module")
def identity_server(module_server_factory: ServerPool, identity_path: Path) -> ServerProcess:
    base = str(identity_path.parent.parent)
    return module_server_factory.start(
        ["--model_name", "ident", "--model_path", base, *F32_FLAGS], rest=True
    )


@pytest.fixture(scope="module")
def multi_name_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_ir(multi_name_ir(), tmp_path_factory.mktemp("multi"))


@pytest.fixture(scope="module")
def multi_name_server(module_server_factory: ServerPool, multi_name_path: Path) -> ServerProcess:
    base = str(multi_name_path.parent.parent)
    return module_server_factory.start(
        ["--model_name", "multi", "--model_path", base, *F32_FLAGS], rest=True
    )


def test_the_model_really_has_merged_names_when_compiled(identity_path: Path) -> None:
    """Guard for the test's premise: compiled names differ from the declared ones."""
    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(identity_path)), "CPU")
    assert [port.get_any_name() for port in compiled.outputs] != ["scores", "probs", "negated"]
    assert read_names(identity_path) == (["x"], ["scores", "probs", "negated"])


def test_kserve_grpc_identity_outputs(identity_server: ServerProcess, identity_path: Path) -> None:
    client = triton_grpc.InferenceServerClient(identity_server.grpc_target)
    metadata = client.get_model_metadata("ident", as_json=True)
    assert [tensor["name"] for tensor in metadata["inputs"]] == ["x"]
    assert [tensor["name"] for tensor in metadata["outputs"]] == ["scores", "probs", "negated"]
    expected = reference(identity_path, {"x": X})
    infer_input = triton_grpc.InferInput("x", [1, 4], "FP32")
    infer_input.set_data_from_numpy(X)
    for wanted in ("scores", "probs", "negated"):
        result = client.infer(
            "ident", [infer_input], outputs=[triton_grpc.InferRequestedOutput(wanted)]
        )
        names = [output.name for output in result.get_response().outputs]
        assert names == [wanted]
        np.testing.assert_array_equal(result.as_numpy(wanted), expected[wanted])
    everything = client.infer("ident", [infer_input]).get_response()
    assert sorted(output.name for output in everything.outputs) == ["negated", "probs", "scores"]
    with pytest.raises(InferenceServerException, match=r"Invalid output name - .*: m"):
        client.infer("ident", [infer_input], outputs=[triton_grpc.InferRequestedOutput("m")])


def test_kserve_rest_identity_outputs(identity_server: ServerProcess, identity_path: Path) -> None:
    base = identity_server.rest_url
    metadata = requests.get(f"{base}/v2/models/ident", timeout=TIMEOUT).json()
    assert [tensor["name"] for tensor in metadata["outputs"]] == ["scores", "probs", "negated"]
    expected = reference(identity_path, {"x": X})
    client = triton_http.InferenceServerClient(base.removeprefix("http://"))
    infer_input = triton_http.InferInput("x", [1, 4], "FP32")
    infer_input.set_data_from_numpy(X, binary_data=False)
    result = client.infer(
        "ident",
        [infer_input],
        outputs=[triton_http.InferRequestedOutput("probs", binary_data=False)],
    )
    assert [output["name"] for output in result.get_response()["outputs"]] == ["probs"]
    np.testing.assert_array_equal(result.as_numpy("probs"), expected["probs"])
    body: dict[str, Any] = {
        "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": X.ravel().tolist()}],
        "outputs": [{"name": "scores"}],
    }
    reply = requests.post(f"{base}/v2/models/ident/infer", json=body, timeout=TIMEOUT).json()
    assert [output["name"] for output in reply["outputs"]] == ["scores"]
    np.testing.assert_array_equal(reply["outputs"][0]["data"], expected["scores"].ravel())


def test_tfserving_grpc_identity_outputs(
    identity_server: ServerProcess, identity_path: Path
) -> None:
    client = make_grpc_client(identity_server.grpc_target)
    metadata = client.get_model_metadata("ident")
    assert set(metadata["outputs"]) == {"scores", "probs", "negated"}
    assert set(metadata["inputs"]) == {"x"}
    outputs = client.predict({"x": X}, "ident")
    expected = reference(identity_path, {"x": X})
    assert set(outputs) == set(expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(outputs[name], value)
    with pytest.raises(InvalidInputError):
        client.predict({"m": X}, "ident")


def test_tfserving_rest_identity_outputs(
    identity_server: ServerProcess, identity_path: Path
) -> None:
    base = identity_server.rest_url
    metadata = requests.get(f"{base}/v1/models/ident/metadata", timeout=TIMEOUT).json()
    signature = metadata["metadata"]["signature_def"]["signatureDef"]["serving_default"]
    assert set(signature["outputs"]) == {"scores", "probs", "negated"}
    reply = requests.post(
        f"{base}/v1/models/ident:predict",
        data=json.dumps({"inputs": {"x": X.tolist()}}),
        timeout=TIMEOUT,
    ).json()
    expected = reference(identity_path, {"x": X})
    assert set(reply["outputs"]) == set(expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(np.array(reply["outputs"][name], np.float32), value)


def test_mapping_aliases_apply_to_the_declared_names(
    server_factory: ServerPool, tmp_path: Path
) -> None:
    """mapping_config.json keys are the declared ONNX names (``probs``), as in OVMS."""
    path = save_onnx(identity_onnx(), tmp_path / "mapped")
    mapping = {"inputs": {"x": "pixels"}, "outputs": {"probs": "probabilities"}}
    (path.parent / "mapping_config.json").write_text(json.dumps(mapping))
    server = server_factory.start(
        ["--model_name", "mapped", "--model_path", str(path.parent.parent), *F32_FLAGS],
        rest=True,
    )
    client = triton_grpc.InferenceServerClient(server.grpc_target)
    metadata = client.get_model_metadata("mapped", as_json=True)
    assert [tensor["name"] for tensor in metadata["inputs"]] == ["pixels"]
    assert [tensor["name"] for tensor in metadata["outputs"]] == [
        "scores",
        "probabilities",
        "negated",
    ]
    infer_input = triton_grpc.InferInput("pixels", [1, 4], "FP32")
    infer_input.set_data_from_numpy(X)
    result = client.infer(
        "mapped", [infer_input], outputs=[triton_grpc.InferRequestedOutput("probabilities")]
    )
    expected = reference(path, {"x": X})
    np.testing.assert_array_equal(result.as_numpy("probabilities"), expected["probs"])
    tfs = make_grpc_client(server.grpc_target)
    assert set(tfs.predict({"pixels": X}, "mapped")) == {"scores", "probabilities", "negated"}


def test_tensors_with_several_names(
    multi_name_server: ServerProcess, multi_name_path: Path
) -> None:
    """The one name reported is ``get_any_name()`` of the read model, on every API."""
    (input_name,), (output_name,) = read_names(multi_name_path)
    assert input_name in {"input_a", "input_b"}
    assert output_name in {"result_y", "result_z"}
    expected = reference(multi_name_path, {input_name: X})[output_name]

    kserve = triton_grpc.InferenceServerClient(multi_name_server.grpc_target)
    metadata = kserve.get_model_metadata("multi", as_json=True)
    assert [tensor["name"] for tensor in metadata["inputs"]] == [input_name]
    assert [tensor["name"] for tensor in metadata["outputs"]] == [output_name]
    infer_input = triton_grpc.InferInput(input_name, [1, 4], "FP32")
    infer_input.set_data_from_numpy(X)
    result = kserve.infer(
        "multi", [infer_input], outputs=[triton_grpc.InferRequestedOutput(output_name)]
    )
    np.testing.assert_array_equal(result.as_numpy(output_name), expected)

    base = multi_name_server.rest_url
    rest_meta = requests.get(f"{base}/v2/models/multi", timeout=TIMEOUT).json()
    assert [tensor["name"] for tensor in rest_meta["outputs"]] == [output_name]

    tfs = make_grpc_client(multi_name_server.grpc_target)
    assert set(tfs.get_model_metadata("multi")["outputs"]) == {output_name}
    np.testing.assert_array_equal(tfs.predict({input_name: X}, "multi"), expected)

    reply = requests.post(
        f"{base}/v1/models/multi:predict",
        data=json.dumps({"inputs": {input_name: X.tolist()}}),
        timeout=TIMEOUT,
    ).json()
    np.testing.assert_array_equal(np.array(reply["outputs"], np.float32), expected)


def test_grpc_stub_reply_names(identity_server: ServerProcess) -> None:
    """A raw KServe stub sees the declared names in ModelInfer replies too."""
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    with grpc.insecure_channel(identity_server.grpc_target) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        request = service_pb2.ModelInferRequest(model_name="ident")
        tensor = request.inputs.add(name="x", datatype="FP32", shape=[1, 4])
        tensor.contents.fp32_contents.extend(X.ravel().tolist())
        request.outputs.add(name="probs")
        reply = stub.ModelInfer(request, timeout=TIMEOUT)
    assert [output.name for output in reply.outputs] == ["probs"]


def test_tfserving_output_filter_takes_the_declared_names(identity_server: ServerProcess) -> None:
    """TF Serving ``output_filter`` with ``probs`` returns exactly that output, under that name."""
    from ovmsclient.tfs_compat.protos.tensorflow.core.framework import tensor_pb2, types_pb2
    from ovmsclient.tfs_compat.protos.tensorflow_serving.apis import (
        predict_pb2,
        prediction_service_pb2_grpc,
    )

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "ident"
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_content=X.tobytes())
    for size in X.shape:
        proto.tensor_shape.dim.add(size=size)
    request.inputs["x"].CopyFrom(proto)
    request.output_filter.append("probs")
    with grpc.insecure_channel(identity_server.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        reply = stub.Predict(request, timeout=TIMEOUT)
        assert list(reply.outputs) == ["probs"]
        values = np.frombuffer(reply.outputs["probs"].tensor_content, np.float32)
        np.testing.assert_array_equal(values, np.maximum(X, 0).ravel())
        request.output_filter[:] = ["m"]
        with pytest.raises(grpc.RpcError) as caught:
            stub.Predict(request, timeout=TIMEOUT)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
