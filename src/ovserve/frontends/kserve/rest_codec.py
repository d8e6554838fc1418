"""KServe v2 REST bodies ⇄ domain tensors: JSON tensors and the binary data extension.

A request body is a JSON header, optionally followed by raw tensor bytes: the
``Inference-Header-Content-Length`` header gives the JSON length and each binary input declares
``parameters.binary_data_size`` (optional when it follows from the shape, or for a lone BYTES
input). Replies mirror this for the outputs asked for with ``binary_data`` (per output) or
``binary_data_output`` (request parameter, for every output).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from ovserve.errors import ErrorCode, InvalidInput
from ovserve.frontends.json_body import dump_json, parse_json
from ovserve.frontends.kserve.datatypes import (
    datatype_from_wire,
    decode_bytes_elements,
    encode_bytes_elements,
)
from ovserve.serving.service import ModelMetadata
from ovserve.tensors import DataType, InferResult, RequestTensor, TensorSpec

PLATFORM: Final = "OpenVINO"
MAX_HEADER_LENGTH: Final = 2**31 - 1
"""OVMS reads the header length as a 32-bit int."""

_FLOAT_KINDS: Final = frozenset("fiu")
_INT_KINDS: Final = frozenset("iu")
_KINDS: Final = {
    DataType.FP32: _FLOAT_KINDS,
    DataType.FP64: _FLOAT_KINDS,
    DataType.BOOL: frozenset("b"),
}
_BINARY_ONLY: Final = frozenset({DataType.FP16})
"""OVMS takes FP16 only as binary data."""


@dataclass(frozen=True, slots=True)
class InferRequest:
    """A decoded ``POST .../infer`` body."""

    id: str
    inputs: list[RequestTensor]
    outputs: list[str] | None
    """Requested output names, or None for all."""
    binary_outputs: Mapping[str, bool]
    """Per-output ``binary_data`` parameters."""
    binary_by_default: bool
    """The ``binary_data_output`` request parameter, for outputs without their own setting."""

    def wants_binary(self, name: str) -> bool:
        """Whether this output is sent after the JSON header rather than in it."""
        return self.binary_outputs.get(name, self.binary_by_default)


def parse_header_length(value: bytes | None) -> int | None:
    """The ``Inference-Header-Content-Length`` value; a non-number or negative is a 400."""
    if value is None:
        return None
    text = value.strip()
    if not text.isdigit() or int(text) > MAX_HEADER_LENGTH:
        raise InvalidInput(
            f"got {value.decode('latin-1')!r}",
            ErrorCode.REST_INFERENCE_HEADER_CONTENT_LENGTH_INVALID,
        )
    return int(text)


def decode_infer_request(body: bytes | memoryview, header_length: int | None) -> InferRequest:
    """Parse the JSON header and attach the binary parts that follow it."""
    if header_length is None:
        header, binary = body, memoryview(b"")
    else:
        if header_length > len(body):
            raise InvalidInput(
                f"{header_length} bytes announced, the body has {len(body)}",
                ErrorCode.REST_INFERENCE_HEADER_CONTENT_LENGTH_INVALID,
            )
        header, binary = body[:header_length], memoryview(body)[header_length:]
    document = parse_json(header)
    if not isinstance(document, dict):
        raise InvalidInput(code=ErrorCode.REST_BODY_IS_NOT_AN_OBJECT)
    request_id = document.get("id", "")
    if not isinstance(request_id, str):
        raise InvalidInput("id must be a string", ErrorCode.REST_COULD_NOT_PARSE_INPUT)
    parameters = _parameters(document.get("parameters"))
    outputs, binary_outputs = _outputs(document.get("outputs"))
    inputs = _inputs(document.get("inputs"), binary)
    # Like Triton (and unlike OVMS, which only honours it for listed outputs),
    # binary_data_output also covers the "all outputs" case tritonclient relies on.
    binary_by_default = parameters.get("binary_data_output") is True
    return InferRequest(request_id, inputs, outputs, binary_outputs, binary_by_default)


def _parameters(value: object) -> dict[str, Any]:
    """OVMS accepts string, bool and integer parameters only."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(item, str | bool | int) for item in value.values()
    ):
        raise InvalidInput(code=ErrorCode.REST_COULD_NOT_PARSE_PARAMETERS)
    return value


def _outputs(value: object) -> tuple[list[str] | None, dict[str, bool]]:
    if value is None:
        return None, {}
    if not isinstance(value, list):
        raise InvalidInput("outputs must be a list", ErrorCode.REST_COULD_NOT_PARSE_OUTPUT)
    names: list[str] = []
    binary: dict[str, bool] = {}
    for output in value:
        if not isinstance(output, dict) or not isinstance(output.get("name"), str):
            raise InvalidInput("each output needs a name", ErrorCode.REST_COULD_NOT_PARSE_OUTPUT)
        names.append(output["name"])
        setting = _parameters(output.get("parameters")).get("binary_data")
        if isinstance(setting, bool):
            binary[output["name"]] = setting
    return names or None, binary


def _inputs(value: object, binary: memoryview) -> list[RequestTensor]:
    if value is None:
        raise InvalidInput(code=ErrorCode.REST_NO_INPUTS_FOUND)
    if not isinstance(value, list):
        raise InvalidInput("inputs must be a list", ErrorCode.REST_COULD_NOT_PARSE_INPUT)
    if not value:
        raise InvalidInput(code=ErrorCode.REST_NO_INPUTS_FOUND)
    only_one = len(value) == 1
    offset = 0
    tensors = []
    for item in value:
        name, datatype, shape, parameters = _input_header(item)
        if "data" in item:
            if "binary_data_size" in parameters:
                raise InvalidInput(f"input name: {name}", ErrorCode.REST_CONTENTS_FIELD_NOT_EMPTY)
            tensors.append(
                RequestTensor(name, datatype, shape, _json_data(item["data"], name, datatype))
            )
            continue
        size = _binary_size(
            name, datatype, shape, parameters, only_one=only_one, remaining=len(binary) - offset
        )
        if offset + size > len(binary):
            raise InvalidInput(
                f"input name: {name}; {size} bytes declared, {len(binary) - offset} left",
                ErrorCode.REST_BINARY_BUFFER_EXCEEDED,
            )
        part = binary[offset : offset + size]
        offset += size
        data: Any = (
            decode_bytes_elements(part.tobytes(), name) if datatype is DataType.BYTES else part
        )
        tensors.append(RequestTensor(name, datatype, shape, data))
    if offset != len(binary):
        raise InvalidInput(
            f"the binary inputs take {offset} bytes but {len(binary)} follow the JSON header",
            ErrorCode.REST_BINARY_DATA_SIZE_PARAMETER_INVALID,
        )
    return tensors


def _input_header(item: object) -> tuple[str, DataType, tuple[int, ...], dict[str, Any]]:
    if not isinstance(item, dict):
        raise InvalidInput("each input must be an object", ErrorCode.REST_COULD_NOT_PARSE_INPUT)
    name = item.get("name")
    if not isinstance(name, str):
        raise InvalidInput("each input needs a name", ErrorCode.REST_COULD_NOT_PARSE_INPUT)
    shape = item.get("shape")
    if not isinstance(shape, list) or not all(type(size) is int and size >= 0 for size in shape):
        raise InvalidInput(
            f"shape must be a list of non-negative integers; input name: {name}",
            ErrorCode.REST_COULD_NOT_PARSE_INPUT,
        )
    wire_type = item.get("datatype")
    if not isinstance(wire_type, str):
        raise InvalidInput(
            f"datatype must be a string; input name: {name}", ErrorCode.REST_COULD_NOT_PARSE_INPUT
        )
    datatype = datatype_from_wire(wire_type, name)
    return name, datatype, tuple(shape), _parameters(item.get("parameters"))


def _binary_size(
    name: str,
    datatype: DataType,
    shape: tuple[int, ...],
    parameters: Mapping[str, Any],
    *,
    only_one: bool,
    remaining: int,
) -> int:
    if "binary_data_size" in parameters:
        size = parameters["binary_data_size"]
        if type(size) is not int or size < 0:
            raise InvalidInput(
                f"input name: {name}", ErrorCode.REST_BINARY_DATA_SIZE_PARAMETER_INVALID
            )
        return size
    if datatype is DataType.BYTES:
        if only_one:
            return remaining
        raise InvalidInput(
            f"BYTES input without data needs binary_data_size; input name: {name}",
            ErrorCode.REST_COULD_NOT_PARSE_INPUT,
        )
    return math.prod(shape) * datatype.itemsize


def _json_data(data: object, name: str, datatype: DataType) -> Any:
    """``data`` (flat or nested) as a typed array; only the element count is checked later."""
    if not isinstance(data, list):
        raise InvalidInput(
            f"data must be a list; input name: {name}", ErrorCode.REST_COULD_NOT_PARSE_INPUT
        )
    if datatype in _BINARY_ONLY:
        raise InvalidInput(
            f"{datatype.value} data must be sent as binary data; input name: {name}",
            ErrorCode.REST_COULD_NOT_PARSE_INPUT,
        )
    if datatype is DataType.BYTES:
        return [_utf8(value, name) for value in _flatten(data)]
    try:
        array = np.asarray(data)
    except ValueError:
        raise _not_ndarray(name) from None
    target = datatype.numpy_dtype
    if array.dtype.kind not in _KINDS.get(datatype, _INT_KINDS):
        if target.kind in _INT_KINDS and _all_integers(data):
            # Integers past int64 (UINT64's upper half) make numpy guess float64 or object.
            try:
                return np.array(data, dtype=target).reshape(-1)
            except OverflowError:
                pass
        raise _not_ndarray(name)
    if array.dtype.kind in _INT_KINDS and target.kind in _INT_KINDS and array.size:
        limits = np.iinfo(target)
        if array.min() < limits.min or array.max() > limits.max:
            raise InvalidInput(
                f"value out of range for {datatype.value}; input name: {name}",
                ErrorCode.REST_COULD_NOT_PARSE_INPUT,
            )
    return array.astype(target, copy=False).reshape(-1)


def _not_ndarray(name: str) -> InvalidInput:
    return InvalidInput(f"input name: {name}", ErrorCode.REST_COULD_NOT_PARSE_INPUT)


def _flatten(data: list[Any]) -> list[Any]:
    flat: list[Any] = []
    pending = [iter(data)]
    while pending:
        for value in pending[-1]:
            if isinstance(value, list):
                pending.append(iter(value))
                break
            flat.append(value)
        else:
            pending.pop()
    return flat


def _all_integers(data: list[Any]) -> bool:
    return all(type(value) is int for value in _flatten(data))


def _utf8(value: object, name: str) -> bytes:
    if not isinstance(value, str):
        raise InvalidInput(
            f"BYTES data must be strings; input name: {name}", ErrorCode.REST_COULD_NOT_PARSE_INPUT
        )
    return value.encode()


def encode_infer_response(
    result: InferResult, request: InferRequest
) -> tuple[bytes, list[bytes | memoryview]]:
    """The JSON header and the binary outputs that follow it (none: a JSON-only reply).

    Numeric outputs are views of their arrays, so they reach the socket without a copy.
    """
    outputs: list[dict[str, Any]] = []
    parts: list[bytes | memoryview] = []
    for name, array in result.outputs.items():
        datatype = DataType.from_numpy(array.dtype)
        entry: dict[str, Any] = {
            "name": name,
            "shape": list(array.shape),
            "datatype": datatype.value,
        }
        if request.wants_binary(name):
            raw = encode_bytes_elements(array) if datatype is DataType.BYTES else _raw_view(array)
            entry["parameters"] = {"binary_data_size": len(raw)}
            parts.append(raw)
        else:
            entry["data"] = _json_values(array, datatype)
        outputs.append(entry)
    header = dump_json(
        {
            "model_name": result.model_name,
            "id": request.id,
            "model_version": str(result.model_version),
            "outputs": outputs,
        }
    )
    return header, parts


def _raw_view(array: npt.NDArray[Any]) -> memoryview:
    """The array's bytes as a flat byte view (a copy only when it is not contiguous)."""
    return np.ascontiguousarray(array).reshape(-1).view(np.uint8).data


def _json_values(array: npt.NDArray[Any], datatype: DataType) -> Any:
    if datatype is DataType.BYTES:
        return [
            value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
            for value in array.reshape(-1)
        ]
    return np.ascontiguousarray(array).reshape(-1)


def encode_metadata(metadata: ModelMetadata) -> bytes:
    """Model metadata; dynamic and range dimensions are reported as -1, as OVMS does."""
    return dump_json(
        {
            "name": metadata.name,
            "versions": [str(version) for version in metadata.versions],
            "platform": PLATFORM,
            "inputs": [_tensor_metadata(spec) for spec in metadata.inputs],
            "outputs": [_tensor_metadata(spec) for spec in metadata.outputs],
        }
    )


def _tensor_metadata(spec: TensorSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "datatype": spec.datatype.value,
        "shape": spec.shape.metadata_sizes(),
    }


def encode_server_metadata(name: str, version: str) -> bytes:
    """``GET /v2``."""
    return dump_json({"name": name, "version": version, "extensions": []})
