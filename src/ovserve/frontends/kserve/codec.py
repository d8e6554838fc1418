"""KServe v2 gRPC messages ⇄ domain tensors."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ovserve.engine.base import TensorSpec
from ovserve.errors import ErrorCode, InvalidInput
from ovserve.frontends._generated.kserve import grpc_predict_v2_pb2 as pb
from ovserve.serving.service import ModelMetadata
from ovserve.tensors import DataType, InferResult, RequestTensor

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


def datatype_from_wire(name: str, input_name: str) -> DataType:
    """A KServe datatype name as a DataType, or INVALID_PRECISION."""
    datatype = DataType.from_name(name)
    if datatype is None:
        raise InvalidInput(
            f"Unsupported datatype {name!r}; input name: {input_name}", ErrorCode.INVALID_PRECISION
        )
    return datatype


def decode_bytes_elements(buffer: bytes | memoryview, input_name: str) -> list[bytes]:
    """Split a raw BYTES buffer: each element is a 4-byte little-endian length, then the bytes."""
    elements = []
    offset = 0
    view = memoryview(buffer)
    while offset < len(view):
        if offset + 4 > len(view):
            raise InvalidInput(
                f"Truncated BYTES element length; input name: {input_name}",
                ErrorCode.INVALID_CONTENT_SIZE,
            )
        (length,) = struct.unpack_from("<I", view, offset)
        offset += 4
        if offset + length > len(view):
            raise InvalidInput(
                f"BYTES element longer than the buffer; input name: {input_name}",
                ErrorCode.INVALID_CONTENT_SIZE,
            )
        elements.append(bytes(view[offset : offset + length]))
        offset += length
    return elements


def encode_bytes_elements(values: npt.NDArray[Any]) -> bytes:
    """Length-prefixed concatenation of BYTES elements."""
    parts = []
    for value in values.reshape(-1):
        data = value if isinstance(value, bytes) else str(value).encode()
        parts.append(struct.pack("<I", len(data)))
        parts.append(data)
    return b"".join(parts)


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
    return [output.name for output in request.outputs] or None


def encode_result(request: pb.ModelInferRequest, result: InferResult) -> pb.ModelInferResponse:
    """Outputs in ``raw_output_contents``, in model order (or request order when named)."""
    response = pb.ModelInferResponse(
        model_name=result.model_name, model_version=str(result.model_version), id=request.id
    )
    for name, array in result.outputs.items():
        datatype = DataType.from_numpy(array.dtype)
        response.outputs.add(name=name, datatype=datatype.value, shape=array.shape)
        if datatype is DataType.BYTES:
            response.raw_output_contents.append(encode_bytes_elements(array))
        else:
            response.raw_output_contents.append(array.tobytes())
    return response


def _tensor_metadata(spec: TensorSpec) -> pb.ModelMetadataResponse.TensorMetadata:
    return pb.ModelMetadataResponse.TensorMetadata(
        name=spec.name, datatype=spec.datatype.value, shape=spec.shape.metadata_sizes()
    )


def encode_metadata(metadata: ModelMetadata) -> pb.ModelMetadataResponse:
    """Model metadata; dynamic and range dimensions are reported as -1, as OVMS does."""
    return pb.ModelMetadataResponse(
        name=metadata.name,
        versions=[str(version) for version in metadata.versions],
        platform="OpenVINO",
        inputs=[_tensor_metadata(spec) for spec in metadata.inputs],
        outputs=[_tensor_metadata(spec) for spec in metadata.outputs],
    )
