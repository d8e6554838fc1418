"""HPACK decoding with the remembered-block cache, checked against ``hpack``'s own Decoder fed
the same blocks; the server's literal blocks decoded by ``hpack``."""

from __future__ import annotations

import copy
import random
from typing import Any

import hpack
import pytest

from ovserve.frontends.grpc_h2 import header_codec
from ovserve.frontends.grpc_h2.header_codec import (
    STATUS_200,
    HeaderBlockError,
    HeaderDecoder,
    literal,
    status,
)

LIMIT = 64 * 1024
REQUEST = [
    (":method", "POST"),
    (":scheme", "http"),
    (":path", "/inference.GRPCInferenceService/ModelInfer"),
    (":authority", "localhost:9000"),
    ("content-type", "application/grpc"),
    ("te", "trailers"),
    ("user-agent", "grpc-python/1.81"),
]


def plain(decoder: hpack.Decoder, block: bytes) -> list[tuple[str, str]]:
    """``hpack``'s decoding of ``block`` as text pairs."""
    return [(str(name), str(value)) for name, value in decoder.decode(block, raw=False)]


def oracle_decode(blocks: list[bytes]) -> list[list[tuple[str, str]]]:
    decoder = hpack.Decoder(max_header_list_size=LIMIT)
    return [plain(decoder, block) for block in blocks]


def test_repeated_requests_decode_as_the_encoder_meant() -> None:
    encoder = hpack.Encoder()
    blocks = [encoder.encode(REQUEST) for _ in range(5)]
    assert blocks[1] == blocks[2] == blocks[4], "the encoder's steady state is index-only"
    decoder = HeaderDecoder(LIMIT)
    assert [decoder.decode(block) for block in blocks] == [REQUEST] * 5


def test_an_identical_block_after_the_table_changed_is_decoded_afresh() -> None:
    """``\\xbe`` (index 62: the newest dynamic entry) names a different field once a new field
    was added: the remembered decoding must not be reused."""
    encoder = hpack.Encoder()
    first = encoder.encode([("x-id", "one")])
    again = encoder.encode([("x-id", "one")])
    assert again == b"\xbe"
    second = encoder.encode([("x-id", "two")])
    blocks = [first, again, second, again, again]
    decoder = HeaderDecoder(LIMIT)
    got = [decoder.decode(block) for block in blocks]
    assert got == oracle_decode(blocks)
    assert got[3] == [("x-id", "two")]


def test_a_table_size_update_clears_what_was_remembered() -> None:
    encoder = hpack.Encoder()
    blocks = [encoder.encode([("x-a", "1"), ("x-b", "2")])]
    blocks.append(encoder.encode([("x-a", "1"), ("x-b", "2")]))
    encoder.header_table_size = 0  # the next block starts with a size update, emptying the table
    blocks.append(encoder.encode([("x-c", "3")]))
    encoder.header_table_size = 4096
    blocks.append(encoder.encode([("x-d", "4"), ("x-e", "5")]))
    blocks.append(blocks[1])  # index-only again: now naming x-d and x-e
    decoder = HeaderDecoder(LIMIT)
    got = [decoder.decode(block) for block in blocks]
    assert got == oracle_decode(blocks)
    assert got[-1] != got[1]


@pytest.mark.parametrize("seed", range(30))
def test_random_traffic_with_replayed_blocks_matches_hpack(seed: int) -> None:
    """Random requests (new values, repeats, evictions from a small table, never-indexed
    literals whose names come from the dynamic table, Huffman or not), and earlier blocks
    replayed verbatim whenever they decode without changing the table (so the encoder's
    table stays the decoder's). Each decoding must equal ``hpack``'s at that point."""
    rng = random.Random(seed)
    encoder = hpack.Encoder()
    encoder.header_table_size = rng.choice([256, 512, 4096])
    oracle = hpack.Decoder(max_header_list_size=LIMIT)
    decoder = HeaderDecoder(LIMIT)
    values = [f"v{i}" * rng.randint(1, 8) for i in range(12)]
    history: list[bytes] = []
    replayed = 0
    for _ in range(300):
        if history and rng.random() < 0.4:
            block = rng.choice(history)
            probe = copy.deepcopy(oracle)
            try:
                probe.decode(block, raw=False)
            except hpack.HPACKError:
                continue  # an index that no longer exists
            if list(probe.header_table.dynamic_entries) != list(
                oracle.header_table.dynamic_entries
            ):
                continue
            replayed += 1
        else:
            fields: list[tuple[str, str] | hpack.HeaderTuple] = [*REQUEST[:4]]
            for key in range(rng.randint(0, 4)):
                field = (f"x-{key}", rng.choice(values))
                fields.append(
                    hpack.NeverIndexedHeaderTuple(*field) if rng.random() < 0.3 else field
                )
            block = encoder.encode(fields, huffman=rng.random() < 0.5)
        history.append(block)
        assert decoder.decode(block) == plain(oracle, block)
    assert replayed > 10


def test_repeated_blocks_with_unindexed_literals_are_decoded_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A block repeating literals the encoder does not index (a static name past index 14,
    so a multi-byte 4-bit prefix; a literal name) is remembered; one that inserts is not."""
    decoded: list[bytes] = []
    original = hpack.Decoder.decode

    def counting(self: hpack.Decoder, data: bytes, raw: bool = False) -> Any:
        decoded.append(bytes(data))
        return original(self, data, raw)

    monkeypatch.setattr(hpack.Decoder, "decode", counting)
    encoder = hpack.Encoder()
    fields: list[tuple[str, str] | hpack.HeaderTuple] = [
        *REQUEST[:5],
        hpack.NeverIndexedHeaderTuple("user-agent", "grpc-c/1"),
        hpack.NeverIndexedHeaderTuple("x-token", "secret"),
    ]
    blocks = [encoder.encode(fields) for _ in range(4)]
    assert blocks[1] == blocks[2] == blocks[3]
    decoder = HeaderDecoder(LIMIT)
    got = [decoder.decode(block) for block in blocks]
    assert got == [[(str(n), str(v)) for n, v in fields]] * 4
    assert decoded == blocks[:2], "the repeated block is decoded once"
    inserting = encoder.encode([("x-new", "1")])
    decoder.decode(inserting)
    decoder.decode(inserting)
    assert decoded[2:] == [inserting, inserting]


def test_many_distinct_index_only_blocks_overflow_the_memory_safely() -> None:
    encoder = hpack.Encoder()
    names = [(f"x-{i}", str(i)) for i in range(30)]
    table = [encoder.encode([field]) for field in names]
    blocks = list(table)
    combos = [bytes((0x80 | (62 + a), 0x80 | (62 + b))) for a in range(10) for b in range(10)]
    blocks += combos + combos[:5]
    assert len(set(combos)) > header_codec.MAX_REMEMBERED
    decoder = HeaderDecoder(LIMIT)
    assert [decoder.decode(block) for block in blocks] == oracle_decode(blocks)


@pytest.mark.parametrize(
    "block",
    [
        b"\x80",  # index 0
        b"\xff\xff\xff\xff\xff\x0f",  # an index far past the tables
        b"\x00\x85abc",  # a literal cut short
    ],
)
def test_bad_blocks_are_header_block_errors(block: bytes) -> None:
    with pytest.raises(HeaderBlockError):
        HeaderDecoder(LIMIT).decode(block)


def test_a_value_that_is_not_utf8_is_kept_readable_not_a_connection_error() -> None:
    # The block is valid HPACK; only the call that carries the value can be wrong about it.
    assert HeaderDecoder(LIMIT).decode(b"\x00\x01a\x02\xff\xfe") == [("a", "\ufffd\ufffd")]


def test_a_header_list_over_the_limit_is_an_error() -> None:
    block = hpack.Encoder().encode([("x-big", "y" * 2000)])
    with pytest.raises(HeaderBlockError):
        HeaderDecoder(1000).decode(block)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("grpc-status", "0"),
        ("grpc-message", "a%20b"),
        ("x-long", "z" * 300),  # a length past the 7-bit prefix
        ("n" * 200, "v"),
        ("x-empty", ""),
    ],
)
def test_literal_fields_decode_with_hpack(name: str, value: str) -> None:
    decoder = hpack.Decoder()
    assert plain(decoder, literal(name, value)) == [(name, value)]
    assert plain(decoder, literal(name, value.encode())) == [(name, value)]
    assert len(decoder.header_table.dynamic_entries) == 0, "literals must not be indexed"


def test_status_fields_decode_with_hpack() -> None:
    decoder = hpack.Decoder()
    assert plain(decoder, STATUS_200) == [(":status", "200")]
    for code in (200, 204, 400, 405, 415, 503):
        block = status(code) + literal("content-type", "application/grpc")
        assert plain(decoder, block) == [
            (":status", str(code)),
            ("content-type", "application/grpc"),
        ]
    assert len(decoder.header_table.dynamic_entries) == 0


def _indices(block: bytes) -> list[int] | None:
    """The indices of an index-only block (HPACK integers with a 7-bit prefix); None when a
    field of ``block`` is not an indexed one."""
    found = []
    at = 0
    while at < len(block):
        if not block[at] & 0x80:
            return None
        value = block[at] & 0x7F
        at += 1
        if value == 0x7F:
            shift = 0
            while True:
                byte = block[at]
                at += 1
                value += (byte & 0x7F) << shift
                shift += 7
                if not byte & 0x80:
                    break
        found.append(value)
    return found
