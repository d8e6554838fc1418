"""Zero-copy splitting of ModelInferRequest: same content as protobuf's own parse, no copies."""

from __future__ import annotations

import numpy as np
import pytest
from google.protobuf.message import DecodeError

from ovserve.frontends import protobuf_wire
from ovserve.frontends._generated.kserve import grpc_predict_v2_pb2 as pb
from ovserve.frontends.kserve import grpc_requests, wire


def _request(raw_sizes: list[int]) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="m", model_version="3", id="req-1")
    request.parameters["priority"].int64_param = 7
    for index, size in enumerate(raw_sizes):
        tensor = request.inputs.add(name=f"in{index}", datatype="UINT8", shape=[size])
        tensor.parameters["binary_data_size"].int64_param = size
        request.raw_input_contents.append(bytes((index + i) % 251 for i in range(size)))
    request.outputs.add(name="out")
    return request


def test_large_request_keeps_raw_inputs_as_views_of_the_received_bytes() -> None:
    original = _request([wire.SPLIT_MIN_BYTES, 3, wire.SPLIT_MIN_BYTES * 2])
    data = original.SerializeToString()
    view = wire.parse_infer_request(data)
    assert [bytes(raw) for raw in view.raw_inputs] == list(original.raw_input_contents)
    assert all(isinstance(raw, memoryview) and raw.obj is data for raw in view.raw_inputs)
    expected = pb.ModelInferRequest()
    expected.CopyFrom(original)
    del expected.raw_input_contents[:]
    assert view.message == expected
    assert (view.model_name, view.model_version) == ("m", "3")


def test_small_request_takes_the_plain_parse() -> None:
    original = _request([16])
    view = wire.parse_infer_request(original.SerializeToString())
    assert view.message == original
    assert list(view.raw_inputs) == list(original.raw_input_contents)


def test_decoded_inputs_point_into_the_request_bytes() -> None:
    data = _request([wire.SPLIT_MIN_BYTES]).SerializeToString()
    view = wire.parse_infer_request(data)
    (tensor,) = grpc_requests.decode_inputs(view.message, view.raw_inputs)
    array = np.frombuffer(tensor.data, dtype=np.uint8)  # type: ignore[arg-type]
    assert np.shares_memory(array, np.frombuffer(data, dtype=np.uint8))


@pytest.mark.parametrize(
    "data",
    [
        b"\x3a\xff\xff\xff\x0f" + b"\0" * wire.SPLIT_MIN_BYTES,  # field 7 longer than the body
        b"\x0b" + b"\0" * wire.SPLIT_MIN_BYTES,  # wire type 3 (groups) is not used by the API
        b"\xff" * wire.SPLIT_MIN_BYTES,  # a varint that never ends
    ],
)
def test_malformed_large_bodies_raise_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        wire.parse_infer_request(data)


def test_many_small_fields_are_left_to_protobuf() -> None:
    original = _request([wire.SPLIT_MIN_BYTES])
    for index in range(protobuf_wire.MAX_WALKED_FIELDS):
        original.outputs.add(name=f"out{index}")
    view = wire.parse_infer_request(original.SerializeToString())
    assert view.message == original
    assert list(view.raw_inputs) == list(original.raw_input_contents)
