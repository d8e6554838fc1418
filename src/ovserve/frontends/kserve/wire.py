"""Zero-copy reading of ``raw_input_contents`` from a serialized ModelInferRequest.

Parsing a request with protobuf copies every raw input into the message, and reading
``raw_input_contents[i]`` copies it again. For large requests (images: megabytes) those copies
cost the event loop about as much as the rest of the request. So the top level of the message
is walked here: field 7 (``raw_input_contents``) is kept as views into the received bytes, and
only the other, small fields are parsed by protobuf. Small requests take the plain parse.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from google.protobuf.message import DecodeError

from ovserve.frontends._generated.kserve import grpc_predict_v2_pb2 as pb

RAW_INPUT_CONTENTS: Final = 7
"""Field number of ``ModelInferRequest.raw_input_contents``."""

SPLIT_MIN_BYTES: Final = 64 * 1024
"""Below this size, protobuf's copies cost less than walking the message in Python."""

_LENGTH_DELIMITED: Final = 2


@dataclass(frozen=True, slots=True)
class InferRequestView:
    """A ModelInferRequest whose raw inputs may be views into the bytes it was read from."""

    message: pb.ModelInferRequest
    raw_inputs: Sequence[bytes | memoryview]

    @classmethod
    def of(cls, message: pb.ModelInferRequest) -> InferRequestView:
        """Wrap an already-parsed message (streaming calls, tests)."""
        return cls(message, message.raw_input_contents)

    @property
    def model_name(self) -> str:
        """The requested model."""
        return self.message.model_name

    @property
    def model_version(self) -> str:
        """The requested version ("" for the default)."""
        return self.message.model_version


def parse_infer_request(data: bytes) -> InferRequestView:
    """Parse a serialized ModelInferRequest, keeping large raw inputs as views of ``data``.

    Raises DecodeError for bytes that are not a valid message.
    """
    if len(data) < SPLIT_MIN_BYTES:
        return InferRequestView.of(pb.ModelInferRequest.FromString(data))
    view = memoryview(data)
    others: list[memoryview] = []
    raw: list[memoryview] = []
    position = 0
    end = len(view)
    while position < end:
        start = position
        key, position = _varint(view, position)
        wire_type = key & 7
        if wire_type == 0:
            _, position = _varint(view, position)
        elif wire_type == 1:
            position += 8
        elif wire_type == _LENGTH_DELIMITED:
            length, position = _varint(view, position)
            payload = position
            position += length
        elif wire_type == 5:
            position += 4
        else:
            raise DecodeError(f"unsupported wire type {wire_type}")
        if position > end:
            raise DecodeError("truncated message")
        if key >> 3 == RAW_INPUT_CONTENTS and wire_type == _LENGTH_DELIMITED:
            raw.append(view[payload:position])
        else:
            others.append(view[start:position])
    message = pb.ModelInferRequest.FromString(b"".join(others))
    return InferRequestView(message, raw)


def _varint(view: memoryview, position: int) -> tuple[int, int]:
    """Decode a base-128 varint at ``position``; return it and the position after it."""
    result = 0
    shift = 0
    end = len(view)
    while position < end and shift < 64:
        byte = view[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7
    raise DecodeError("truncated or overlong varint")
