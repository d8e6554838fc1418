"""Large bodies read straight into their own buffer, and binary replies written without a join.

The fake transport, the response splitter and the read loop come from ``test_rest_protocol``.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from test_rest_protocol import answers, drain, receive

from ovserve.frontends.rest import body as body_module
from ovserve.frontends.rest.body import BodyReader
from ovserve.frontends.rest.http import Request, Response
from ovserve.frontends.rest.limits import HttpLimits
from ovserve.frontends.rest.protocol import READ_BUFFER_BYTES, HttpProtocol, ServerState

from _fake_transport import FakeTransport

SIZE = 3 * READ_BUFFER_BYTES + 123
BIG = 10 * SIZE


def post(body: bytes, path: bytes = b"/p") -> bytes:
    return b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (path, len(body)) + body


def test_the_rest_of_a_large_body_is_read_into_one_buffer_and_handed_over_uncopied() -> None:
    seen: list[Request] = []

    async def keep(request: Request) -> Response:
        seen.append(request)
        return Response(body=b"%d" % len(request.body))

    async def run() -> tuple[FakeTransport, memoryview]:
        state = ServerState()
        protocol = HttpProtocol(keep, state, BIG)
        transport = FakeTransport()
        protocol.connection_made(transport)  # type: ignore[arg-type]
        body = np.random.default_rng(0).integers(0, 256, SIZE, dtype=np.uint8).tobytes()
        head = post(body)[: -len(body)]
        receive(protocol, head + body[:1000])
        window = protocol.get_buffer(-1)
        # Exactly what is missing: a read never takes bytes of the request after this one.
        assert len(window) == SIZE - 1000
        receive(protocol, body[1000:] + post(b"second", b"/q"))
        await drain(state)
        assert bytes(seen[0].body) == body
        return transport, window

    transport, window = asyncio.run(run())
    first, second = seen
    assert isinstance(first.body, memoryview)
    assert first.body.obj is window.obj  # the buffer the socket read into: no copy
    assert (first.path, second.path, second.body) == ("/p", "/q", b"second")
    assert [answer.body for answer in answers(bytes(transport.output))] == [b"%d" % SIZE, b"6"]


def test_a_body_that_comes_with_its_headers_stays_the_parsers_bytes() -> None:
    seen: list[Request] = []

    async def keep(request: Request) -> Response:
        seen.append(request)
        return Response()

    async def run() -> None:
        state = ServerState()
        protocol = HttpProtocol(keep, state, BIG)
        protocol.connection_made(FakeTransport())  # type: ignore[arg-type]
        receive(protocol, post(b"x" * 1000))
        await drain(state)

    asyncio.run(run())
    assert seen[0].body == b"x" * 1000
    assert isinstance(seen[0].body, bytes)


def test_a_stalled_large_body_gets_408_and_its_buffer_is_dropped() -> None:
    async def run() -> tuple[FakeTransport, HttpProtocol, ServerState]:
        state = ServerState(limits=HttpLimits(body_timeout=0.05, linger=0.01))
        protocol = HttpProtocol(lambda _: asyncio.sleep(0, Response()), state, BIG)
        transport = FakeTransport()
        protocol.connection_made(transport)  # type: ignore[arg-type]
        half = SIZE // 2
        receive(protocol, post(b"y" * SIZE)[:-half])
        assert len(protocol.get_buffer(-1)) == half
        await asyncio.sleep(0.2)
        await drain(state)
        return transport, protocol, state

    transport, protocol, state = asyncio.run(run())
    (answer,) = answers(bytes(transport.output))
    assert answer.status == 408
    # What the client still sends goes to the scratch buffer and is dropped.
    assert protocol.get_buffer(-1) is state.read_buffer


def test_body_reader_copies_what_the_parser_already_delivered() -> None:
    reader = BodyReader()
    reader.expect(10)
    reader.append(b"abc")
    assert reader.open()
    window = reader.window()
    window[:7] = b"defghij"
    assert reader.received(7)
    assert bytes(reader.take()) == b"abcdefghij"
    reader.reset()  # chunked: no declared length, never read directly
    reader.append(b"ab")
    assert not reader.open()
    reader.append(b"cd")
    assert reader.take() == b"abcd"


def test_binary_tail_is_written_after_the_body_in_the_same_write() -> None:
    tensor = np.arange(4, dtype=np.float32)

    async def reply(request: Request) -> Response:
        return Response(body=b'{"a":1}', tail=(tensor.view(np.uint8).data, b"zz"))

    async def run() -> FakeTransport:
        state = ServerState()
        protocol = HttpProtocol(reply, state, BIG)
        transport = FakeTransport()
        protocol.connection_made(transport)  # type: ignore[arg-type]
        receive(protocol, b"GET /t HTTP/1.1\r\nHost: x\r\n\r\n")
        await drain(state)
        return transport

    transport = asyncio.run(run())
    (answer,) = answers(bytes(transport.output))
    assert answer.headers["content-length"] == str(7 + 16 + 2)
    assert answer.body == b'{"a":1}' + tensor.tobytes() + b"zz"
    assert transport.writes == 1


def test_no_memory_for_a_large_body_is_503_and_the_server_keeps_going(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class NoMemory:
        uint8 = np.uint8

        @staticmethod
        def empty(*_: object, **__: object) -> None:
            raise MemoryError

    monkeypatch.setattr(body_module, "np", NoMemory)

    async def run() -> FakeTransport:
        state = ServerState(limits=HttpLimits(linger=0.01))
        protocol = HttpProtocol(lambda _: asyncio.sleep(0, Response()), state, BIG)
        transport = FakeTransport()
        protocol.connection_made(transport)  # type: ignore[arg-type]
        receive(protocol, post(b"z" * SIZE)[:-10])
        await drain(state)
        await asyncio.sleep(0.05)
        return transport

    transport = asyncio.run(run())
    (answer,) = answers(bytes(transport.output))
    assert answer.status == 503
    assert f"no memory for a body of {SIZE} bytes" in answer.json()["error"]
    assert transport.closed
