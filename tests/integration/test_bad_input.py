"""Malformed requests get a clear status and OVMS's message, and the server keeps serving.

Every test here ends by checking that the same server still answers a good request, and that
it logged no unexpected error (nothing became INTERNAL) while the test ran: each test checks
its own slice of the log, so the result does not depend on which tests ran before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc
import numpy as np
import pytest
from ovmsclient.tfs_compat.protos.tensorflow.core.framework import tensor_pb2, types_pb2
from ovmsclient.tfs_compat.protos.tensorflow_serving.apis import (
    predict_pb2,
    prediction_service_pb2_grpc,
)
from tritonclient.grpc import service_pb2, service_pb2_grpc

from _server import ServerProcess

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
RANGE = "(1,3,[200~500],[200~500])"
GOOD = np.ones((1, 3, 200, 200), np.float32)
KSERVE_INFER = "/inference.GRPCInferenceService/ModelInfer"
TFS_PREDICT = "/tensorflow.serving.PredictionService/Predict"
UNPARSABLE = "Invalid argument - the request is not a valid protobuf message"

Request = Callable[[], Any]


UNEXPECTED = ("failed with an unexpected error", "Traceback")


@pytest.fixture
def server(range_conv_server: ServerProcess) -> Iterator[ServerProcess]:
    """The session's conv server (``data`` [1,3,200:500,200:500] FP32); must still serve after,
    and must not have logged an unexpected error during the test."""
    start = len(range_conv_server.log_text())
    yield range_conv_server
    assert_serves(range_conv_server)
    logged = range_conv_server.log_text()[start:]
    assert not [line for line in logged.splitlines() if any(u in line for u in UNEXPECTED)]


def assert_serves(server: ServerProcess) -> None:
    """A good KServe and a good TFS request both succeed."""
    response = kserve_call(server, kserve_request())
    assert response.outputs[0].name == "out"
    assert list(response.outputs[0].shape) == [1, 4, 200, 200]
    tfs = tfs_call(server, tfs_request({"data": tfs_tensor(GOOD)}))
    assert [dim.size for dim in tfs.outputs["out"].tensor_shape.dim] == [1, 4, 200, 200]


def kserve_call(server: ServerProcess, request: Any) -> Any:
    with grpc.insecure_channel(server.grpc_target) as channel:
        return service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)


def tfs_call(server: ServerProcess, request: Any) -> Any:
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        return stub.Predict(request, timeout=30)


def rpc_error(call: Request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def kserve_request(
    array: np.ndarray[Any, Any] | None = GOOD,
    *,
    model: str = "conv",
    version: str = "",
    name: str = "data",
    datatype: str = "FP32",
    shape: list[int] | None = None,
    raw: bytes | None = None,
) -> Any:
    """A raw-contents ModelInferRequest; keywords replace parts with wrong ones."""
    request = service_pb2.ModelInferRequest(model_name=model, model_version=version)
    if array is None:
        return request
    request.inputs.add(
        name=name, datatype=datatype, shape=list(array.shape) if shape is None else shape
    )
    request.raw_input_contents.append(array.tobytes() if raw is None else raw)
    return request


def tfs_tensor(
    array: np.ndarray[Any, Any], dtype: int = types_pb2.DT_FLOAT, shape: list[int] | None = None
) -> Any:
    proto = tensor_pb2.TensorProto(dtype=dtype, tensor_content=array.tobytes())
    for size in array.shape if shape is None else shape:
        proto.tensor_shape.dim.add(size=size)
    return proto


def tfs_request(inputs: dict[str, Any], model: str = "conv", version: int | None = None) -> Any:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    if version is not None:
        request.model_spec.version.value = version
    for name, proto in inputs.items():
        request.inputs[name].CopyFrom(proto)
    return request


def zeros(*shape: int, dtype: Any = np.float32) -> np.ndarray[Any, Any]:
    return np.zeros(shape, dtype)


# --- KServe: (request, status, exact message) --------------------------------------------------

KSERVE_CASES: dict[str, tuple[Any, grpc.StatusCode, str]] = {
    "unknown model": (
        kserve_request(model="nope"),
        NOT_FOUND,
        "Model with requested name is not found",
    ),
    "empty model name": (
        kserve_request(model=""),
        NOT_FOUND,
        "Model with requested name is not found",
    ),
    "unknown version": (
        kserve_request(version="2"),
        NOT_FOUND,
        "Model with requested version is not found",
    ),
    "version not a number": (
        kserve_request(version="latest"),
        INVALID,
        "invalid model version format in request",
    ),
    "wrong input name": (
        kserve_request(name="image"),
        INVALID,
        "Missing input with specific name - Required input: data",
    ),
    "wrong dtype": (
        kserve_request(GOOD.astype(np.float16), datatype="FP16"),
        INVALID,
        "Invalid input precision - Expected: FP32; Actual: FP16; input name: data",
    ),
    "unknown dtype": (
        kserve_request(datatype="FP8"),
        INVALID,
        "Invalid input precision - Unsupported datatype 'FP8'; input name: data",
    ),
    "wrong rank": (
        kserve_request(zeros(1, 3, 300)),
        INVALID,
        f"Invalid number of shape dimensions - Expected: {RANGE}; Actual: (1,3,300); "
        "input name: data",
    ),
    "wrong batch": (
        kserve_request(zeros(2, 3, 300, 300)),
        INVALID,
        "Invalid input batch size - Expected: 1; Actual: 2; input name: data",
    ),
    "out-of-range dimension": (
        kserve_request(zeros(1, 3, 600, 400)),
        INVALID,
        f"Invalid input shape - Expected: {RANGE}; Actual: (1,3,600,400); input name: data",
    ),
    "below-range dimension": (
        kserve_request(zeros(1, 3, 199, 300)),
        INVALID,
        f"Invalid input shape - Expected: {RANGE}; Actual: (1,3,199,300); input name: data",
    ),
    "wrong static dimension": (
        kserve_request(zeros(1, 4, 300, 300)),
        INVALID,
        f"Invalid input shape - Expected: {RANGE}; Actual: (1,4,300,300); input name: data",
    ),
    "zero dimension": (
        kserve_request(GOOD, shape=[1, 3, 0, 300], raw=b""),
        INVALID,
        "Invalid input shape - Negative or zero dimension size is not acceptable: (1,3,0,300); "
        "input name: data",
    ),
    "negative dimension": (
        kserve_request(GOOD, shape=[1, 3, -200, 300]),
        INVALID,
        "Invalid input shape - Negative or zero dimension size is not acceptable: "
        "(1,3,-200,300); input name: data",
    ),
    "content size mismatch": (
        kserve_request(GOOD, raw=GOOD.tobytes()[:-4]),
        INVALID,
        "Invalid content size of tensor proto - Expected: 480000 bytes; Actual: 479996 bytes; "
        "input name: data",
    ),
    "garbage bytes in raw contents": (
        kserve_request(GOOD, raw=b"\xde\xad\xbe\xef" * 3 + b"\x01"),
        INVALID,
        "Invalid content size of tensor proto - Expected: 480000 bytes; Actual: 13 bytes; "
        "input name: data",
    ),
    "huge shape": (
        kserve_request(GOOD, shape=[1, 3, 2**40, 300]),
        INVALID,
        f"Invalid input shape - Expected: {RANGE}; Actual: (1,3,1099511627776,300); "
        "input name: data",
    ),
    "empty request": (
        kserve_request(None),
        INVALID,
        "Invalid number of inputs - Expected: 1; Actual: 0",
    ),
}


@pytest.mark.parametrize("case", list(KSERVE_CASES))
def test_kserve_bad_request(server: ServerProcess, case: str) -> None:
    request, status, message = KSERVE_CASES[case]
    error = rpc_error(lambda: kserve_call(server, request))
    assert (error.code(), error.details()) == (status, message)


def test_kserve_two_inputs_for_one(server: ServerProcess) -> None:
    request = kserve_request()
    request.inputs.add(name="extra", datatype="FP32", shape=[1])
    request.raw_input_contents.append(b"\x00\x00\x80\x3f")
    error = rpc_error(lambda: kserve_call(server, request))
    assert (error.code(), error.details()) == (
        INVALID,
        "Invalid number of inputs - Expected: 1; Actual: 2",
    )


def test_kserve_raw_contents_count_mismatch(server: ServerProcess) -> None:
    request = kserve_request()
    request.raw_input_contents.append(b"extra")
    error = rpc_error(lambda: kserve_call(server, request))
    assert (error.code(), error.details()) == (
        INVALID,
        "Invalid content size of tensor proto - Expected: 1 raw_input_contents; Actual: 2",
    )


def test_kserve_typed_contents_of_the_wrong_count(server: ServerProcess) -> None:
    request = service_pb2.ModelInferRequest(model_name="conv")
    tensor = request.inputs.add(name="data", datatype="FP32", shape=[1, 3, 200, 200])
    tensor.contents.fp32_contents.extend([1.0, 2.0])
    error = rpc_error(lambda: kserve_call(server, request))
    assert (error.code(), error.details()) == (
        INVALID,
        "Invalid number of values in tensor proto container - Expected: 120000 values; "
        "Actual: 2 values; input name: data",
    )


def test_kserve_garbage_of_the_right_size_is_computed(server: ServerProcess) -> None:
    garbage = np.random.default_rng(3).bytes(GOOD.nbytes)
    response = kserve_call(server, kserve_request(GOOD, raw=garbage))
    assert list(response.outputs[0].shape) == [1, 4, 200, 200]


# --- TF Serving ------------------------------------------------------------------------------

TFS_CASES: dict[str, tuple[Any, grpc.StatusCode, str]] = {
    "unknown model": (
        tfs_request({"data": tfs_tensor(GOOD)}, model="nope"),
        NOT_FOUND,
        "Model with requested name is not found",
    ),
    "unknown version": (
        tfs_request({"data": tfs_tensor(GOOD)}, version=5),
        NOT_FOUND,
        "Model with requested version is not found",
    ),
    "missing model spec": (predict_pb2.PredictRequest(), INVALID, "model_spec missing in request"),
    "wrong input name": (
        tfs_request({"image": tfs_tensor(GOOD)}),
        INVALID,
        "Missing input with specific name - Required input: data",
    ),
    "wrong dtype": (
        tfs_request({"data": tfs_tensor(GOOD.astype(np.float64), types_pb2.DT_DOUBLE)}),
        INVALID,
        "Invalid input precision - Expected: FP32; Actual: FP64; input name: data",
    ),
    "unsupported dtype": (
        tfs_request({"data": tfs_tensor(GOOD, types_pb2.DT_COMPLEX64)}),
        INVALID,
        "Invalid input precision - Unsupported dtype DT_COMPLEX64; input name: data",
    ),
    "out-of-range dimension": (
        tfs_request({"data": tfs_tensor(zeros(1, 3, 600, 400))}),
        INVALID,
        f"Invalid input shape - Expected: {RANGE}; Actual: (1,3,600,400); input name: data",
    ),
    "zero dimension": (
        tfs_request({"data": tfs_tensor(GOOD, shape=[1, 3, 200, 0])}),
        INVALID,
        "Invalid input shape - Negative or zero dimension size is not acceptable: (1,3,200,0); "
        "input name: data",
    ),
    "content size mismatch": (
        tfs_request({"data": tfs_tensor(GOOD, shape=[1, 3, 200, 201])}),
        INVALID,
        "Invalid content size of tensor proto - Expected: 482400 bytes; Actual: 480000 bytes; "
        "input name: data",
    ),
    "empty request": (
        tfs_request({}),
        INVALID,
        "Invalid number of inputs - Expected: 1; Actual: 0",
    ),
}


@pytest.mark.parametrize("case", list(TFS_CASES))
def test_tfs_bad_request(server: ServerProcess, case: str) -> None:
    request, status, message = TFS_CASES[case]
    error = rpc_error(lambda: tfs_call(server, request))
    assert (error.code(), error.details()) == (status, message)


def test_tfs_typed_value_out_of_range(add_mul_server: ServerProcess) -> None:
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_HALF)
    proto.tensor_shape.dim.add(size=1)
    proto.half_val.append(70000)
    error = rpc_error(lambda: tfs_call(add_mul_server, tfs_request({"a": proto}, "add_mul")))
    assert error.code() is INVALID
    assert error.details() == "Invalid number of values in tensor proto container - " + (
        "Value out of range for FP16; input name: a"
    )


# --- bytes that are not a protobuf message -----------------------------------------------------


@pytest.mark.parametrize("method", [KSERVE_INFER, TFS_PREDICT])
@pytest.mark.parametrize("body", [b"\xff\xff\xff\xff", b"\x0a\xff\x01", b"\x12\x05ab"])
def test_unparsable_protobuf_is_refused(server: ServerProcess, method: str, body: bytes) -> None:
    with grpc.insecure_channel(server.grpc_target) as channel:
        call = channel.unary_unary(method)
        error = rpc_error(lambda: call(body, timeout=10))
    assert (error.code(), error.details()) == (INVALID, UNPARSABLE)


def test_unparsable_protobuf_gets_a_clean_status(server: ServerProcess) -> None:
    with grpc.insecure_channel(server.grpc_target) as channel:
        error = rpc_error(lambda: channel.unary_unary(KSERVE_INFER)(b"\xff\xff\xff\xff"))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid protobuf message" in str(error.details())
    assert "<class" not in str(error.details())


def test_unknown_method(server: ServerProcess) -> None:
    with grpc.insecure_channel(server.grpc_target) as channel:
        call = channel.unary_unary("/inference.GRPCInferenceService/Nope")
        error = rpc_error(lambda: call(b"", timeout=10))
    assert error.code() is grpc.StatusCode.UNIMPLEMENTED
