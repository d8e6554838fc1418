"""The HTTP/1.1 protocol over a fake transport: framing, keep-alive, pipelining, limits."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from ovserve.frontends.rest.http import Request, Response
from ovserve.frontends.rest.limits import HttpLimits
from ovserve.frontends.rest.protocol import HttpProtocol, ServerState

from _fake_transport import FakeTransport

LIMIT = 64


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


def receive(protocol: HttpProtocol, data: bytes) -> None:
    """Deliver ``data`` as the event loop does: read into the buffers the protocol provides."""
    view = memoryview(data)
    while view:
        buffer = protocol.get_buffer(-1)
        count = min(len(buffer), len(view))
        buffer[:count] = view[:count]
        protocol.buffer_updated(count)
        view = view[count:]


def answers(raw: bytes) -> list[Answer]:
    """Split the written bytes into responses (content-length framing)."""
    found = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        status_line, *lines = head.decode().split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines)
        size = int(headers.get("content-length", "0"))
        found.append(Answer(int(status_line.split()[1]), headers, rest[:size]))
        raw = rest[size:]
    return found


async def echo(request: Request) -> Response:
    """Reports what it received; ``/slow/<ms>`` answers after a delay."""
    if request.path.startswith("/slow/"):
        await asyncio.sleep(int(request.path.rsplit("/", 1)[1]) / 1000)
    if request.path == "/boom":
        raise RuntimeError("handler bug")
    headers = {name.decode(): value.decode() for name, value in request.headers}
    document = {
        "method": request.method,
        "path": request.path,
        "body": bytes(request.body).decode(),
    }
    return Response(body=json.dumps({**document, "headers": headers}).encode())


Handle = Callable[[Request], Awaitable[Response]]


async def drain(state: ServerState) -> None:
    while state.tasks:
        await asyncio.gather(*list(state.tasks))


def exchange(
    *chunks: bytes, handle: Handle = echo, keep_alive_seconds: float = 60.0
) -> tuple[FakeTransport, list[Answer]]:
    async def run() -> FakeTransport:
        state = ServerState(limits=HttpLimits(linger=0.0))
        protocol = HttpProtocol(handle, state, LIMIT, keep_alive_seconds)
        transport = FakeTransport()
        protocol.connection_made(transport)  # type: ignore[arg-type]
        for chunk in chunks:
            receive(protocol, chunk)
            await asyncio.sleep(0)
        await drain(state)
        await asyncio.sleep(0.001)  # the linger after a refusal
        return transport

    transport = asyncio.run(run())
    return transport, answers(bytes(transport.output))


def test_one_request_one_write_keep_alive() -> None:
    transport, (answer,) = exchange(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.status == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["path"] == "/v2/health/live"
    assert "connection" not in answer.headers
    assert transport.writes == 1
    assert not transport.closed


def test_body_headers_and_percent_decoding() -> None:
    raw = (
        b"POST /v2/models/m%C3%B3del/infer?x=1 HTTP/1.1\r\nHost: x\r\n"
        b"Inference-Header-Content-Length: 4\r\nContent-Length: 6\r\n\r\n{}\x00abc"
    )
    _, (answer,) = exchange(raw[:30], raw[30:])
    document = answer.json()
    assert document["path"] == "/v2/models/módel/infer"
    assert document["body"] == "{}\x00abc"
    assert document["headers"]["inference-header-content-length"] == "4"


def test_chunked_body_is_joined() -> None:
    raw = (
        b"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"
    )
    _, (answer,) = exchange(raw)
    assert answer.json()["body"] == "abcdefg"


def test_pipelined_requests_are_answered_in_order() -> None:
    raw = b"GET /slow/30 HTTP/1.1\r\nHost: x\r\n\r\nGET /slow/0 HTTP/1.1\r\nHost: x\r\n\r\n"
    _, replies = exchange(raw)
    assert [reply.json()["path"] for reply in replies] == ["/slow/30", "/slow/0"]


def test_connection_close_and_http10() -> None:
    transport, (answer,) = exchange(b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answer.headers["connection"] == "close"
    assert transport.closed
    transport, (answer,) = exchange(b"GET /a HTTP/1.0\r\n\r\n")
    assert answer.headers["connection"] == "close"
    assert transport.closed


def test_declared_body_over_the_limit_is_413_without_calling_the_handler() -> None:
    called: list[Request] = []

    async def handle(request: Request) -> Response:
        called.append(request)
        return Response()

    body = b"x" * (LIMIT + 1)
    raw = b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    transport, (answer,) = exchange(raw, handle=handle)
    assert answer.status == 413
    assert answer.json()["error"] == (
        f"Request is larger than the configured limit - body of {LIMIT + 1} bytes; "
        f"the limit is {LIMIT} bytes"
    )
    assert answer.headers["connection"] == "close"
    assert transport.closed
    assert called == []


def test_chunked_body_over_the_limit_is_413() -> None:
    chunk = b"%x\r\n%s\r\n" % (40, b"y" * 40)
    raw = b"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 3
    transport, (answer,) = exchange(raw + b"0\r\n\r\n")
    assert answer.status == 413
    assert transport.closed


def test_expect_continue() -> None:
    raw = b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n"
    transport, _ = exchange(raw, b"ok")
    assert bytes(transport.output).startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n")
    too_big = raw.replace(b"Content-Length: 2", b"Content-Length: 1000")
    transport, _ = exchange(too_big)
    assert bytes(transport.output).startswith(b"HTTP/1.1 413 Request Entity Too Large\r\n")
    assert transport.closed


def test_malformed_http_is_400_and_closes() -> None:
    transport, (answer,) = exchange(b"NOT HTTP AT ALL\r\n\r\n")
    assert answer.status == 400
    assert answer.json() == {"error": "Invalid HTTP request"}
    assert transport.closed


def test_head_gets_headers_only() -> None:
    transport, _ = exchange(b"HEAD /a HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = bytes(transport.output).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"content-length: " in head
    assert body == b""


def test_handler_bug_is_500() -> None:
    _, (answer,) = exchange(b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (answer.status, answer.json()) == (500, {"error": "Internal server error"})


class ManualClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock only moves when the test says: timers fire deterministically."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 1000.0

    def time(self) -> float:
        return self.now

    async def advance(self, seconds: float) -> None:
        """Move the clock and let due timers and their callbacks run."""
        self.now += seconds
        for _ in range(3):
            await asyncio.sleep(0)


def test_idle_connections_close_after_the_keep_alive_time() -> None:
    """Closed exactly when ``keep_alive_seconds`` pass after the *last* answer, not before."""

    async def run(loop: ManualClockLoop) -> list[tuple[float, bool]]:
        protocol = HttpProtocol(echo, ServerState(), LIMIT, keep_alive_seconds=60)
        transport = FakeTransport()
        protocol.connection_made(transport)  # type: ignore[arg-type]
        receive(protocol, b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        seen = []
        for step in (30.0, 29.0):  # a second request 30 s in restarts the idle time
            await loop.advance(step)
            seen.append((loop.now, transport.closed))
            if step == 30.0:
                receive(protocol, b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
                await loop.advance(0)
        for step in (31.0 - 0.5, 0.5 + 0.001):
            await loop.advance(step)
            seen.append((loop.now, transport.closed))
        return seen

    loop = ManualClockLoop()
    try:
        seen = loop.run_until_complete(run(loop))
    finally:
        loop.close()
    # 30 s and 59 s after the first answer, 89.5 s (59.5 s after the second): open; 90 s: closed.
    assert [closed for _, closed in seen] == [False, False, False, True]


def test_shutdown_finishes_the_request_in_flight_then_closes() -> None:
    async def run() -> tuple[FakeTransport, FakeTransport]:
        state = ServerState()
        busy, idle = HttpProtocol(echo, state, LIMIT), HttpProtocol(echo, state, LIMIT)
        busy_transport, idle_transport = FakeTransport(), FakeTransport()
        busy.connection_made(busy_transport)  # type: ignore[arg-type]
        idle.connection_made(idle_transport)  # type: ignore[arg-type]
        receive(busy, b"GET /slow/20 HTTP/1.1\r\nHost: x\r\n\r\n")
        for connection in list(state.connections):
            connection.shutdown()
        assert idle_transport.closed
        assert not busy_transport.closed
        await drain(state)
        return busy_transport, idle_transport

    busy_transport, _ = asyncio.run(run())
    (answer,) = answers(bytes(busy_transport.output))
    assert answer.status == 200
    assert answer.headers["connection"] == "close"
    assert busy_transport.closed


def test_upgrade_offers_are_answered_in_http11_then_closed() -> None:
    offer = (
        b"GET /v2 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
    )
    transport, (answer,) = exchange(offer + b"HTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n")
    assert answer.status == 200
    assert transport.closed
    with_body = offer.replace(b"GET", b"POST") + b"Content-Length: 2\r\n\r\n{}"
    transport, (answer,) = exchange(with_body)
    assert answer.status == 400
    assert "upgrade" in answer.json()["error"]
