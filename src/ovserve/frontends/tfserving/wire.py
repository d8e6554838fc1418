"""Zero-copy reading of ``tensor_content`` from a serialized TF Serving PredictRequest.

For large requests each ``inputs`` map entry is walked (see ``protobuf_wire``): its
TensorProto's ``tensor_content`` is kept as a view into the received bytes, and the rest of the
message, rebuilt without those bytes, is parsed by protobuf. Small requests take the plain parse.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from google.protobuf.message import DecodeError

from ovserve.frontends._generated.tensorflow_serving.apis import model_pb2, predict_pb2
from ovserve.frontends.protobuf_wire import (
    LENGTH_DELIMITED,
    SPLIT_MIN_BYTES,
    Field,
    TooManyFields,
    Walk,
    length_delimited,
)

INPUTS: Final = 2
"""Field number of ``PredictRequest.inputs`` (map entries: key = 1, value = 2)."""

TENSOR_CONTENT: Final = 4
"""Field number of ``TensorProto.tensor_content``."""

_KEY: Final = 1
_VALUE: Final = 2


@dataclass(frozen=True, slots=True)
class PredictRequestView:
    """A PredictRequest whose inputs' ``tensor_content`` may be views into its bytes.

    ``contents`` maps an input name to its ``tensor_content``, which the message then lacks;
    inputs not in it keep theirs in the message.
    """

    message: predict_pb2.PredictRequest
    contents: Mapping[str, memoryview]

    @classmethod
    def of(cls, message: predict_pb2.PredictRequest) -> PredictRequestView:
        """Wrap an already-parsed message (tests, small requests)."""
        return cls(message, {})

    @property
    def model_spec(self) -> model_pb2.ModelSpec:
        """The requested model, version and signature (for the request metrics)."""
        return self.message.model_spec


def parse_predict_request(data: bytes) -> PredictRequestView:
    """Parse a serialized PredictRequest, keeping large tensor contents as views of ``data``.

    Raises DecodeError for bytes that are not a valid message.
    """
    if len(data) >= SPLIT_MIN_BYTES:
        try:
            return _split(memoryview(data), Walk())
        except TooManyFields:
            pass
    return PredictRequestView.of(predict_pb2.PredictRequest.FromString(data))


def _split(view: memoryview, walk: Walk) -> PredictRequestView:
    parts: list[bytes | memoryview] = []
    contents: dict[str, memoryview] = {}
    for field in walk.fields(view):
        if field.number != INPUTS or field.wire_type != LENGTH_DELIMITED:
            parts.append(view[field.start : field.end])
            continue
        key, content, entry = _split_entry(_payload(view, field), walk)
        # A later entry for the same name replaces the earlier one whole, as in protobuf.
        if content is None:
            contents.pop(key, None)
            parts.append(view[field.start : field.end])
        else:
            contents[key] = content
            parts.append(length_delimited(INPUTS, entry))
    message = predict_pb2.PredictRequest.FromString(b"".join(parts))
    return PredictRequestView(message, contents)


def _split_entry(entry: memoryview, walk: Walk) -> tuple[str, memoryview | None, bytes]:
    """The entry's name, its tensor_content (None: absent) and the entry without it."""
    key = memoryview(b"")
    content: memoryview | None = None
    parts: list[bytes | memoryview] = []
    for field in walk.fields(entry):
        part: bytes | memoryview = entry[field.start : field.end]
        if field.wire_type == LENGTH_DELIMITED and field.number == _KEY:
            key = _payload(entry, field)
        elif field.wire_type == LENGTH_DELIMITED and field.number == _VALUE:
            # A value sent in pieces is merged by protobuf: the last tensor_content wins.
            found, rest = _split_tensor(_payload(entry, field), walk)
            if found is not None:
                content = found
                part = length_delimited(_VALUE, b"".join(rest))
        parts.append(part)
    try:
        name = str(key, "utf-8")
    except UnicodeDecodeError:
        raise DecodeError("an input name is not valid UTF-8") from None
    return name, content, b"".join(parts)


def _split_tensor(tensor: memoryview, walk: Walk) -> tuple[memoryview | None, list[memoryview]]:
    """The TensorProto's last tensor_content (None: absent) and its other fields."""
    content: memoryview | None = None
    parts: list[memoryview] = []
    for field in walk.fields(tensor):
        if field.number == TENSOR_CONTENT and field.wire_type == LENGTH_DELIMITED:
            content = _payload(tensor, field)
        else:
            parts.append(tensor[field.start : field.end])
    return content, parts


def _payload(view: memoryview, field: Field) -> memoryview:
    return view[field.payload : field.end]
