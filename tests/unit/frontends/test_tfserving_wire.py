"""Zero-copy splitting of PredictRequest: same content as protobuf's own parse, no copies."""

from __future__ import annotations

import numpy as np
import pytest
from google.protobuf.message import DecodeError

from ovserve.frontends import protobuf_wire
from ovserve.frontends._generated.tensorflow.core.framework import tensor_pb2, types_pb2
from ovserve.frontends._generated.tensorflow_serving.apis import predict_pb2
from ovserve.frontends.tfserving import codec, wire

BIG = protobuf_wire.SPLIT_MIN_BYTES


def _tensor(dtype: int, shape: list[int]) -> tensor_pb2.TensorProto:
    proto = tensor_pb2.TensorProto(dtype=dtype)  # type: ignore[arg-type]
    for size in shape:
        proto.tensor_shape.dim.add(size=size)
    return proto


def _request(content_sizes: list[int]) -> predict_pb2.PredictRequest:
    """A request with raw inputs of these sizes, a typed input and a string input."""
    request = predict_pb2.PredictRequest(output_filter=["out"])
    request.model_spec.name = "m"
    request.model_spec.version.value = 3
    for index, size in enumerate(content_sizes):
        proto = _tensor(types_pb2.DT_UINT8, [size])
        proto.tensor_content = bytes((index + i) % 251 for i in range(size))
        request.inputs[f"raw{index}"].CopyFrom(proto)
    typed = _tensor(types_pb2.DT_FLOAT, [1, 3])
    typed.float_val.extend([1.5, 2.5, 3.5])
    request.inputs["typed"].CopyFrom(typed)
    text = _tensor(types_pb2.DT_STRING, [2])
    text.string_val.extend([b"abc", b"\xff\x00"])
    request.inputs["text"].CopyFrom(text)
    return request


def _entry(key: bytes, value: bytes) -> bytes:
    """One ``inputs`` map entry, serialized by hand (to repeat keys or split values)."""
    return protobuf_wire.length_delimited(
        wire.INPUTS, protobuf_wire.length_delimited(1, key) + value
    )


def _value(proto: tensor_pb2.TensorProto) -> bytes:
    return protobuf_wire.length_delimited(2, proto.SerializeToString())


def _assert_same_as_protobuf(data: bytes) -> wire.PredictRequestView:
    """The view, with its contents put back, equals protobuf's parse; contents point into data."""
    view = wire.parse_predict_request(data)
    assert all(content.obj is data for content in view.contents.values())
    rebuilt = predict_pb2.PredictRequest()
    rebuilt.CopyFrom(view.message)
    for name, content in view.contents.items():
        assert not rebuilt.inputs[name].tensor_content
        rebuilt.inputs[name].tensor_content = bytes(content)
    assert rebuilt == predict_pb2.PredictRequest.FromString(data)
    return view


def test_large_request_keeps_tensor_contents_as_views_of_the_received_bytes() -> None:
    original = _request([BIG, 3, BIG * 2])
    data = original.SerializeToString()
    view = _assert_same_as_protobuf(data)
    assert sorted(view.contents) == ["raw0", "raw1", "raw2"]
    assert all(isinstance(content, memoryview) for content in view.contents.values())
    assert view.message.inputs["typed"] == original.inputs["typed"]
    assert view.message.inputs["text"] == original.inputs["text"]
    assert view.model_spec == original.model_spec
    assert list(view.message.output_filter) == ["out"]


def test_small_request_takes_the_plain_parse() -> None:
    original = _request([16])
    view = wire.parse_predict_request(original.SerializeToString())
    assert view.message == original
    assert not view.contents


def test_decoded_inputs_point_into_the_request_bytes() -> None:
    data = _request([BIG]).SerializeToString()
    view = wire.parse_predict_request(data)
    tensor = codec.decode_tensor("raw0", view.message.inputs["raw0"], view.contents["raw0"])
    array = np.frombuffer(tensor.data, dtype=np.uint8)  # type: ignore[arg-type]
    assert np.shares_memory(array, np.frombuffer(data, dtype=np.uint8))
    typed = codec.decode_tensor("typed", view.message.inputs["typed"], view.contents.get("typed"))
    assert np.asarray(typed.data).tolist() == [1.5, 2.5, 3.5]


def _raw(size: int) -> tensor_pb2.TensorProto:
    proto = _tensor(types_pb2.DT_UINT8, [size])
    proto.tensor_content = b"\x07" * size
    return proto


def _typed() -> tensor_pb2.TensorProto:
    proto = _tensor(types_pb2.DT_FLOAT, [2])
    proto.float_val.extend([1, 2])
    return proto


def test_a_repeated_name_keeps_the_last_entry_as_protobuf_does() -> None:
    raw_then_typed = _entry(b"a", _value(_raw(BIG))) + _entry(b"a", _value(_typed()))
    assert not _assert_same_as_protobuf(raw_then_typed).contents
    typed_then_raw = _entry(b"a", _value(_typed())) + _entry(b"a", _value(_raw(BIG)))
    assert bytes(_assert_same_as_protobuf(typed_then_raw).contents["a"]) == b"\x07" * BIG


def test_a_value_sent_in_pieces_is_merged_as_protobuf_does() -> None:
    shape_only = _tensor(types_pb2.DT_UINT8, [BIG])
    later = tensor_pb2.TensorProto(tensor_content=b"\x09" * BIG)
    data = _entry(b"a", _value(_raw(BIG)) + _value(shape_only) + _value(later))
    assert bytes(_assert_same_as_protobuf(data).contents["a"]) == b"\x09" * BIG


def test_many_small_fields_are_left_to_protobuf() -> None:
    text = _tensor(types_pb2.DT_STRING, [BIG // 4])
    text.string_val.extend([b"ab"] * (BIG // 4))
    request = _request([BIG])
    request.inputs["text"].CopyFrom(text)
    view = wire.parse_predict_request(request.SerializeToString())
    assert view.message == request
    assert not view.contents


@pytest.mark.parametrize(
    "data",
    [
        b"\x12\xff\xff\xff\x0f" + b"\0" * BIG,  # an entry longer than the body
        _entry(b"a", b"\x12\xff\xff\x0f" + b"\0" * BIG),  # a value longer than its entry
        _entry(b"a", protobuf_wire.length_delimited(2, b"\x23" + b"\0" * BIG)),  # group in value
        _entry(b"\xff", _value(_raw(BIG))),  # a name that is not UTF-8
        b"\x0b" + b"\0" * BIG,  # wire type 3 (groups) is not used by the API
        b"\xff" * BIG,  # a varint that never ends
    ],
)
def test_malformed_large_bodies_raise_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        wire.parse_predict_request(data)


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 2**32, 2**63])
def test_varints_round_trip(value: int) -> None:
    encoded = protobuf_wire.encode_varint(value)
    assert protobuf_wire.read_varint(memoryview(encoded), 0) == (value, len(encoded))
