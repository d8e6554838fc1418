"""The JSON body helpers of the REST APIs: parsing with OVMS's nesting limit, writing."""

from __future__ import annotations

import pytest

from ovserve.errors import ErrorCode, InvalidInput
from ovserve.frontends.json_body import MAX_DEPTH, parse_json


def nested(depth: int, *, inner: str = "1") -> bytes:
    return ("[" * depth + inner + "]" * depth).encode()


def test_plain_objects_parse() -> None:
    assert parse_json(b'{"inputs": [{"data": [1, 2.5]}]}') == {"inputs": [{"data": [1, 2.5]}]}


@pytest.mark.parametrize("depth", [1, MAX_DEPTH])
def test_depth_up_to_the_limit_is_accepted(depth: int) -> None:
    document = parse_json(nested(depth))
    for _ in range(depth):
        document = document[0]
    assert document == 1


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 1000, 250_000])
def test_deeper_nesting_is_a_client_error(depth: int) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_json(nested(depth))
    assert caught.value.code is ErrorCode.JSON_NESTING_DEPTH_EXCEEDED
    assert "100 levels" in caught.value.text


def test_many_shallow_brackets_are_not_deep() -> None:
    body = ("[" + ",".join(["[[1,2],[3,4]]"] * 500) + "]").encode()
    assert len(parse_json(body)) == 500


def test_brackets_inside_strings_do_not_count() -> None:
    body = ('{"id": "' + "[" * 500 + '", "inputs": [[1]]}').encode()
    assert parse_json(body)["inputs"] == [[1]]


def test_escaped_quotes_fall_back_to_walking_the_document() -> None:
    shallow = ('{"id": "\\"' + "[" * 300 + '", "x": [1]}').encode()
    assert parse_json(shallow)["x"] == [1]
    deep = ('{"id": "\\"", "x": ' + nested(MAX_DEPTH + 5).decode() + "}").encode()
    with pytest.raises(InvalidInput) as caught:
        parse_json(deep)
    assert caught.value.code is ErrorCode.JSON_NESTING_DEPTH_EXCEEDED


@pytest.mark.parametrize("body", [b"", b"{", b'{"a": }', b"[1, 2", b"nope", b"\xff\xfe"])
def test_malformed_json_is_a_client_error(body: bytes) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_json(body)
    assert caught.value.code is ErrorCode.JSON_INVALID
    assert caught.value.text.startswith("The file is not valid json - Error: ")
