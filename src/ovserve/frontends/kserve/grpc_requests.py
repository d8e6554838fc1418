"""KServe v2 gRPC requests → domain values: versions, input tensors, requested outputs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ovserve.errors import ErrorCode, InvalidInput
from ovserve.frontends._generated.kserve import grpc_predict_v2_pb2 as pb
from ovserve.frontends.kserve.datatypes import datatype_from_wire, decode_bytes_elements
from ovserve.tensors import DataType, RequestTensor

_TYPED_FIELD: dict[DataType, str] = {
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
    DataType.BYTES: "bytes_contents",
}


def parse_version(text: str) -> int | None:
    """KServe versions are strings: empty means the default version."""
    if not text:
        return None
    # isdigit() alone also takes superscripts and other scripts' digits, which int() rejects.
    if not (text.isascii() and text.isdigit()):
        raise InvalidInput(code=ErrorCode.MODEL_VERSION_INVALID_FORMAT)
    return int(text)


def decode_inputs(
    request: pb.ModelInferRequest, raw: Sequence[bytes | memoryview] | None = None
) -> list[RequestTensor]:
    """The request's inputs, raw or typed (``contents``).

    ``raw`` replaces ``request.raw_input_contents`` when the caller read them without copying
    (see ``wire.parse_infer_request``).
    """
    if raw is None:
        raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InvalidInput(
            f"Expected: {len(request.inputs)} raw_input_contents; Actual: {len(raw)}",
            ErrorCode.INVALID_CONTENT_SIZE,
        )
    tensors = []
    for index, tensor in enumerate(request.inputs):
        datatype = datatype_from_wire(tensor.datatype, tensor.name)
        shape = tuple(tensor.shape)
        data: Any
        if raw:
            buffer = raw[index]
            data = (
                decode_bytes_elements(buffer, tensor.name) if datatype is DataType.BYTES else buffer
            )
        else:
            data = _typed_contents(tensor, datatype)
        tensors.append(RequestTensor(tensor.name, datatype, shape, data))
    return tensors


def _typed_contents(tensor: pb.ModelInferRequest.InferInputTensor, datatype: DataType) -> Any:
    field = _TYPED_FIELD.get(datatype)
    if field is None:
        raise InvalidInput(
            f"{datatype.value} needs raw_input_contents; input name: {tensor.name}",
            ErrorCode.INVALID_CONTENT_SIZE,
        )
    values = getattr(tensor.contents, field)
    if datatype is DataType.BYTES:
        return list(values)
    try:
        return np.array(values, dtype=datatype.numpy_dtype)
    except OverflowError:
        raise InvalidInput(
            f"Value out of range for {datatype.value}; input name: {tensor.name}",
            ErrorCode.INVALID_VALUE_COUNT,
        ) from None


def requested_outputs(request: pb.ModelInferRequest) -> list[str] | None:
    """Names of the requested outputs, or None for all."""
    if not request.outputs:
        return None
    return [output.name for output in request.outputs]
