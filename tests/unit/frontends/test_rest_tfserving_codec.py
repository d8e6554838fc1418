"""TF Serving REST codec: row and column formats, b64 values, replies, status and metadata."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import orjson
import pytest

from ovserve.config.shape import Shape
from ovserve.errors import ErrorCode, InvalidInput
from ovserve.frontends.tfserving.rest_codec import (
    Order,
    decode_predict,
    encode_config,
    encode_metadata,
    encode_predict,
    encode_status,
)
from ovserve.serving.model_instance import ModelVersionState, VersionStatus
from ovserve.serving.service import ModelMetadata
from ovserve.tensors import DataType, InferResult, RequestTensor, TensorSpec

ONE = [TensorSpec("x", DataType.FP32, Shape.of(-1, 2))]
TWO = [*ONE, TensorSpec("k", DataType.INT64, Shape.of(-1))]


def decode(document: Any, specs: list[TensorSpec] = ONE) -> tuple[list[RequestTensor], Order]:
    parsed = decode_predict(json.dumps(document).encode(), specs)
    return parsed.inputs, parsed.order


def error_of(document: Any, specs: list[TensorSpec] = ONE) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        decode(document, specs)
    return caught.value


def values(tensor: RequestTensor) -> Any:
    assert isinstance(tensor.data, np.ndarray)
    return tensor.data.tolist()


def test_row_unnamed() -> None:
    (tensor,), order = decode({"instances": [[1, 2], [3, 4.5]]})
    assert order is Order.ROW
    assert (tensor.name, tensor.datatype, tensor.shape) == ("x", DataType.FP32, (2, 2))
    assert values(tensor) == [[1, 2], [3, 4.5]]


def test_row_named_stacks_instances() -> None:
    (x, k), order = decode({"instances": [{"x": [1, 2], "k": 7}, {"x": [3, 4], "k": 8}]}, TWO)
    assert order is Order.ROW
    assert (x.shape, values(x)) == ((2, 2), [[1, 2], [3, 4]])
    assert (k.datatype, k.shape, values(k)) == (DataType.INT64, (2,), [7, 8])


def test_column_named_and_unnamed() -> None:
    (x, k), order = decode({"inputs": {"x": [[1, 2]], "k": [5]}}, TWO)
    assert order is Order.COLUMN
    assert (x.shape, values(x), values(k)) == ((1, 2), [[1, 2]], [5])
    (only,), _ = decode({"inputs": [[1, 2]]})
    assert only.name == "x"
    assert values(only) == [[1, 2]]


def test_values_take_the_model_precision() -> None:
    specs = [TensorSpec("x", DataType.UINT8, Shape.of(-1, 2))]
    (tensor,), _ = decode({"inputs": {"x": [[1, 2]]}}, specs)
    assert tensor.datatype is DataType.UINT8
    assert isinstance(tensor.data, np.ndarray)
    assert tensor.data.dtype == np.uint8


def spec(datatype: DataType) -> list[TensorSpec]:
    return [TensorSpec("x", datatype, Shape.of(-1))]


@pytest.mark.parametrize(
    ("datatype", "sent", "detail"),
    [
        (DataType.INT32, [1, 1.7], "INT32 values must be integers"),
        (DataType.UINT8, [1.0], "UINT8 values must be integers"),
        (DataType.INT64, [2.5], "INT64 values must be integers"),
        (DataType.UINT8, [300], "value out of range for UINT8"),
        (DataType.UINT8, [-1], "value out of range for UINT8"),
        (DataType.INT8, [128], "value out of range for INT8"),
        (DataType.INT16, [-32769], "value out of range for INT16"),
        (DataType.UINT32, [2**32], "value out of range for UINT32"),
        (DataType.INT64, [2**63], "value out of range for INT64"),
        (DataType.FP16, [70000.0], "value out of range for FP16"),
        (DataType.FP32, [1e39], "value out of range for FP32"),
        (DataType.BOOL, [1, 0], "BOOL values must be true or false"),
    ],
)
@pytest.mark.parametrize("order", ["instances", "inputs"])
def test_values_a_cast_would_change_are_refused(
    datatype: DataType, sent: list[Any], detail: str, order: str
) -> None:
    """Never a silent wrap or truncation (1.7 -> 1, 300 -> 44 in UINT8): a 400 naming the input."""
    error = error_of({order: {"x": sent}} if order == "inputs" else {order: sent}, spec(datatype))
    code = (
        ErrorCode.REST_COULD_NOT_PARSE_INPUT
        if order == "inputs"
        else ErrorCode.REST_COULD_NOT_PARSE_INSTANCE
    )
    assert (error.code, error.text) == (code, f"{code.message} - {detail}; input name: x")


def test_booleans_are_not_integers() -> None:
    error = error_of({"inputs": {"x": [True]}}, spec(DataType.INT64))
    assert error.text.endswith(" - INT64 values must be integers; input name: x")


@pytest.mark.parametrize(
    ("datatype", "sent"),
    [
        (DataType.UINT8, [0, 255]),
        (DataType.INT8, [-128, 127]),
        (DataType.UINT64, [2**64 - 1]),
        (DataType.INT64, [-(2**63), 2**63 - 1]),
        (DataType.FP16, [65504.0, -1.5]),
        (DataType.FP32, [3, 1.5, -(2.0**100)]),
        (DataType.BOOL, [True, False]),
    ],
)
def test_values_at_the_type_limits_are_kept_exactly(datatype: DataType, sent: list[Any]) -> None:
    (tensor,), _ = decode({"inputs": {"x": sent}}, spec(datatype))
    assert isinstance(tensor.data, np.ndarray)
    assert tensor.data.dtype == datatype.numpy_dtype
    assert tensor.data.tolist() == sent


def test_unknown_inputs_are_int32_or_fp32_as_in_ovms() -> None:
    inputs, _ = decode({"inputs": {"a": [1, 2], "b": [1.5]}})
    assert [tensor.datatype for tensor in inputs] == [DataType.INT32, DataType.FP32]


def test_b64_values_are_bytes() -> None:
    image = b"\x89PNG\r\n\x1a\nrest"
    encoded = {"b64": base64.b64encode(image).decode()}
    (rows,), _ = decode({"instances": [encoded, encoded]})
    assert (rows.datatype, rows.shape, rows.data) == (DataType.BYTES, (2,), [image, image])
    (named,), _ = decode({"instances": [{"x": encoded}]})
    assert (named.shape, named.data) == ((1,), [image])
    (column,), _ = decode({"inputs": {"x": [encoded]}})
    assert (column.shape, column.data) == ((1,), [image])
    (lone,), _ = decode({"inputs": {"x": encoded}})
    assert (lone.shape, lone.data) == ((1,), [image])


def test_strings_are_utf8_bytes() -> None:
    (tensor,), _ = decode({"inputs": {"t": ["ab", "ć"]}})
    assert (tensor.datatype, tensor.data) == (DataType.BYTES, [b"ab", "ć".encode()])


@pytest.mark.parametrize(
    ("document", "code"),
    [
        ([1, 2], ErrorCode.REST_BODY_IS_NOT_AN_OBJECT),
        ({}, ErrorCode.REST_PREDICT_UNKNOWN_ORDER),
        ({"signature_name": "serving_default"}, ErrorCode.REST_PREDICT_UNKNOWN_ORDER),
        ({"instances": [[1, 2]], "inputs": [[1, 2]]}, ErrorCode.REST_PREDICT_UNKNOWN_ORDER),
        ({"instances": {"x": [1, 2]}}, ErrorCode.REST_INSTANCES_NOT_AN_ARRAY),
        ({"instances": []}, ErrorCode.REST_NO_INSTANCES_FOUND),
        ({"instances": ["a", "b"]}, ErrorCode.REST_INSTANCES_NOT_NAMED_OR_NONAMED),
        ({"instances": [{"x": [1, 2]}, [3, 4]]}, ErrorCode.REST_NAMED_INSTANCE_NOT_AN_OBJECT),
        ({"instances": [{"x": [1, 2]}, {}]}, ErrorCode.REST_COULD_NOT_PARSE_INSTANCE),
        ({"instances": [[1, 2], [3]]}, ErrorCode.REST_COULD_NOT_PARSE_INSTANCE),
        ({"instances": [{"x": [1, 2]}, {"x": [3]}]}, ErrorCode.REST_COULD_NOT_PARSE_INSTANCE),
        (
            {"instances": [{"x": [1, 2], "k": 1}, {"x": [3, 4]}]},
            ErrorCode.REST_INSTANCES_BATCH_SIZE_DIFFER,
        ),
        ({"inputs": 5}, ErrorCode.REST_INPUTS_NOT_AN_OBJECT),
        ({"inputs": {}}, ErrorCode.REST_NO_INPUTS_FOUND),
        ({"inputs": {"x": [[1, 2], [3]]}}, ErrorCode.REST_COULD_NOT_PARSE_INPUT),
        ({"inputs": {"x": [{"a": 1}]}}, ErrorCode.REST_COULD_NOT_PARSE_INPUT),
        ({"inputs": {"x": [{"b64": "@@@"}]}}, ErrorCode.REST_BASE64_DECODE_ERROR),
    ],
)
def test_wrong_structure(document: Any, code: ErrorCode) -> None:
    assert error_of(document, TWO).code is code


def test_unnamed_formats_need_a_single_input_model() -> None:
    assert error_of({"instances": [[1, 2]]}, TWO).code is ErrorCode.REST_COULD_NOT_PARSE_INSTANCE
    assert error_of({"inputs": [[1, 2]]}, TWO).code is ErrorCode.REST_COULD_NOT_PARSE_INPUT


def test_row_format_error_text_is_ovms() -> None:
    assert error_of({"nothing": 1}).text == (
        "Invalid JSON structure. Could not detect row or column format"
    )


# --- replies ------------------------------------------------------------------------------------

Y = np.array([[1.5, 2.0], [3.0, 4.0]], np.float32)
K = np.array([7, 8], np.int64)


def reply(outputs: dict[str, Any], order: Order) -> Any:
    return orjson.loads(encode_predict(InferResult("m", 1, outputs), order))


def test_single_output_is_unnamed() -> None:
    assert reply({"y": Y}, Order.ROW) == {"predictions": [[1.5, 2.0], [3.0, 4.0]]}
    assert reply({"y": Y}, Order.COLUMN) == {"outputs": [[1.5, 2.0], [3.0, 4.0]]}


def test_several_outputs_are_named() -> None:
    assert reply({"y": Y, "k": K}, Order.ROW) == {
        "predictions": [{"y": [1.5, 2.0], "k": 7}, {"y": [3.0, 4.0], "k": 8}]
    }
    assert reply({"y": Y, "k": K}, Order.COLUMN) == {
        "outputs": {"y": [[1.5, 2.0], [3.0, 4.0]], "k": [7, 8]}
    }


def test_row_reply_needs_one_batch_size() -> None:
    with pytest.raises(InvalidInput):
        encode_predict(InferResult("m", 1, {"y": Y, "k": K[:1]}), Order.ROW)


def test_string_and_scalar_outputs() -> None:
    strings = np.array([b"a", b"b"], dtype=object)
    assert reply({"s": strings}, Order.COLUMN) == {"outputs": ["a", "b"]}
    assert reply({"v": np.float32(2.5).reshape(())}, Order.COLUMN) == {"outputs": 2.5}


def test_status_and_config_json() -> None:
    statuses = [
        VersionStatus(1, ModelVersionState.AVAILABLE),
        VersionStatus(2, ModelVersionState.END, "broken file"),
    ]
    expected = {
        "model_version_status": [
            {
                "version": "1",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": "OK"},
            },
            {
                "version": "2",
                "state": "END",
                "status": {"error_code": "UNKNOWN", "error_message": "broken file"},
            },
        ]
    }
    assert orjson.loads(encode_status("m", statuses)) == expected
    assert orjson.loads(encode_config({"m": statuses})) == {"m": expected}


def test_metadata_is_protobuf_json() -> None:
    metadata = ModelMetadata("m", 2, (2,), ONE, [TensorSpec("y", DataType.FP32, Shape.of(-1, 2))])
    document = orjson.loads(encode_metadata(metadata))
    assert document["modelSpec"] == {"name": "m", "version": "2", "signatureName": ""}
    signature = document["metadata"]["signature_def"]
    assert signature["@type"] == "type.googleapis.com/tensorflow.serving.SignatureDefMap"
    assert signature["signatureDef"]["serving_default"]["methodName"] == ""  # as OVMS prints it
    x = signature["signatureDef"]["serving_default"]["inputs"]["x"]
    assert x["dtype"] == "DT_FLOAT"
    assert [dim["size"] for dim in x["tensorShape"]["dim"]] == ["-1", "2"]
