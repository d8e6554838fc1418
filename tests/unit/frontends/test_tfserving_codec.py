"""TF Serving messages ⇄ domain tensors: TensorProto round trips, model specs, metadata, status."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ovserve.config.shape import Dimension, Shape
from ovserve.errors import ErrorCode, InvalidInput, ModelNotFound
from ovserve.frontends._generated.tensorflow.core.framework import tensor_pb2, types_pb2
from ovserve.frontends._generated.tensorflow.core.protobuf import error_codes_pb2
from ovserve.frontends._generated.tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
)
from ovserve.frontends.tfserving import codec
from ovserve.serving.model_instance import ModelVersionState, VersionStatus
from ovserve.serving.service import ModelMetadata
from ovserve.serving.validation import validate_inputs
from ovserve.tensors import DataType, TensorSpec

DT = types_pb2.DataType
NUMERIC = [t for t in DataType if t is not DataType.BYTES]
TYPED_FIELD = {
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
}


def sample(datatype: DataType) -> np.ndarray[Any, Any]:
    """Six values with the type's extremes."""
    dtype = datatype.numpy_dtype
    if datatype is DataType.BOOL:
        return np.array([True, False, True, True, False, False]).reshape(2, 3)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        values = [int(info.min), int(info.max), 0, 1, int(info.max) // 3, int(info.max) - 1]
        return np.array(values, dtype=dtype).reshape(2, 3)
    return np.array([-1.5, 0.0, 1e-3, 3.25, 65504.0, -2.0], dtype=dtype).reshape(2, 3)


def tensor_proto(array: np.ndarray[Any, Any], *, typed: bool = False) -> tensor_pb2.TensorProto:
    datatype = DataType.from_numpy(array.dtype)
    proto = tensor_pb2.TensorProto(dtype=codec.DATATYPE_TO_DT[datatype])
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    if not typed:
        proto.tensor_content = array.tobytes()
    elif datatype is DataType.FP16:
        proto.half_val.extend(array.reshape(-1).view(np.uint16).tolist())
    else:
        getattr(proto, TYPED_FIELD[datatype]).extend(array.reshape(-1).tolist())
    return proto


def decoded(name: str, proto: tensor_pb2.TensorProto, spec: TensorSpec) -> np.ndarray[Any, Any]:
    return validate_inputs([spec], [codec.decode_tensor(name, proto)])[name]


@pytest.mark.parametrize("typed", [False, True], ids=["tensor_content", "typed_val"])
@pytest.mark.parametrize("datatype", NUMERIC)
def test_round_trip_every_datatype(datatype: DataType, typed: bool) -> None:
    array = sample(datatype)
    proto = tensor_proto(array, typed=typed)
    proto = tensor_pb2.TensorProto.FromString(proto.SerializeToString())
    got = decoded("x", proto, TensorSpec("x", datatype, Shape.of(-1, 3)))
    assert got.dtype == datatype.numpy_dtype
    np.testing.assert_array_equal(got, array)

    out = codec.encode_tensor(array)
    assert out.dtype == codec.DATATYPE_TO_DT[datatype]
    assert [dim.size for dim in out.tensor_shape.dim] == [2, 3]
    np.testing.assert_array_equal(
        np.frombuffer(out.tensor_content, datatype.numpy_dtype).reshape(2, 3), array
    )


def test_strings_round_trip() -> None:
    proto = tensor_pb2.TensorProto(dtype=DT.DT_STRING)
    proto.tensor_shape.dim.add(size=3)
    proto.string_val.extend([b"a", b"", "ż".encode()])
    got = decoded("s", proto, TensorSpec("s", DataType.BYTES, Shape.of(-1)))
    assert got.tolist() == [b"a", b"", "ż".encode()]
    out = codec.encode_tensor(np.array([b"x", "é"], dtype=np.object_))
    assert out.dtype == DT.DT_STRING
    assert list(out.string_val) == [b"x", "é".encode()]
    assert not out.tensor_content


def test_dtype_names_follow_tf() -> None:
    assert codec.DATATYPE_TO_DT[DataType.FP32] == DT.DT_FLOAT
    assert codec.DATATYPE_TO_DT[DataType.FP16] == DT.DT_HALF
    assert codec.DATATYPE_TO_DT[DataType.BYTES] == DT.DT_STRING
    assert set(codec.DATATYPE_TO_DT) == set(DataType)


@pytest.mark.parametrize("dtype", [DT.DT_BFLOAT16, DT.DT_COMPLEX64, DT.DT_INVALID, DT.DT_RESOURCE])
def test_unsupported_dtype_is_a_precision_error(dtype: types_pb2.DataType.ValueType) -> None:
    proto = tensor_pb2.TensorProto(dtype=dtype)
    with pytest.raises(InvalidInput) as caught:
        codec.decode_tensor("x", proto)
    assert caught.value.code is ErrorCode.INVALID_PRECISION
    assert f"Unsupported dtype {DT.Name(dtype)}; input name: x" in caught.value.text


def test_unknown_enum_value_is_a_precision_error() -> None:
    proto = tensor_pb2.TensorProto.FromString(b"\x08\xe7\x07")  # dtype = 999
    with pytest.raises(InvalidInput, match="Unsupported dtype 999; input name: x"):
        codec.decode_tensor("x", proto)


@pytest.mark.parametrize(
    ("datatype", "values"),
    [
        (DataType.UINT8, [256]),
        (DataType.INT8, [-129]),
        (DataType.UINT16, [-1]),
        (DataType.FP16, [70000]),
        (DataType.FP16, [-1]),
    ],
)
def test_typed_values_out_of_range(datatype: DataType, values: list[int]) -> None:
    proto = tensor_pb2.TensorProto(dtype=codec.DATATYPE_TO_DT[datatype])
    proto.tensor_shape.dim.add(size=1)
    field = "half_val" if datatype is DataType.FP16 else TYPED_FIELD[datatype]
    getattr(proto, field).extend(values)
    with pytest.raises(InvalidInput) as caught:
        codec.decode_tensor("x", proto)
    assert caught.value.text.endswith(f"Value out of range for {datatype.value}; input name: x")


def test_garbage_tensor_content_is_a_content_size_error() -> None:
    proto = tensor_pb2.TensorProto(dtype=DT.DT_FLOAT, tensor_content=b"\x01\x02\x03")
    proto.tensor_shape.dim.add(size=1)
    with pytest.raises(InvalidInput) as caught:
        decoded("x", proto, TensorSpec("x", DataType.FP32, Shape.of(1)))
    assert caught.value.text == (
        "Invalid content size of tensor proto - Expected: 4 bytes; Actual: 3 bytes; input name: x"
    )


def test_missing_values_are_a_value_count_error() -> None:
    proto = tensor_pb2.TensorProto(dtype=DT.DT_FLOAT)
    proto.tensor_shape.dim.add(size=2)
    with pytest.raises(InvalidInput) as caught:
        decoded("x", proto, TensorSpec("x", DataType.FP32, Shape.of(2)))
    assert caught.value.code is ErrorCode.INVALID_VALUE_COUNT


def test_negative_dimension() -> None:
    proto = tensor_pb2.TensorProto(dtype=DT.DT_FLOAT)
    proto.tensor_shape.dim.add(size=-1)
    with pytest.raises(InvalidInput, match="Negative or zero dimension size is not acceptable"):
        decoded("x", proto, TensorSpec("x", DataType.FP32, Shape.of(-1)))


# --- model spec ----------------------------------------------------------------------------------


def test_model_spec_with_and_without_version() -> None:
    spec = model_pb2.ModelSpec(name="m")
    assert codec.parse_model_spec(spec, True) == ("m", None)
    spec.version.value = 3
    assert codec.parse_model_spec(spec, True) == ("m", 3)
    spec.version.value = 0
    assert codec.parse_model_spec(spec, True) == ("m", None)
    spec.signature_name = "serving_default"
    assert codec.parse_model_spec(spec, True) == ("m", None)


def test_version_label_is_ignored() -> None:
    spec = model_pb2.ModelSpec(name="m", version_label="stable")
    assert codec.parse_model_spec(spec, True) == ("m", None)


def test_model_spec_errors() -> None:
    with pytest.raises(InvalidInput) as missing:
        codec.parse_model_spec(model_pb2.ModelSpec(), False)
    assert missing.value.text == "model_spec missing in request"
    with pytest.raises(ModelNotFound):
        codec.parse_model_spec(model_pb2.ModelSpec(), True)


@pytest.mark.parametrize("signature", ["", "serving_default", "predict_images"])
def test_signature_name_is_ignored(signature: str) -> None:
    spec = model_pb2.ModelSpec(name="m", signature_name=signature)
    assert codec.parse_model_spec(spec, True) == ("m", None)


@pytest.mark.parametrize("fields", [[], ["signature_def"] * 2, ["x"], ["signature_def", "x"]])
def test_metadata_fields_must_be_exactly_signature_def(fields: list[str]) -> None:
    codec.check_metadata_fields(["signature_def"])
    with pytest.raises(InvalidInput) as caught:
        codec.check_metadata_fields(fields)
    assert (caught.value.code, caught.value.text) == (
        ErrorCode.INVALID_SIGNATURE_DEF,
        "Invalid signature name",
    )


def test_reply_model_spec() -> None:
    spec = codec.encode_model_spec("m", 4)
    assert (spec.name, spec.version.value, spec.signature_name) == ("m", 4, "serving_default")
    assert codec.encode_model_spec("m", 4, signature=False).signature_name == ""


# --- metadata and status -------------------------------------------------------------------------


def test_metadata_signature_def() -> None:
    data = TensorSpec("data", DataType.FP32, Shape.of(1, 3, Dimension(200, 500), -1))
    out = TensorSpec("out", DataType.INT32, Shape.of(1, 2))
    response = codec.encode_metadata(ModelMetadata("m", 2, (1, 2), [data], [out]))
    response = get_model_metadata_pb2.GetModelMetadataResponse.FromString(
        response.SerializeToString()
    )
    assert (response.model_spec.name, response.model_spec.version.value) == ("m", 2)
    packed = response.metadata["signature_def"]
    assert packed.type_url.endswith("tensorflow.serving.SignatureDefMap")
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert packed.Unpack(signatures)
    signature = signatures.signature_def["serving_default"]
    assert signature.method_name == ""  # OVMS leaves it empty
    info = signature.inputs["data"]
    assert (info.name, info.dtype) == ("data", DT.DT_FLOAT)
    assert [dim.size for dim in info.tensor_shape.dim] == [1, 3, -1, -1]
    assert signature.outputs["out"].dtype == DT.DT_INT32
    assert [dim.size for dim in signature.outputs["out"].tensor_shape.dim] == [1, 2]


def test_status() -> None:
    statuses = [
        VersionStatus(1, ModelVersionState.END),
        VersionStatus(2, ModelVersionState.AVAILABLE),
        VersionStatus(3, ModelVersionState.END, "cannot read model file"),
        VersionStatus(4, ModelVersionState.LOADING),
    ]
    response = codec.encode_status("m", statuses)
    state = get_model_status_pb2.ModelVersionStatus.State
    got = [
        (entry.version, entry.state, entry.status.error_code, entry.status.error_message)
        for entry in response.model_version_status
    ]
    assert got == [
        (1, state.END, error_codes_pb2.OK, "OK"),
        (2, state.AVAILABLE, error_codes_pb2.OK, "OK"),
        (3, state.END, error_codes_pb2.UNKNOWN, "cannot read model file"),
        (4, state.LOADING, error_codes_pb2.OK, "OK"),
    ]


@pytest.mark.parametrize("state", list(ModelVersionState))
def test_states_keep_tf_serving_numbers(state: ModelVersionState) -> None:
    response = codec.encode_status("m", [VersionStatus(1, state)])
    assert response.model_version_status[0].state == state.value


@st.composite
def arrays(draw: st.DrawFn) -> np.ndarray[Any, Any]:
    """Arrays of any fixed-size datatype, rank 0 to 4, sizes 1 to 4."""
    datatype = draw(st.sampled_from(NUMERIC))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=1, max_side=4))
    return draw(hnp.arrays(datatype.numpy_dtype, shape))


@given(arrays(), st.booleans())
def test_round_trip_property(array: np.ndarray[Any, Any], typed: bool) -> None:
    datatype = DataType.from_numpy(array.dtype)
    spec = TensorSpec("x", datatype, Shape.of(*([-1] * array.ndim)))
    proto = tensor_pb2.TensorProto.FromString(tensor_proto(array, typed=typed).SerializeToString())
    got = decoded("x", proto, spec)
    assert got.shape == array.shape
    if typed and datatype in (DataType.FP32, DataType.FP64, DataType.FP16):
        np.testing.assert_array_equal(got, array)  # NaN payloads may change in typed fields
    else:
        assert got.tobytes() == array.tobytes()
    out = codec.encode_tensor(got)
    assert out.tensor_content == array.tobytes()
