"""HTTP/2 frames (RFC 9113 §4 and §6): the 9-byte header and the types, flags, settings and
error codes a gRPC server needs. Frames are built as bytes; parsing happens in the connection.
"""

from __future__ import annotations

import struct
from typing import Final

PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
HEADER_BYTES: Final = 9

DATA: Final = 0x0
HEADERS: Final = 0x1
PRIORITY: Final = 0x2
RST_STREAM: Final = 0x3
SETTINGS: Final = 0x4
PUSH_PROMISE: Final = 0x5
PING: Final = 0x6
GOAWAY: Final = 0x7
WINDOW_UPDATE: Final = 0x8
CONTINUATION: Final = 0x9

END_STREAM: Final = 0x1
ACK: Final = 0x1
END_HEADERS: Final = 0x4
PADDED: Final = 0x8
PRIORITY_FLAG: Final = 0x20

SETTINGS_HEADER_TABLE_SIZE: Final = 0x1
SETTINGS_ENABLE_PUSH: Final = 0x2
SETTINGS_MAX_CONCURRENT_STREAMS: Final = 0x3
SETTINGS_INITIAL_WINDOW_SIZE: Final = 0x4
SETTINGS_MAX_FRAME_SIZE: Final = 0x5
SETTINGS_MAX_HEADER_LIST_SIZE: Final = 0x6

NO_ERROR: Final = 0x0
PROTOCOL_ERROR: Final = 0x1
INTERNAL_ERROR: Final = 0x2
FLOW_CONTROL_ERROR: Final = 0x3
STREAM_CLOSED: Final = 0x5
FRAME_SIZE_ERROR: Final = 0x6
REFUSED_STREAM: Final = 0x7
CANCEL: Final = 0x8
COMPRESSION_ERROR: Final = 0x9
ENHANCE_YOUR_CALM: Final = 0xB

DEFAULT_WINDOW: Final = 65_535
DEFAULT_MAX_FRAME: Final = 16_384
MAX_FRAME_LIMIT: Final = (1 << 24) - 1
MAX_WINDOW: Final = (1 << 31) - 1
MAX_STREAM_ID: Final = (1 << 31) - 1

HEADER_STRUCT: Final = struct.Struct(">HBBBL")
"""A frame header: length's high 16 bits, its low 8, type, flags, stream (with its R bit)."""
_SETTING: Final = struct.Struct(">HL")
_WORD: Final = struct.Struct(">L")


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    """One frame: header and payload."""
    size = len(payload)
    return HEADER_STRUCT.pack(size >> 8, size & 0xFF, kind, flags, stream) + payload


def frame_header(kind: int, flags: int, stream: int, size: int) -> bytes:
    """The 9-byte header of a frame whose ``size``-byte payload is written separately."""
    return HEADER_STRUCT.pack(size >> 8, size & 0xFF, kind, flags, stream)


def settings_frame(settings: dict[int, int]) -> bytes:
    """A SETTINGS frame carrying ``settings``."""
    return frame(SETTINGS, 0, 0, b"".join(_SETTING.pack(k, v) for k, v in settings.items()))


def parse_settings(payload: bytes) -> list[tuple[int, int]]:
    """The ``(identifier, value)`` pairs of a SETTINGS payload (a multiple of 6 bytes)."""
    return [_SETTING.unpack_from(payload, at) for at in range(0, len(payload), 6)]


def window_update(stream: int, increment: int) -> bytes:
    """A WINDOW_UPDATE frame granting ``increment`` more bytes."""
    return frame(WINDOW_UPDATE, 0, stream, _WORD.pack(increment))


def read_word(payload: bytes, at: int = 0) -> int:
    """The 31-bit value at ``at`` (window increments, stream ids, error codes keep 32)."""
    return int(_WORD.unpack_from(payload, at)[0])


def rst_stream(stream: int, error: int) -> bytes:
    """An RST_STREAM frame closing ``stream`` with ``error``."""
    return frame(RST_STREAM, 0, stream, _WORD.pack(error))


def goaway(last_stream: int, error: int, debug: bytes = b"") -> bytes:
    """A GOAWAY frame: streams above ``last_stream`` were not and will not be processed."""
    return frame(GOAWAY, 0, 0, _WORD.pack(last_stream) + _WORD.pack(error) + debug)
