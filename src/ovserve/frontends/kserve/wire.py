"""Zero-copy reading of ``raw_input_contents`` from a serialized ModelInferRequest.

For large requests the top level of the message is walked (see ``protobuf_wire``): field 7
(``raw_input_contents``) is kept as views into the received bytes, and only the other, small
fields are parsed by protobuf. Small requests take the plain parse.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from ovserve.frontends._generated.kserve import grpc_predict_v2_pb2 as pb
from ovserve.frontends.protobuf_wire import LENGTH_DELIMITED, SPLIT_MIN_BYTES, TooManyFields, Walk

RAW_INPUT_CONTENTS: Final = 7
"""Field number of ``ModelInferRequest.raw_input_contents``."""

__all__ = ["RAW_INPUT_CONTENTS", "SPLIT_MIN_BYTES", "InferRequestView", "parse_infer_request"]


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
    if len(data) >= SPLIT_MIN_BYTES:
        try:
            return _split(memoryview(data))
        except TooManyFields:
            pass
    return InferRequestView.of(pb.ModelInferRequest.FromString(data))


def _split(view: memoryview) -> InferRequestView:
    others: list[memoryview] = []
    raw: list[memoryview] = []
    for field in Walk().fields(view):
        if field.number == RAW_INPUT_CONTENTS and field.wire_type == LENGTH_DELIMITED:
            raw.append(view[field.payload : field.end])
        else:
            others.append(view[field.start : field.end])
    message = pb.ModelInferRequest.FromString(b"".join(others))
    return InferRequestView(message, raw)
