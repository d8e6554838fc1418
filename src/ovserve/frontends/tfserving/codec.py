"""TF Serving messages ⇄ domain tensors (TensorProto, ModelSpec, signatures, status)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ovserve.errors import ErrorCode, InvalidInput, ModelNotFound
from ovserve.frontends._generated.tensorflow.core.framework import tensor_pb2, types_pb2
from ovserve.frontends._generated.tensorflow.core.protobuf import error_codes_pb2, meta_graph_pb2
from ovserve.frontends._generated.tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
)
from ovserve.serving.model_instance import VersionStatus
from ovserve.serving.service import ModelMetadata
from ovserve.tensors import DataType, RequestTensor, TensorSpec

SIGNATURE = "serving_default"
METADATA_FIELD = "signature_def"

_DT = types_pb2.DataType
DT_TO_DATATYPE: dict[types_pb2.DataType.ValueType, DataType] = {
    _DT.DT_FLOAT: DataType.FP32,
    _DT.DT_DOUBLE: DataType.FP64,
    _DT.DT_HALF: DataType.FP16,
    _DT.DT_INT8: DataType.INT8,
    _DT.DT_INT16: DataType.INT16,
    _DT.DT_INT32: DataType.INT32,
    _DT.DT_INT64: DataType.INT64,
    _DT.DT_UINT8: DataType.UINT8,
    _DT.DT_UINT16: DataType.UINT16,
    _DT.DT_UINT32: DataType.UINT32,
    _DT.DT_UINT64: DataType.UINT64,
    _DT.DT_BOOL: DataType.BOOL,
    _DT.DT_STRING: DataType.BYTES,
}
DATATYPE_TO_DT = {datatype: dt for dt, datatype in DT_TO_DATATYPE.items()}

_TYPED_FIELD: dict[DataType, str] = {
    DataType.FP32: "float_val",
    DataType.FP64: "double_val",
    DataType.INT8: "int_val",
    DataType.INT16: "int_val",
    DataType.INT32: "int_val",
    DataType.UINT8: "int_val",
    DataType.UINT16: "int_val",
    DataType.INT64: "int64_val",
    DataType.UINT32: "uint32_val",
    DataType.UINT64: "uint64_val",
    DataType.BOOL: "bool_val",
    DataType.FP16: "half_val",
    DataType.BYTES: "string_val",
}


def parse_model_spec(spec: model_pb2.ModelSpec, has_spec: bool) -> tuple[str, int | None]:
    """Model name and version (None: default).

    Like OVMS, ``signature_name`` and ``version_label`` are ignored: a model has one signature.
    """
    if not has_spec:
        raise InvalidInput(code=ErrorCode.MODEL_SPEC_MISSING)
    if not spec.name:
        raise ModelNotFound()
    version = spec.version.value if spec.HasField("version") else None
    return spec.name, version or None


def check_metadata_fields(fields: Sequence[str]) -> None:
    """OVMS answers exactly one ``metadata_field``, ``signature_def``; else INVALID_ARGUMENT."""
    if list(fields) != [METADATA_FIELD]:
        raise InvalidInput(code=ErrorCode.INVALID_SIGNATURE_DEF)


def datatype_of(dtype: types_pb2.DataType.ValueType, input_name: str) -> DataType:
    """A TensorProto dtype as a DataType, or INVALID_PRECISION."""
    try:
        return DT_TO_DATATYPE[dtype]
    except KeyError:
        name = _DT.Name(dtype) if dtype in _DT.values() else str(int(dtype))
        raise InvalidInput(
            f"Unsupported dtype {name}; input name: {input_name}", ErrorCode.INVALID_PRECISION
        ) from None


def decode_tensor(
    name: str, proto: tensor_pb2.TensorProto, content: memoryview | None = None
) -> RequestTensor:
    """One input: ``tensor_content`` (raw; ``content`` when read apart) or a typed ``*_val``."""
    datatype = datatype_of(proto.dtype, name)
    shape = tuple(dim.size for dim in proto.tensor_shape.dim)
    if datatype is DataType.BYTES:
        return RequestTensor(name, datatype, shape, list(proto.string_val))
    raw = proto.tensor_content if content is None else content
    if raw:
        return RequestTensor(name, datatype, shape, raw)
    values = getattr(proto, _TYPED_FIELD[datatype])
    data: npt.NDArray[Any]
    try:
        if datatype is DataType.FP16:
            # half_val carries each half's bit pattern in an int32.
            data = np.array(values, dtype=np.uint16).view(np.float16)
        else:
            data = np.array(values, dtype=datatype.numpy_dtype)
    except OverflowError:
        raise InvalidInput(
            f"Value out of range for {datatype.value}; input name: {name}",
            ErrorCode.INVALID_VALUE_COUNT,
        ) from None
    return RequestTensor(name, datatype, shape, data)


def encode_tensor(array: npt.NDArray[Any]) -> tensor_pb2.TensorProto:
    """An output as a TensorProto with ``tensor_content`` (``string_val`` for BYTES)."""
    datatype = DataType.from_numpy(array.dtype)
    proto = tensor_pb2.TensorProto(dtype=DATATYPE_TO_DT[datatype])
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    if datatype is DataType.BYTES:
        proto.string_val.extend(
            value if isinstance(value, bytes) else str(value).encode() for value in array.flat
        )
    else:
        proto.tensor_content = array.tobytes()
    return proto


def encode_model_spec(name: str, version: int, signature: bool = True) -> model_pb2.ModelSpec:
    """The reply's model_spec."""
    spec = model_pb2.ModelSpec(name=name, signature_name=SIGNATURE if signature else "")
    spec.version.value = version
    return spec


def _tensor_info(spec: TensorSpec) -> meta_graph_pb2.TensorInfo:
    info = meta_graph_pb2.TensorInfo(name=spec.name, dtype=DATATYPE_TO_DT[spec.datatype])
    for size in spec.shape.metadata_sizes():
        info.tensor_shape.dim.add(size=size)
    return info


def encode_metadata(metadata: ModelMetadata) -> get_model_metadata_pb2.GetModelMetadataResponse:
    """A SignatureDefMap with one ``serving_default`` signature (dynamic dimensions as -1).

    ``method_name`` stays empty, as in OVMS's reply.
    """
    signature = meta_graph_pb2.SignatureDef()
    for spec in metadata.inputs:
        signature.inputs[spec.name].CopyFrom(_tensor_info(spec))
    for spec in metadata.outputs:
        signature.outputs[spec.name].CopyFrom(_tensor_info(spec))
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    signature_map.signature_def[SIGNATURE].CopyFrom(signature)
    response = get_model_metadata_pb2.GetModelMetadataResponse(
        model_spec=encode_model_spec(metadata.name, metadata.version, signature=False)
    )
    response.metadata[METADATA_FIELD].Pack(signature_map)
    return response


def encode_status(
    name: str, statuses: list[VersionStatus]
) -> get_model_status_pb2.GetModelStatusResponse:
    """Each version's state and error, as TF Serving's ModelVersionStatus."""
    response = get_model_status_pb2.GetModelStatusResponse()
    for status in statuses:
        entry = response.model_version_status.add(version=status.version)
        entry.state = get_model_status_pb2.ModelVersionStatus.State.Value(status.state.name)
        if status.error:
            entry.status.error_code = error_codes_pb2.UNKNOWN
            entry.status.error_message = status.error
        else:
            entry.status.error_code = error_codes_pb2.OK
            entry.status.error_message = "OK"
    return response
