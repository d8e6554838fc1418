"""What both KServe codecs (gRPC and REST) share: datatype names and BYTES element framing."""

from __future__ import annotations

import struct
from typing import Any

import numpy.typing as npt

from ovserve.errors import ErrorCode, InvalidInput
from ovserve.tensors import DataType


def datatype_from_wire(name: str, input_name: str) -> DataType:
    """A KServe datatype name as a DataType, or INVALID_PRECISION."""
    datatype = DataType.from_name(name)
    if datatype is None:
        raise InvalidInput(
            f"Unsupported datatype {name!r}; input name: {input_name}", ErrorCode.INVALID_PRECISION
        )
    return datatype


def decode_bytes_elements(buffer: bytes | memoryview, input_name: str) -> list[bytes]:
    """Split a raw BYTES buffer: each element is a 4-byte little-endian length, then the bytes."""
    elements = []
    offset = 0
    view = memoryview(buffer)
    while offset < len(view):
        if offset + 4 > len(view):
            raise InvalidInput(
                f"Truncated BYTES element length; input name: {input_name}",
                ErrorCode.INVALID_CONTENT_SIZE,
            )
        (length,) = struct.unpack_from("<I", view, offset)
        offset += 4
        if offset + length > len(view):
            raise InvalidInput(
                f"BYTES element longer than the buffer; input name: {input_name}",
                ErrorCode.INVALID_CONTENT_SIZE,
            )
        elements.append(bytes(view[offset : offset + length]))
        offset += length
    return elements


def encode_bytes_elements(values: npt.NDArray[Any]) -> bytes:
    """Length-prefixed concatenation of BYTES elements."""
    parts = []
    for value in values.reshape(-1):
        data = value if isinstance(value, bytes) else str(value).encode()
        parts.append(struct.pack("<I", len(data)))
        parts.append(data)
    return b"".join(parts)
