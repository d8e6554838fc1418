"""Walking serialized protobuf messages field by field, for the zero-copy request parsers.

Parsing a request with protobuf copies every bytes field into the message, and reading the field
copies it again. For large requests (images: megabytes) those copies cost the event loop about
as much as the rest of the request, so the parsers walk the few fields around the large ones
here and leave the rest to protobuf.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final, NamedTuple

from google.protobuf.message import DecodeError

SPLIT_MIN_BYTES: Final = 64 * 1024
"""Below this size, protobuf's copies cost less than walking the message in Python."""

MAX_WALKED_FIELDS: Final = 1024
"""Fields one parse walks at most (about a millisecond of Python) before leaving it to protobuf."""

VARINT: Final = 0
LENGTH_DELIMITED: Final = 2
_FIXED64: Final = 1
_FIXED32: Final = 5


class Field(NamedTuple):
    """One field of a serialized message; positions index the walked view."""

    number: int
    wire_type: int
    start: int
    """Where its tag begins."""
    payload: int
    """Where its value begins (after the length, for length-delimited fields)."""
    end: int


class TooManyFields(Exception):
    """The walk gave up: protobuf parses many small fields faster than Python walks them."""


class Walk:
    """One parse's walk over a message and the messages inside it, bounded in fields.

    The bound keeps a body of many tiny fields (unpacked values, many short strings) from
    holding the event loop; the caller then falls back to protobuf's own parse.
    """

    def __init__(self, max_fields: int = MAX_WALKED_FIELDS) -> None:
        self._left = max_fields

    def fields(self, view: memoryview) -> Iterator[Field]:
        """The fields of the message in ``view``, in order; DecodeError if it is malformed."""
        position = 0
        end = len(view)
        while position < end:
            self._left -= 1
            if self._left < 0:
                raise TooManyFields
            start = position
            key, position = read_varint(view, position)
            wire_type = key & 7
            if wire_type == VARINT:
                _, position = read_varint(view, position)
            elif wire_type == _FIXED64:
                position += 8
            elif wire_type == LENGTH_DELIMITED:
                length, position = read_varint(view, position)
            elif wire_type == _FIXED32:
                position += 4
            else:
                # Groups (3, 4) are not used by the serving APIs; 6 and 7 do not exist.
                raise DecodeError(f"unsupported wire type {wire_type}")
            payload = position
            if wire_type == LENGTH_DELIMITED:
                position += length
            if position > end:
                raise DecodeError("truncated message")
            yield Field(key >> 3, wire_type, start, payload, position)


def read_varint(view: memoryview, position: int) -> tuple[int, int]:
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


def encode_varint(value: int) -> bytes:
    """``value`` (non-negative) as a base-128 varint."""
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def length_delimited(number: int, payload: bytes) -> bytes:
    """Field ``number`` holding ``payload`` (a message, bytes or string), serialized."""
    return encode_varint(number << 3 | LENGTH_DELIMITED) + encode_varint(len(payload)) + payload
