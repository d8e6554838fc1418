"""KServe v2 REST codec: JSON tensors, the binary data extension, replies and metadata."""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import orjson
import pytest

from ovserve.config.shape import Shape
from ovserve.errors import ErrorCode, InvalidInput
from ovserve.frontends.kserve.rest_codec import (
    InferRequest,
    decode_infer_request,
    encode_infer_response,
    encode_metadata,
    encode_server_metadata,
    parse_header_length,
)
from ovserve.serving.service import ModelMetadata
from ovserve.tensors import DataType, InferResult, TensorSpec


def body(document: dict[str, Any], *binary: bytes) -> tuple[bytes, int | None]:
    header = json.dumps(document).encode()
    if not binary:
        return header, None
    return header + b"".join(binary), len(header)


def decode(document: dict[str, Any], *binary: bytes) -> InferRequest:
    return decode_infer_request(*body(document, *binary))


def error_of(document: dict[str, Any], *binary: bytes) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        decode(document, *binary)
    return caught.value


def one_input(**fields: Any) -> dict[str, Any]:
    return {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", **fields}]}


# --- JSON tensors -------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [[1, 2.5, 3], [[1, 2.5, 3]]])
def test_flat_and_nested_data(data: list[Any]) -> None:
    request = decode(one_input(data=data))
    (tensor,) = request.inputs
    assert (tensor.name, tensor.datatype, tensor.shape) == ("x", DataType.FP32, (1, 3))
    assert isinstance(tensor.data, np.ndarray)
    assert tensor.data.dtype == np.float32
    assert tensor.data.tolist() == [1.0, 2.5, 3.0]
    assert request.outputs is None
    assert request.id == ""


@pytest.mark.parametrize(
    ("datatype", "values", "dtype"),
    [
        ("INT8", [-128, 0, 127], np.int8),
        ("UINT16", [0, 1, 65535], np.uint16),
        ("INT64", [-(2**63), 0, 2**63 - 1], np.int64),
        ("UINT64", [0, 1, 2**64 - 1], np.uint64),
        ("FP64", [0.5, 1, -2], np.float64),
        ("BOOL", [True, False, True], np.bool_),
    ],
)
def test_typed_json_data(datatype: str, values: list[Any], dtype: type[np.generic]) -> None:
    (tensor,) = decode(one_input(datatype=datatype, data=values)).inputs
    assert isinstance(tensor.data, np.ndarray)
    assert tensor.data.dtype == dtype
    assert tensor.data.tolist() == values


def test_bytes_json_data_are_utf8_strings() -> None:
    document = {"inputs": [{"name": "t", "shape": [2], "datatype": "BYTES", "data": ["a", "żółw"]}]}
    (tensor,) = decode(document).inputs
    assert tensor.data == [b"a", "żółw".encode()]


@pytest.mark.parametrize(
    ("datatype", "data"),
    [
        ("FP32", ["a", "b", "c"]),
        ("FP32", [1, [2, 3]]),
        ("INT32", [1.5, 2, 3]),
        ("INT8", [1, 2, 300]),
        ("UINT8", [-1, 2, 3]),
        ("BOOL", [1, 0, 1]),
        ("BYTES", [1, 2, 3]),
        ("FP16", [1, 2, 3]),
    ],
)
def test_wrong_json_values(datatype: str, data: list[Any]) -> None:
    error = error_of(one_input(datatype=datatype, data=data))
    assert error.code is ErrorCode.REST_COULD_NOT_PARSE_INPUT
    assert "input name: x" in error.text


@pytest.mark.parametrize(
    ("document", "code"),
    [
        ({}, ErrorCode.REST_NO_INPUTS_FOUND),
        ({"inputs": []}, ErrorCode.REST_NO_INPUTS_FOUND),
        ({"inputs": {"x": [1]}}, ErrorCode.REST_COULD_NOT_PARSE_INPUT),
        ({"inputs": [5]}, ErrorCode.REST_COULD_NOT_PARSE_INPUT),
        ({"inputs": [{"shape": [1], "datatype": "FP32", "data": [1]}]}, None),
        (one_input(shape=[1, -3], data=[1]), ErrorCode.REST_COULD_NOT_PARSE_INPUT),
        (one_input(shape="1,3", data=[1]), ErrorCode.REST_COULD_NOT_PARSE_INPUT),
        (one_input(datatype=5, data=[1]), ErrorCode.REST_COULD_NOT_PARSE_INPUT),
        (one_input(datatype="FP8", data=[1]), ErrorCode.INVALID_PRECISION),
        (one_input(data=5), ErrorCode.REST_COULD_NOT_PARSE_INPUT),
        ({**one_input(data=[1, 2, 3]), "id": 5}, ErrorCode.REST_COULD_NOT_PARSE_INPUT),
        (
            {**one_input(data=[1, 2, 3]), "parameters": []},
            ErrorCode.REST_COULD_NOT_PARSE_PARAMETERS,
        ),
        (
            {**one_input(data=[1, 2, 3]), "parameters": {"x": 1.5}},
            ErrorCode.REST_COULD_NOT_PARSE_PARAMETERS,
        ),
        ({**one_input(data=[1, 2, 3]), "outputs": {}}, ErrorCode.REST_COULD_NOT_PARSE_OUTPUT),
        ({**one_input(data=[1, 2, 3]), "outputs": [{}]}, ErrorCode.REST_COULD_NOT_PARSE_OUTPUT),
    ],
)
def test_wrong_structure(document: dict[str, Any], code: ErrorCode | None) -> None:
    error = error_of(document)
    assert error.code is (code or ErrorCode.REST_COULD_NOT_PARSE_INPUT)


def test_body_must_be_an_object() -> None:
    with pytest.raises(InvalidInput) as caught:
        decode_infer_request(b"[1, 2]", None)
    assert caught.value.code is ErrorCode.REST_BODY_IS_NOT_AN_OBJECT
    assert caught.value.text == "Request body should be JSON object"


def test_requested_outputs_id_and_binary_choices() -> None:
    document = {
        **one_input(data=[1, 2, 3]),
        "id": "req-7",
        "outputs": [
            {"name": "a", "parameters": {"binary_data": True}},
            {"name": "b"},
            {"name": "c", "parameters": {"binary_data": False}},
        ],
    }
    request = decode(document)
    assert request.id == "req-7"
    assert request.outputs == ["a", "b", "c"]
    assert [request.wants_binary(name) for name in "abc"] == [True, False, False]
    everything = decode({**document, "parameters": {"binary_data_output": True}})
    assert [everything.wants_binary(name) for name in "abcd"] == [True, True, False, True]


# --- binary data extension ----------------------------------------------------------------------


def test_binary_input_sized_by_parameter() -> None:
    raw = np.array([[1, 2, 3]], np.float32).tobytes()
    (tensor,) = decode(one_input(parameters={"binary_data_size": len(raw)}), raw).inputs
    assert bytes(tensor.data) == raw  # type: ignore[arg-type]


def test_binary_input_sized_by_shape_and_mixed_with_json() -> None:
    raw = np.arange(6, dtype=np.int16).tobytes()
    document = {
        "inputs": [
            {"name": "a", "shape": [2, 3], "datatype": "INT16"},
            {"name": "b", "shape": [1], "datatype": "FP32", "data": [7]},
            {"name": "c", "shape": [2], "datatype": "UINT8", "parameters": {"binary_data_size": 2}},
        ]
    }
    a, b, c = decode(document, raw, b"\x05\x06").inputs
    assert np.frombuffer(a.data, np.int16).tolist() == list(range(6))  # type: ignore[arg-type]
    assert b.data.tolist() == [7.0]  # type: ignore[union-attr]
    assert bytes(c.data) == b"\x05\x06"  # type: ignore[arg-type]


def test_lone_bytes_input_takes_the_whole_buffer() -> None:
    raw = struct.pack("<I", 3) + b"abc" + struct.pack("<I", 1) + b"z"
    document = {"inputs": [{"name": "t", "shape": [2], "datatype": "BYTES"}]}
    (tensor,) = decode(document, raw).inputs
    assert tensor.data == [b"abc", b"z"]


def test_bytes_among_several_inputs_need_a_size() -> None:
    document = {
        "inputs": [
            {"name": "t", "shape": [1], "datatype": "BYTES"},
            {"name": "x", "shape": [1], "datatype": "FP32", "data": [1]},
        ]
    }
    assert error_of(document, b"\x01\x00\x00\x00a").code is ErrorCode.REST_COULD_NOT_PARSE_INPUT


@pytest.mark.parametrize(
    ("fields", "binary", "code"),
    [
        (
            {"parameters": {"binary_data_size": 100}},
            b"\x00" * 12,
            ErrorCode.REST_BINARY_BUFFER_EXCEEDED,
        ),
        ({}, b"\x00" * 8, ErrorCode.REST_BINARY_BUFFER_EXCEEDED),
        ({}, b"\x00" * 16, ErrorCode.REST_BINARY_DATA_SIZE_PARAMETER_INVALID),
        ({"parameters": {"binary_data_size": "12"}}, b"\x00" * 12, None),
        ({"parameters": {"binary_data_size": -1}}, b"\x00" * 12, None),
        (
            {"parameters": {"binary_data_size": 12}, "data": [1, 2, 3]},
            b"\x00" * 12,
            ErrorCode.REST_CONTENTS_FIELD_NOT_EMPTY,
        ),
    ],
)
def test_binary_sizes_that_do_not_add_up(
    fields: dict[str, Any], binary: bytes, code: ErrorCode | None
) -> None:
    error = error_of(one_input(**fields), binary)
    assert error.code is (code or ErrorCode.REST_BINARY_DATA_SIZE_PARAMETER_INVALID)


def test_header_length_past_the_body() -> None:
    header, _ = body(one_input(data=[1, 2, 3]))
    with pytest.raises(InvalidInput) as caught:
        decode_infer_request(header, len(header) + 1)
    assert caught.value.code is ErrorCode.REST_INFERENCE_HEADER_CONTENT_LENGTH_INVALID


@pytest.mark.parametrize("value", [b"12", b" 7 ", None])
def test_header_length_values(value: bytes | None) -> None:
    assert parse_header_length(value) == (None if value is None else int(value))


@pytest.mark.parametrize("value", [b"-15", b"value", b"", b"1.5", b"99999999999"])
def test_bad_header_length(value: bytes) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_header_length(value)
    assert caught.value.code is ErrorCode.REST_INFERENCE_HEADER_CONTENT_LENGTH_INVALID
    assert caught.value.text.startswith(
        "Inference-Header-Content-Length header is invalid and couldn't be parsed"
    )


# --- replies ------------------------------------------------------------------------------------


def result() -> InferResult:
    return InferResult(
        "m",
        3,
        {
            "y": np.array([[0.5, 1.0]], np.float32),
            "n": np.array([1, 2, 3], np.int64),
            "s": np.array([b"ab", b"c"], dtype=object),
        },
    )


def request(**kwargs: Any) -> InferRequest:
    defaults: dict[str, Any] = {
        "id": "i",
        "inputs": [],
        "outputs": None,
        "binary_outputs": {},
        "binary_by_default": False,
    }
    return InferRequest(**{**defaults, **kwargs})


def test_json_reply() -> None:
    reply, binary = encode_infer_response(result(), request())
    assert binary == []
    assert orjson.loads(reply) == {
        "model_name": "m",
        "id": "i",
        "model_version": "3",
        "outputs": [
            {"name": "y", "shape": [1, 2], "datatype": "FP32", "data": [0.5, 1.0]},
            {"name": "n", "shape": [3], "datatype": "INT64", "data": [1, 2, 3]},
            {"name": "s", "shape": [2], "datatype": "BYTES", "data": ["ab", "c"]},
        ],
    }


def test_binary_reply_follows_the_json_header() -> None:
    reply, binary = encode_infer_response(
        result(), request(binary_by_default=True, binary_outputs={"n": False})
    )
    header = orjson.loads(reply)
    y, n, s = header["outputs"]
    assert y["parameters"] == {"binary_data_size": 8}
    assert "data" not in y
    assert n["data"] == [1, 2, 3]
    assert "parameters" not in n
    assert s["parameters"] == {"binary_data_size": 4 + 2 + 4 + 1}
    raw = b"".join(binary)
    assert np.frombuffer(raw[:8], np.float32).tolist() == [0.5, 1.0]
    assert raw[8:] == struct.pack("<I", 2) + b"ab" + struct.pack("<I", 1) + b"c"


def test_metadata_reports_dynamic_dimensions_as_minus_one() -> None:
    metadata = ModelMetadata(
        "m",
        2,
        (1, 2),
        [TensorSpec("x", DataType.FP32, Shape.of(1, -1, 3))],
        [TensorSpec("y", DataType.INT64, Shape.of(-1))],
    )
    assert orjson.loads(encode_metadata(metadata)) == {
        "name": "m",
        "versions": ["1", "2"],
        "platform": "OpenVINO",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, -1, 3]}],
        "outputs": [{"name": "y", "datatype": "INT64", "shape": [-1]}],
    }


def test_server_metadata() -> None:
    assert orjson.loads(encode_server_metadata("OpenVINO Model Server", "1.2")) == {
        "name": "OpenVINO Model Server",
        "version": "1.2",
        "extensions": [],
    }
