"""TF Serving REST bodies ⇄ domain tensors: row (``instances``) and column (``inputs``) formats.

Request values are typed by the model's inputs (JSON numbers carry no precision); binary values
come as ``{"b64": "..."}``. Replies follow TF Serving's ``MakeJsonFromTensors``: ``predictions``
for the row format, ``outputs`` for the column format, unnamed when there is one output.
Status and metadata replies are the gRPC messages printed as protobuf JSON, as OVMS does.
"""

from __future__ import annotations

import base64
import binascii
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from google.protobuf import json_format

from ovserve.errors import ErrorCode, InvalidInput
from ovserve.frontends.json_body import dump_json, parse_json
from ovserve.frontends.tfserving import codec
from ovserve.serving.model_instance import VersionStatus
from ovserve.serving.service import ModelMetadata
from ovserve.tensors import DataType, InferResult, RequestTensor, TensorSpec


class Order(enum.Enum):
    """Which request format was used; the reply uses the matching one."""

    ROW = "instances"
    COLUMN = "inputs"


@dataclass(frozen=True, slots=True)
class PredictRequest:
    """A decoded ``:predict`` body."""

    inputs: list[RequestTensor]
    order: Order


def decode_predict(body: bytes | memoryview, specs: Sequence[TensorSpec]) -> PredictRequest:
    """Parse a row or column formatted body against the model's inputs."""
    document = parse_json(body)
    if not isinstance(document, dict):
        raise InvalidInput(code=ErrorCode.REST_BODY_IS_NOT_AN_OBJECT)
    has_rows, has_columns = "instances" in document, "inputs" in document
    if has_rows == has_columns:
        raise InvalidInput(code=ErrorCode.REST_PREDICT_UNKNOWN_ORDER)
    by_name = {spec.name: spec for spec in specs}
    if has_rows:
        return PredictRequest(_rows(document["instances"], specs, by_name), Order.ROW)
    return PredictRequest(_columns(document["inputs"], specs, by_name), Order.COLUMN)


def _rows(
    instances: object, specs: Sequence[TensorSpec], by_name: Mapping[str, TensorSpec]
) -> list[RequestTensor]:
    if not isinstance(instances, list):
        raise InvalidInput(code=ErrorCode.REST_INSTANCES_NOT_AN_ARRAY)
    if not instances:
        raise InvalidInput(code=ErrorCode.REST_NO_INSTANCES_FOUND)
    first = instances[0]
    if isinstance(first, dict) and not _is_b64(first):
        return _named_rows(instances, by_name)
    if isinstance(first, list | int | float | dict) and not isinstance(first, bool):
        spec = _only_input(specs, ErrorCode.REST_COULD_NOT_PARSE_INSTANCE)
        return [_tensor(spec.name, instances, spec, ErrorCode.REST_COULD_NOT_PARSE_INSTANCE)]
    raise InvalidInput(code=ErrorCode.REST_INSTANCES_NOT_NAMED_OR_NONAMED)


def _named_rows(instances: list[Any], by_name: Mapping[str, TensorSpec]) -> list[RequestTensor]:
    columns: dict[str, list[Any]] = {}
    for instance in instances:
        if not isinstance(instance, dict):
            raise InvalidInput(code=ErrorCode.REST_NAMED_INSTANCE_NOT_AN_OBJECT)
        if not instance:
            raise InvalidInput("empty instance", ErrorCode.REST_COULD_NOT_PARSE_INSTANCE)
        for name, value in instance.items():
            columns.setdefault(name, []).append(value)
    if len({len(values) for values in columns.values()}) > 1:
        raise InvalidInput(code=ErrorCode.REST_INSTANCES_BATCH_SIZE_DIFFER)
    return [
        _tensor(name, values, by_name.get(name), ErrorCode.REST_COULD_NOT_PARSE_INSTANCE)
        for name, values in columns.items()
    ]


def _columns(
    inputs: object, specs: Sequence[TensorSpec], by_name: Mapping[str, TensorSpec]
) -> list[RequestTensor]:
    if isinstance(inputs, list):
        spec = _only_input(specs, ErrorCode.REST_COULD_NOT_PARSE_INPUT)
        return [_tensor(spec.name, inputs, spec, ErrorCode.REST_COULD_NOT_PARSE_INPUT)]
    if not isinstance(inputs, dict):
        raise InvalidInput(code=ErrorCode.REST_INPUTS_NOT_AN_OBJECT)
    if not inputs:
        raise InvalidInput(code=ErrorCode.REST_NO_INPUTS_FOUND)
    return [
        _tensor(name, value, by_name.get(name), ErrorCode.REST_COULD_NOT_PARSE_INPUT)
        for name, value in inputs.items()
    ]


def _only_input(specs: Sequence[TensorSpec], code: ErrorCode) -> TensorSpec:
    if len(specs) != 1:
        raise InvalidInput(
            f"unnamed values need a model with exactly one input; this one has {len(specs)}",
            code,
        )
    return specs[0]


def _is_b64(value: object) -> bool:
    return isinstance(value, dict) and isinstance(value.get("b64"), str)


def _tensor(name: str, value: Any, spec: TensorSpec | None, code: ErrorCode) -> RequestTensor:
    """One input from a (nested) JSON value: numbers, strings or ``{"b64": ...}`` objects."""
    if _is_b64(value):
        # A lone binary value is one element (TF Serving would make it a scalar).
        return RequestTensor(name, DataType.BYTES, (1,), [_b64_decode(value, name)])
    try:
        array = np.asarray(value)
    except ValueError:
        raise InvalidInput(f"input name: {name}", code) from None
    kind = array.dtype.kind
    if kind in "biuf":
        datatype = spec.datatype if spec is not None else _guess_datatype(kind)
        if datatype is DataType.BYTES:
            raise InvalidInput(f"expected binary or string values; input name: {name}", code)
        return RequestTensor(name, datatype, array.shape, _cast(array, datatype, name, code))
    if kind == "U":
        return RequestTensor(
            name, DataType.BYTES, array.shape, [text.encode() for text in array.flat]
        )
    if kind == "O" and all(_is_b64(item) for item in array.flat):
        return RequestTensor(
            name, DataType.BYTES, array.shape, [_b64_decode(item, name) for item in array.flat]
        )
    raise InvalidInput(f"input name: {name}", code)


def _guess_datatype(kind: str) -> DataType:
    """OVMS's choice for inputs the model does not have: integers INT32, others FP32."""
    return DataType.INT32 if kind in "iu" else DataType.FP32


def _cast(
    array: npt.NDArray[Any], datatype: DataType, name: str, code: ErrorCode
) -> npt.NDArray[Any]:
    """The JSON numbers as ``datatype``, refusing what a cast would silently change.

    Integer inputs take integers within the type's range only (1.7 would become 1 and 300 in a
    UINT8 would wrap to 44); BOOL inputs take ``true``/``false`` only; a finite number too large
    for a float type (1e40 in FP32) is refused rather than turned into infinity. KServe REST
    refuses the same values.
    """
    target = datatype.numpy_dtype
    if target.kind in "iu":
        if array.dtype.kind not in "iu":
            raise InvalidInput(
                f"{datatype.value} values must be integers; input name: {name}", code
            )
        if array.size:
            limits = np.iinfo(target)
            if array.min() < limits.min or array.max() > limits.max:
                raise _out_of_range(datatype, name, code)
    elif target.kind == "b" and array.dtype.kind != "b":
        raise InvalidInput(f"BOOL values must be true or false; input name: {name}", code)
    with np.errstate(over="ignore", invalid="ignore"):
        cast = array.astype(target, copy=False)
        overflowed = target.kind == "f" and bool((np.isinf(cast) & np.isfinite(array)).any())
    if overflowed:
        raise _out_of_range(datatype, name, code)
    return cast


def _out_of_range(datatype: DataType, name: str, code: ErrorCode) -> InvalidInput:
    return InvalidInput(f"value out of range for {datatype.value}; input name: {name}", code)


def _b64_decode(value: Mapping[str, str], name: str) -> bytes:
    try:
        return base64.b64decode(value["b64"], validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"input name: {name}", ErrorCode.REST_BASE64_DECODE_ERROR) from None


def encode_predict(result: InferResult, order: Order) -> bytes:
    """``{"predictions": ...}`` (row) or ``{"outputs": ...}`` (column), shaped as TF Serving."""
    outputs = {name: _jsonable(array) for name, array in result.outputs.items()}
    if order is Order.COLUMN:
        payload: Any = next(iter(outputs.values())) if len(outputs) == 1 else outputs
        return dump_json({"outputs": payload})
    if len(outputs) == 1:
        return dump_json({"predictions": next(iter(outputs.values()))})
    batch_sizes = {len(value) for value in outputs.values() if isinstance(value, np.ndarray | list)}
    if len(batch_sizes) != 1:
        raise InvalidInput(
            "outputs have different batch sizes; use the column format (inputs)",
            ErrorCode.REST_COULD_NOT_PARSE_OUTPUT,
        )
    batch = batch_sizes.pop()
    rows = [{name: value[index] for name, value in outputs.items()} for index in range(batch)]
    return dump_json({"predictions": rows})


def _jsonable(array: npt.NDArray[Any]) -> Any:
    """What orjson can write: arrays natively, strings and scalars as Python values."""
    if array.dtype == np.object_:
        return np.vectorize(_text, otypes=[object])(array).tolist() if array.size else []
    if array.ndim == 0:
        return array.item()
    return np.ascontiguousarray(array)


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def encode_status(name: str, statuses: list[VersionStatus]) -> bytes:
    """``GET /v1/models/{m}``: ``{"model_version_status": [...]}`` with snake_case names."""
    return dump_json(_status_dict(name, statuses))


def encode_config(statuses: Mapping[str, list[VersionStatus]]) -> bytes:
    """``/v1/config``: every model's status, keyed by model name."""
    return dump_json({name: _status_dict(name, versions) for name, versions in statuses.items()})


def _status_dict(name: str, statuses: list[VersionStatus]) -> dict[str, Any]:
    return json_format.MessageToDict(
        codec.encode_status(name, statuses),
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
    )


def encode_metadata(metadata: ModelMetadata) -> bytes:
    """``GET .../metadata``: the GetModelMetadataResponse as protobuf JSON (camelCase)."""
    return json_format.MessageToJson(
        codec.encode_metadata(metadata), always_print_fields_with_no_presence=True, indent=1
    ).encode()
