"""The KServe v2 gRPC codec (requests, replies, metadata) and the shared BYTES framing."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ovserve.config.shape import Dimension, Shape
from ovserve.errors import ErrorCode, InvalidInput
from ovserve.frontends._generated.kserve import grpc_predict_v2_pb2 as pb
from ovserve.frontends.kserve import datatypes, grpc_metadata, grpc_replies, grpc_requests
from ovserve.serving.service import ModelMetadata
from ovserve.serving.validation import validate_inputs
from ovserve.tensors import DataType, InferResult, TensorSpec

NUMERIC = [t for t in DataType if t is not DataType.BYTES]
TYPED_FIELD = {
    DataType.BOOL: "bool_contents",
    DataType.UINT8: "uint_contents",
    DataType.UINT16: "uint_contents",
    DataType.UINT32: "uint_contents",
    DataType.UINT64: "uint64_contents",
    DataType.INT8: "int_contents",
    DataType.INT16: "int_contents",
    DataType.INT32: "int_contents",
    DataType.INT64: "int64_contents",
    DataType.FP32: "fp32_contents",
    DataType.FP64: "fp64_contents",
}


def sample(datatype: DataType, shape: tuple[int, ...] = (2, 3)) -> np.ndarray[Any, Any]:
    """Values that exercise the type's range (extremes included for integers)."""
    dtype = datatype.numpy_dtype
    count = int(np.prod(shape))
    if datatype is DataType.BOOL:
        values = np.arange(count) % 2 == 0
    elif np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        extremes = [int(info.min), int(info.max), 0, 1, int(info.max) // 3, int(info.max) - 1]
        values = np.array((extremes * count)[:count], dtype=dtype)
    else:
        values = np.linspace(-1.5, 1e3, count).astype(dtype)
    result: np.ndarray[Any, Any] = values.astype(dtype).reshape(shape)
    return result


def raw_request(**arrays: np.ndarray[Any, Any]) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="m")
    for name, array in arrays.items():
        datatype = DataType.from_numpy(array.dtype)
        request.inputs.add(name=name, datatype=datatype.value, shape=array.shape)
        request.raw_input_contents.append(array.tobytes())
    return request


def typed_request(**arrays: np.ndarray[Any, Any]) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="m")
    for name, array in arrays.items():
        datatype = DataType.from_numpy(array.dtype)
        tensor = request.inputs.add(name=name, datatype=datatype.value, shape=array.shape)
        getattr(tensor.contents, TYPED_FIELD[datatype]).extend(array.reshape(-1).tolist())
    return request


def decoded(request: pb.ModelInferRequest, *specs: TensorSpec) -> dict[str, Any]:
    return validate_inputs(specs, grpc_requests.decode_inputs(request))


@pytest.mark.parametrize("datatype", NUMERIC)
def test_raw_round_trip_every_datatype(datatype: DataType) -> None:
    array = sample(datatype)
    spec = TensorSpec("x", datatype, Shape.of(-1, 3))
    arrays = decoded(raw_request(x=array), spec)
    assert arrays["x"].dtype == datatype.numpy_dtype
    np.testing.assert_array_equal(arrays["x"], array)

    response = grpc_replies.encode_result(raw_request(x=array), InferResult("m", 1, {"y": array}))
    output = response.outputs[0]
    assert (output.name, output.datatype, list(output.shape)) == ("y", datatype.value, [2, 3])
    back = np.frombuffer(response.raw_output_contents[0], datatype.numpy_dtype).reshape(2, 3)
    np.testing.assert_array_equal(back, array)


@pytest.mark.parametrize("datatype", list(TYPED_FIELD))
def test_typed_contents_every_datatype(datatype: DataType) -> None:
    array = sample(datatype)
    arrays = decoded(typed_request(x=array), TensorSpec("x", datatype, Shape.of(2, 3)))
    assert arrays["x"].dtype == datatype.numpy_dtype
    np.testing.assert_array_equal(arrays["x"], array)


def test_fp16_needs_raw_contents() -> None:
    request = pb.ModelInferRequest(model_name="m")
    request.inputs.add(name="x", datatype="FP16", shape=[1])
    with pytest.raises(InvalidInput, match="FP16 needs raw_input_contents; input name: x"):
        grpc_requests.decode_inputs(request)


def test_bytes_raw_round_trip() -> None:
    values = [b"", b"abc", bytes(range(256)), "żółw".encode()]
    request = pb.ModelInferRequest(model_name="m")
    request.inputs.add(name="s", datatype="BYTES", shape=[4])
    request.raw_input_contents.append(
        b"".join(struct.pack("<I", len(value)) + value for value in values)
    )
    arrays = decoded(request, TensorSpec("s", DataType.BYTES, Shape.of(-1)))
    assert arrays["s"].tolist() == values

    array = np.array(values, dtype=np.object_)
    response = grpc_replies.encode_result(request, InferResult("m", 1, {"s": array}))
    assert response.outputs[0].datatype == "BYTES"
    assert datatypes.decode_bytes_elements(response.raw_output_contents[0], "s") == values


def test_bytes_typed_contents() -> None:
    request = pb.ModelInferRequest(model_name="m")
    tensor = request.inputs.add(name="s", datatype="BYTES", shape=[1, 2])
    tensor.contents.bytes_contents.extend([b"a", b"bc"])
    arrays = decoded(request, TensorSpec("s", DataType.BYTES, Shape.of(1, 2)))
    assert arrays["s"].tolist() == [[b"a", b"bc"]]


@given(st.lists(st.binary(max_size=20), max_size=10))
def test_bytes_elements_round_trip(values: list[bytes]) -> None:
    encoded = datatypes.encode_bytes_elements(np.array([*values, b""], dtype=np.object_)[:-1])
    assert datatypes.decode_bytes_elements(encoded, "s") == values


def test_bytes_output_of_str_values_is_utf8() -> None:
    encoded = datatypes.encode_bytes_elements(np.array(["é"], dtype=np.object_))
    assert encoded == b"\x02\x00\x00\x00" + "é".encode()


@pytest.mark.parametrize(
    ("buffer", "message"),
    [
        (b"\x01\x00", "Truncated BYTES element length"),
        (b"\x05\x00\x00\x00abc", "BYTES element longer than the buffer"),
        (b"\x00\x00\x00\x00\x01", "Truncated BYTES element length"),
    ],
)
def test_garbage_bytes_buffers(buffer: bytes, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        datatypes.decode_bytes_elements(buffer, "s")
    assert caught.value.code is ErrorCode.INVALID_CONTENT_SIZE
    assert message in caught.value.text


@given(st.binary(max_size=64))
def test_decode_bytes_never_crashes(buffer: bytes) -> None:
    try:
        elements = datatypes.decode_bytes_elements(buffer, "s")
    except InvalidInput:
        return
    assert sum(4 + len(element) for element in elements) == len(buffer)


def test_raw_contents_count_must_match_inputs() -> None:
    request = raw_request(x=np.zeros(2, np.float32))
    request.inputs.add(name="y", datatype="FP32", shape=[1])
    with pytest.raises(InvalidInput) as caught:
        grpc_requests.decode_inputs(request)
    assert caught.value.code is ErrorCode.INVALID_CONTENT_SIZE
    assert "Expected: 2 raw_input_contents; Actual: 1" in caught.value.text


def test_garbage_raw_contents_are_a_content_size_error() -> None:
    request = pb.ModelInferRequest(model_name="m")
    request.inputs.add(name="x", datatype="FP32", shape=[1, 3])
    request.raw_input_contents.append(b"\xde\xad\xbe\xef\x00")
    with pytest.raises(InvalidInput) as caught:
        decoded(request, TensorSpec("x", DataType.FP32, Shape.of(1, 3)))
    assert caught.value.code is ErrorCode.INVALID_CONTENT_SIZE
    assert caught.value.text == (
        "Invalid content size of tensor proto - Expected: 12 bytes; Actual: 5 bytes; input name: x"
    )


@pytest.mark.parametrize("name", ["FP8", "fp32", "", "STRING", "BF16"])
def test_unknown_datatype_is_a_precision_error(name: str) -> None:
    request = pb.ModelInferRequest(model_name="m")
    request.inputs.add(name="x", datatype=name, shape=[1])
    with pytest.raises(InvalidInput) as caught:
        grpc_requests.decode_inputs(request)
    assert caught.value.code is ErrorCode.INVALID_PRECISION
    assert f"Unsupported datatype {name!r}; input name: x" in caught.value.text


@pytest.mark.parametrize(
    ("datatype", "values"),
    [("UINT8", [256]), ("INT8", [-129]), ("INT16", [40000]), ("UINT16", [70000])],
)
def test_typed_values_out_of_range(datatype: str, values: list[int]) -> None:
    request = pb.ModelInferRequest(model_name="m")
    tensor = request.inputs.add(name="x", datatype=datatype, shape=[1])
    field = TYPED_FIELD[DataType(datatype)]
    getattr(tensor.contents, field).extend(values)
    with pytest.raises(InvalidInput, match=f"Value out of range for {datatype}; input name: x"):
        grpc_requests.decode_inputs(request)


def test_typed_contents_in_the_wrong_field_give_a_value_count_error() -> None:
    request = pb.ModelInferRequest(model_name="m")
    tensor = request.inputs.add(name="x", datatype="FP32", shape=[2])
    tensor.contents.int_contents.extend([1, 2])
    with pytest.raises(InvalidInput) as caught:
        decoded(request, TensorSpec("x", DataType.FP32, Shape.of(2)))
    assert caught.value.code is ErrorCode.INVALID_VALUE_COUNT


@pytest.mark.parametrize(("text", "expected"), [("", None), ("0", 0), ("1", 1), ("42", 42)])
def test_versions(text: str, expected: int | None) -> None:
    assert grpc_requests.parse_version(text) == expected


@pytest.mark.parametrize("text", ["-1", "v1", "1.0", " 1", "\u00b2", "\u0661"])
def test_bad_versions(text: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        grpc_requests.parse_version(text)
    assert caught.value.code is ErrorCode.MODEL_VERSION_INVALID_FORMAT
    assert caught.value.text == "invalid model version format in request"


def test_requested_outputs() -> None:
    request = pb.ModelInferRequest(model_name="m")
    assert grpc_requests.requested_outputs(request) is None
    request.outputs.add(name="b")
    request.outputs.add(name="a")
    assert grpc_requests.requested_outputs(request) == ["b", "a"]


def test_result_keeps_name_version_id_and_output_order() -> None:
    request = pb.ModelInferRequest(model_name="m", id="req-7")
    outputs: dict[str, np.ndarray[Any, Any]] = {
        "b": np.zeros(1, np.int64),
        "a": np.ones((1, 2), np.float32),
    }
    response = grpc_replies.encode_result(request, InferResult("m", 3, outputs))
    assert (response.model_name, response.model_version, response.id) == ("m", "3", "req-7")
    assert [output.name for output in response.outputs] == ["b", "a"]
    assert [output.datatype for output in response.outputs] == ["INT64", "FP32"]
    assert len(response.raw_output_contents) == 2


def test_metadata_reports_ranges_as_minus_one() -> None:
    spec_in = TensorSpec("data", DataType.FP32, Shape.of(1, 3, Dimension(200, 500), -1))
    spec_out = TensorSpec("out", DataType.INT64, Shape.of(1, 5))
    response = grpc_metadata.encode_metadata(ModelMetadata("m", 2, (1, 2), [spec_in], [spec_out]))
    assert response.name == "m"
    assert list(response.versions) == ["1", "2"]
    assert response.platform == "OpenVINO"
    assert [(t.name, t.datatype, list(t.shape)) for t in response.inputs] == [
        ("data", "FP32", [1, 3, -1, -1])
    ]
    assert [(t.name, t.datatype, list(t.shape)) for t in response.outputs] == [
        ("out", "INT64", [1, 5])
    ]


def test_request_survives_the_wire() -> None:
    array = sample(DataType.FP32)
    wire = raw_request(x=array).SerializeToString()
    arrays = decoded(
        pb.ModelInferRequest.FromString(wire), TensorSpec("x", DataType.FP32, Shape.of(2, 3))
    )
    np.testing.assert_array_equal(arrays["x"], array)


@st.composite
def arrays(draw: st.DrawFn) -> np.ndarray[Any, Any]:
    """Arrays of any fixed-size datatype, rank 0 to 4, sizes 1 to 4."""
    datatype = draw(st.sampled_from(NUMERIC))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=1, max_side=4))
    return draw(hnp.arrays(datatype.numpy_dtype, shape))


@given(arrays())
def test_raw_round_trip_property(array: np.ndarray[Any, Any]) -> None:
    datatype = DataType.from_numpy(array.dtype)
    spec = TensorSpec("x", datatype, Shape.of(*([-1] * array.ndim)))
    wire = pb.ModelInferRequest.FromString(raw_request(x=array).SerializeToString())
    got = decoded(wire, spec)["x"]
    assert got.shape == array.shape
    assert got.tobytes() == array.tobytes()  # bit-exact, NaNs included
    response = grpc_replies.encode_result(wire, InferResult("m", 1, {"x": got}))
    assert response.raw_output_contents[0] == array.tobytes()
    assert list(response.outputs[0].shape) == list(array.shape)
