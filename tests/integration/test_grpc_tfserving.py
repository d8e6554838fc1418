"""TF Serving gRPC against a real ovserve, driven by ovmsclient; checked against OpenVINO."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from ovmsclient import make_grpc_client
from ovmsclient.tfs_compat.base.errors import InvalidInputError, ModelNotFoundError
from ovmsclient.tfs_compat.protos.tensorflow.core.framework import tensor_pb2, types_pb2
from ovmsclient.tfs_compat.protos.tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from _models import KSERVE_NUMPY, dtypes_model, reference
from _server import ServerProcess

RNG = np.random.default_rng(11)
DT = types_pb2.DataType
TFS_DTYPE = {
    "BOOL": (DT.DT_BOOL, "bool_val"),
    "UINT8": (DT.DT_UINT8, "int_val"),
    "UINT16": (DT.DT_UINT16, "int_val"),
    "UINT32": (DT.DT_UINT32, "uint32_val"),
    "UINT64": (DT.DT_UINT64, "uint64_val"),
    "INT8": (DT.DT_INT8, "int_val"),
    "INT16": (DT.DT_INT16, "int_val"),
    "INT32": (DT.DT_INT32, "int_val"),
    "INT64": (DT.DT_INT64, "int64_val"),
    "FP16": (DT.DT_HALF, "half_val"),
    "FP32": (DT.DT_FLOAT, "float_val"),
    "FP64": (DT.DT_DOUBLE, "double_val"),
}
"""TensorProto dtype and typed ``*_val`` field per KServe datatype."""


def stub(server: ServerProcess) -> Any:
    channel = grpc.insecure_channel(server.grpc_target)
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


def tensor(array: np.ndarray[Any, Any], *, typed: bool) -> tensor_pb2.TensorProto:
    """A TensorProto in ``tensor_content`` or in its typed ``*_val`` field."""
    datatype = next(name for name, dtype in KSERVE_NUMPY.items() if np.dtype(dtype) == array.dtype)
    dtype, field = TFS_DTYPE[datatype]
    proto = tensor_pb2.TensorProto(dtype=dtype)
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    if not typed:
        proto.tensor_content = array.tobytes()
    elif field == "half_val":
        proto.half_val.extend(array.reshape(-1).view(np.uint16).tolist())
    else:
        getattr(proto, field).extend(array.reshape(-1).tolist())
    return proto


def to_numpy(proto: tensor_pb2.TensorProto) -> np.ndarray[Any, Any]:
    """An output TensorProto (the server answers in ``tensor_content``)."""
    datatype = next(name for name, (dtype, _) in TFS_DTYPE.items() if dtype == proto.dtype)
    shape = [dim.size for dim in proto.tensor_shape.dim]
    assert proto.tensor_content, "outputs must use tensor_content"
    return np.frombuffer(proto.tensor_content, KSERVE_NUMPY[datatype]).reshape(shape)


def predict_request(model: str, inputs: dict[str, Any], version: int | None = None) -> Any:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    if version is not None:
        request.model_spec.version.value = version
    for name, proto in inputs.items():
        request.inputs[name].CopyFrom(proto)
    return request


# --- ovmsclient --------------------------------------------------------------------------------


def test_status(range_conv_server: ServerProcess) -> None:
    client = make_grpc_client(range_conv_server.grpc_target)
    assert client.get_model_status("conv") == {
        1: {"state": "AVAILABLE", "error_code": 0, "error_message": "OK"}
    }
    assert client.get_model_status("conv", 1) == client.get_model_status("conv")


def test_metadata(range_conv_server: ServerProcess) -> None:
    client = make_grpc_client(range_conv_server.grpc_target)
    assert client.get_model_metadata("conv") == {
        "model_version": 1,
        "inputs": {"data": {"shape": [1, 3, -1, -1], "dtype": "DT_FLOAT"}},
        "outputs": {"out": {"shape": [1, 4, -1, -1], "dtype": "DT_FLOAT"}},
    }


@pytest.mark.parametrize("size", [(300, 400), (500, 500)])
def test_predict_matches_openvino(
    range_conv_server: ServerProcess, range_conv_model: Path, size: tuple[int, int]
) -> None:
    data = RNG.standard_normal((1, 3, *size)).astype(np.float32)
    got = make_grpc_client(range_conv_server.grpc_target).predict({"data": data}, "conv")
    expected = reference(range_conv_model, {"data": data})["out"]
    assert got.shape == (1, 4, *size)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_predict_out_of_range(range_conv_server: ServerProcess) -> None:
    client = make_grpc_client(range_conv_server.grpc_target)
    with pytest.raises(InvalidInputError) as caught:
        client.predict({"data": np.zeros((1, 3, 600, 400), np.float32)}, "conv")
    assert str(caught.value) == (
        "Error occurred during handling the request: Invalid input shape - "
        "Expected: (1,3,[200~500],[200~500]); Actual: (1,3,600,400); input name: data"
    )


def test_unknown_model_and_version(range_conv_server: ServerProcess) -> None:
    client = make_grpc_client(range_conv_server.grpc_target)
    data = {"data": np.zeros((1, 3, 200, 200), np.float32)}
    with pytest.raises(ModelNotFoundError, match="Model with requested name is not found"):
        client.predict(data, "nope")
    with pytest.raises(ModelNotFoundError, match="Model with requested version is not found"):
        client.predict(data, "conv", 2)
    with pytest.raises(ModelNotFoundError, match="Model with requested name is not found"):
        client.get_model_status("nope")
    with pytest.raises(ModelNotFoundError, match="Model with requested version is not found"):
        client.get_model_metadata("conv", 3)


def test_multi_input_multi_output(add_mul_server: ServerProcess) -> None:
    a = RNG.standard_normal((2, 4)).astype(np.float32)
    b = RNG.standard_normal((2, 4)).astype(np.float32)
    outputs = make_grpc_client(add_mul_server.grpc_target).predict({"a": a, "b": b}, "add_mul")
    np.testing.assert_allclose(outputs["sum"], a + b, rtol=1e-6)
    np.testing.assert_allclose(outputs["product"], a * b, rtol=1e-6)


# --- raw TF Serving messages (ovmsclient's protos and stubs) ------------------------------------


def test_signature_def(add_mul_server: ServerProcess) -> None:
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "add_mul"
    response = stub(add_mul_server).GetModelMetadata(request)
    assert (response.model_spec.name, response.model_spec.version.value) == ("add_mul", 1)
    packed = response.metadata["signature_def"]
    assert packed.type_url == "type.googleapis.com/tensorflow.serving.SignatureDefMap"
    # ovmsclient renamed its proto package, so Any.Unpack() would refuse the TF Serving name.
    signatures = get_model_metadata_pb2.SignatureDefMap.FromString(packed.value)
    assert list(signatures.signature_def) == ["serving_default"]
    signature = signatures.signature_def["serving_default"]
    assert signature.method_name == ""  # as OVMS
    assert {key: (info.name, info.dtype) for key, info in signature.inputs.items()} == {
        "a": ("a", DT.DT_FLOAT),
        "b": ("b", DT.DT_FLOAT),
    }
    assert [dim.size for dim in signature.inputs["a"].tensor_shape.dim] == [-1, 4]
    assert sorted(signature.outputs) == ["product", "sum"]


def test_metadata_needs_signature_def_field(add_mul_server: ServerProcess) -> None:
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "add_mul"
    for fields in ([], ["signature_def", "signature_def"], ["inputs"]):
        del request.metadata_field[:]
        request.metadata_field.extend(fields)
        with pytest.raises(grpc.RpcError) as caught:
            stub(add_mul_server).GetModelMetadata(request)
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert caught.value.details() == "Invalid signature name"


def test_model_status_message(add_mul_server: ServerProcess) -> None:
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "add_mul"
    channel = grpc.insecure_channel(add_mul_server.grpc_target)
    response = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request)
    (status,) = response.model_version_status
    assert status.version == 1
    assert status.state == get_model_status_pb2.ModelVersionStatus.State.AVAILABLE
    assert (status.status.error_code, status.status.error_message) == (0, "OK")


@pytest.mark.parametrize("names", [["product"], ["sum", "product"]])
def test_output_filter(add_mul_server: ServerProcess, names: list[str]) -> None:
    a = np.full((1, 4), 3, np.float32)
    request = predict_request("add_mul", {"a": tensor(a, typed=False), "b": tensor(a, typed=False)})
    request.output_filter.extend(names)
    response = stub(add_mul_server).Predict(request)
    assert sorted(response.outputs) == sorted(names)
    expected = {"sum": a + a, "product": a * a}
    for name in names:
        np.testing.assert_array_equal(to_numpy(response.outputs[name]), expected[name])
    assert (response.model_spec.name, response.model_spec.version.value) == ("add_mul", 1)
    assert response.model_spec.signature_name == "serving_default"


@pytest.mark.parametrize("signature", ["predict_images", "other"])
def test_signature_name_and_version_label_are_ignored(
    add_mul_server: ServerProcess, signature: str
) -> None:
    a = np.ones((1, 4), np.float32)
    request = predict_request("add_mul", {"a": tensor(a, typed=False), "b": tensor(a, typed=False)})
    request.model_spec.signature_name = signature
    request.model_spec.version_label = "stable"
    response = stub(add_mul_server).Predict(request)
    np.testing.assert_array_equal(to_numpy(response.outputs["sum"]), a + a)


def test_missing_model_spec(add_mul_server: ServerProcess) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub(add_mul_server).Predict(predict_pb2.PredictRequest())
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == "model_spec missing in request"


def dtype_inputs() -> dict[str, np.ndarray[Any, Any]]:
    arrays = {}
    for name, dtype in KSERVE_NUMPY.items():
        if dtype is np.bool_:
            arrays[f"in_{name}"] = np.array([[True, False, True], [False, True, True]])
        elif np.issubdtype(dtype, np.floating):
            arrays[f"in_{name}"] = np.array([[-2.5, 0.5, 1.0], [8.0, -0.25, 4.0]], dtype=dtype)
        else:
            low = 0 if np.issubdtype(dtype, np.unsignedinteger) else -40
            arrays[f"in_{name}"] = np.array([[low, 1, 2], [9, 40, 63]], dtype=dtype)
    return arrays


@pytest.mark.parametrize("typed", [False, True], ids=["tensor_content", "typed_val"])
def test_every_datatype(dtypes_server: ServerProcess, typed: bool) -> None:
    inputs = dtype_inputs()
    request = predict_request(
        "dtypes", {name: tensor(array, typed=typed) for name, array in inputs.items()}
    )
    response = stub(dtypes_server).Predict(request)
    expected = reference(dtypes_model(), inputs)
    mismatches = {}
    for name, want in expected.items():
        got = to_numpy(response.outputs[name])
        if got.dtype != want.dtype or not np.array_equal(got, want):
            mismatches[name] = (got, want)
    assert not mismatches
