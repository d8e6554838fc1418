"""JSON bodies of the REST APIs: parsed with OVMS's nesting limit of 100 levels, written by orjson.

Shared by the KServe and TF Serving REST codecs; the HTTP transport (``rest/``) never reads a
body's content.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import orjson

from ovserve.errors import ErrorCode, InvalidInput

_DUMP_OPTIONS: Final = orjson.OPT_SERIALIZE_NUMPY

MAX_DEPTH: Final = 100
"""OVMS rejects JSON nested deeper than this (``rest_parser.cpp``)."""

_OPEN_SQUARE, _OPEN_CURLY, _CLOSE_SQUARE, _CLOSE_CURLY, _QUOTE = 0x5B, 0x7B, 0x5D, 0x7D, 0x22


def dump_json(payload: Any) -> bytes:
    """JSON bytes; numpy arrays serialize natively."""
    return orjson.dumps(payload, option=_DUMP_OPTIONS)


def parse_json(body: bytes | memoryview) -> Any:
    """Parse a request body; malformed JSON and too-deep nesting are client errors."""
    # A large body arrives as a view of the buffer it was read into; the checks below need bytes.
    data = body if isinstance(body, bytes) else bytes(body)
    # A body with at most MAX_DEPTH brackets cannot nest deeper: the usual case costs two
    # C-level counts and no scan.
    bracket_count = data.count(b"[") + data.count(b"{")
    needs_check = bracket_count > MAX_DEPTH
    if needs_check and b"\\" not in data and _scan_depth(data) > MAX_DEPTH:
        raise _too_deep()
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        if str(error).startswith("depth limit"):
            raise _too_deep() from None
        raise InvalidInput(f"Error: {error}", ErrorCode.JSON_INVALID) from None
    if needs_check and b"\\" in data and _walk_depth(document) > MAX_DEPTH:
        raise _too_deep()
    return document


def _too_deep() -> InvalidInput:
    return InvalidInput(
        f"more than {MAX_DEPTH} levels of arrays and objects",
        ErrorCode.JSON_NESTING_DEPTH_EXCEEDED,
    )


def _scan_depth(data: bytes) -> int:
    """Deepest bracket nesting, ignoring brackets inside strings (valid without escapes)."""
    raw = np.frombuffer(data, dtype=np.uint8)
    positions = np.flatnonzero(
        (raw == _OPEN_SQUARE)
        | (raw == _OPEN_CURLY)
        | (raw == _CLOSE_SQUARE)
        | (raw == _CLOSE_CURLY)
        | (raw == _QUOTE)
    )
    chars = raw[positions]
    inside_string = (np.cumsum(chars == _QUOTE) & 1).astype(bool)
    opens = ((chars == _OPEN_SQUARE) | (chars == _OPEN_CURLY)) & ~inside_string
    closes = ((chars == _CLOSE_SQUARE) | (chars == _CLOSE_CURLY)) & ~inside_string
    steps = opens.astype(np.int32) - closes.astype(np.int32)
    return int(np.cumsum(steps).max()) if steps.size else 0


def _walk_depth(document: Any) -> int:
    """Deepest nesting of a parsed document, stopping once past the limit."""
    deepest = 0
    pending: list[tuple[Any, int]] = [(document, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            return deepest
        pending.extend((child, depth + 1) for child in children if isinstance(child, list | dict))
    return deepest
