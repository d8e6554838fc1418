"""Header blocks: HPACK decoding (RFC 7541, the ``hpack`` package) and the few literal blocks
the server sends.

gRPC clients send the same request headers on every call of a connection. Once the dynamic
table holds them, each block is a handful of indexed fields (and literals the encoder chose not
to index, such as ``:path`` for nghttp2), byte-for-byte the same each time; such a block changes
nothing in the table, so its decoding is remembered until a block that may change the table
arrives. The server's own blocks use no table at all: literal fields without
indexing, built once.
"""

from __future__ import annotations

from typing import Final

import hpack

Headers = list[tuple[str, str]]

MAX_REMEMBERED: Final = 64


class HeaderBlockError(Exception):
    """A header block that cannot be decoded: a connection error (COMPRESSION_ERROR)."""


class HeaderDecoder:
    """One connection's HPACK decoder, remembering repeated index-only blocks."""

    def __init__(self, max_header_list_size: int) -> None:
        self._decoder = hpack.Decoder(max_header_list_size=max_header_list_size)
        self._remembered: dict[bytes, Headers] = {}

    def decode(self, block: bytes) -> Headers:
        """The ``(name, value)`` fields of ``block``; HeaderBlockError if it is invalid."""
        known = self._remembered.get(block)
        if known is not None:
            return known
        try:
            fields = self._decoder.decode(block, raw=True)
        except (hpack.HPACKError, IndexError, ValueError) as error:
            raise HeaderBlockError(str(error) or type(error).__name__) from None
        # A value that is not UTF-8 is the call's problem, not the connection's: kept readable.
        headers: Headers = [
            (bytes(name).decode("utf-8", "replace"), bytes(value).decode("utf-8", "replace"))
            for name, value in fields
        ]
        if _leaves_table_alone(block):
            if len(self._remembered) >= MAX_REMEMBERED:
                self._remembered.clear()
            self._remembered[block] = headers
        else:
            self._remembered.clear()
        return headers


def _leaves_table_alone(block: bytes) -> bool:
    """Whether decoding ``block`` cannot change the dynamic table: it holds only indexed fields
    and literals without indexing or never indexed (RFC 7541 §6), no insertion or size update.
    """
    at = 0
    end = len(block)
    try:
        while at < end:
            first = block[at]
            if first & 0x80:  # indexed field
                at = _skip_integer(block, at, 7)
            elif first & 0xE0 == 0:  # literal without indexing / never indexed
                name_index_end = _skip_integer(block, at, 4)
                if first & 0x0F == 0:  # a literal name follows
                    name_index_end = _skip_string(block, name_index_end)
                at = _skip_string(block, name_index_end)
            else:  # insertion (01) or table size update (001)
                return False
    except IndexError:
        return False
    return at == end


def _skip_integer(block: bytes, at: int, prefix_bits: int) -> int:
    """The position after the HPACK integer at ``at``."""
    limit = (1 << prefix_bits) - 1
    if block[at] & limit != limit:
        return at + 1
    at += 1
    while block[at] & 0x80:
        at += 1
    return at + 1


def _skip_string(block: bytes, at: int) -> int:
    """The position after the HPACK string literal at ``at``."""
    length = block[at] & 0x7F
    if length == 0x7F:
        length, shift, at = 0x7F, 0, at + 1
        while True:
            byte = block[at]
            length += (byte & 0x7F) << shift
            shift += 7
            at += 1
            if not byte & 0x80:
                break
        return at + length
    return at + 1 + length


def _integer(value: int, prefix_bits: int, first: int = 0) -> bytes:
    """An HPACK integer with an ``prefix_bits``-bit prefix; ``first`` holds the prefix's flags."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def literal(name: str, value: str | bytes) -> bytes:
    """One field as a literal without indexing and with a literal name, not Huffman-coded."""
    raw_name = name.encode("ascii")
    raw_value = value.encode("ascii") if isinstance(value, str) else value
    return b"\x00" + _integer(len(raw_name), 7) + raw_name + _integer(len(raw_value), 7) + raw_value


STATUS_200: Final = b"\x88"
"""``:status: 200``, entry 8 of the static table."""


def status(code: int) -> bytes:
    """``:status`` as a literal with the static table's name (entry 8), for any code."""
    return b"\x08" + _integer(3, 7) + str(code).encode("ascii")
