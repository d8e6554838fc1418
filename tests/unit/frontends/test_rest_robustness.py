"""Hostile HTTP clients over a fake transport: timeouts, connection cap, early 413, back-pressure.

The fake transport and the response splitter come from ``test_rest_protocol``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from test_rest_protocol import LIMIT, answers, drain, echo, receive

from ovserve.frontends.descriptors import grpc_connection_cap
from ovserve.frontends.request_budget import RequestBudget
from ovserve.frontends.rest.http import Request, Response
from ovserve.frontends.rest.limits import HttpLimits, connection_cap
from ovserve.frontends.rest.protocol import Handle, HttpProtocol, ServerState

from _fake_transport import FakeTransport

FAST = HttpLimits(header_timeout=0.05, body_timeout=0.05, keep_alive=5.0, linger=0.01)
GET = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"


def connect(
    state: ServerState, limit: int = LIMIT, handle: Handle = echo
) -> tuple[HttpProtocol, FakeTransport]:
    protocol = HttpProtocol(handle, state, limit)
    transport = FakeTransport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    return protocol, transport


def run(body: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(body())


def test_headers_that_never_finish_get_408_then_close() -> None:
    async def body() -> None:
        state = ServerState(limits=FAST)
        protocol, transport = connect(state)
        receive(protocol, b"GET /a HTTP/1.1\r\nHos")
        await asyncio.sleep(0.03)
        assert transport.output == b""
        await asyncio.sleep(0.06)
        await drain(state)
        (answer,) = answers(bytes(transport.output))
        assert answer.status == 408
        assert "headers" in answer.json()["error"]
        await asyncio.sleep(0.03)
        assert transport.closed

    run(body)


def test_a_header_trickle_does_not_extend_the_header_deadline() -> None:
    async def body() -> None:
        state = ServerState(limits=FAST)
        protocol, transport = connect(state)
        receive(protocol, b"GET /a HTTP/1.1\r\n")
        for _ in range(6):
            await asyncio.sleep(0.02)
            receive(protocol, b"X-a: b\r\n")
        await drain(state)
        assert answers(bytes(transport.output))[0].status == 408

    run(body)


def test_a_stalled_body_gets_408() -> None:
    async def body() -> None:
        # Silences of 0.05 s against a 0.3 s limit: wide enough for a loaded CI machine.
        state = ServerState(limits=HttpLimits(body_timeout=0.3, linger=0.01))
        protocol, transport = connect(state)
        receive(protocol, b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        for _ in range(3):  # a body that keeps coming is not cut off
            await asyncio.sleep(0.05)
            receive(protocol, b"d")
        assert transport.output == b""
        await asyncio.sleep(0.6)
        await drain(state)
        (answer,) = answers(bytes(transport.output))
        assert answer.status == 408
        assert "body" in answer.json()["error"]

    run(body)


def test_at_the_cap_the_oldest_idle_or_stalled_connection_makes_room() -> None:
    async def body() -> None:
        state = ServerState(limits=HttpLimits(max_connections=2))
        stalled, stalled_transport = connect(state)
        receive(stalled, b"GET /a HTTP/1.1\r\nHo")
        _, idle_transport = connect(state)
        _, newcomer = connect(state)
        assert stalled_transport.closed
        assert answers(bytes(stalled_transport.output))[0].status == 408
        assert not idle_transport.closed
        assert not newcomer.closed
        assert len(state.connections) == 2

    run(body)


def test_when_every_connection_is_busy_new_ones_get_503() -> None:
    async def body() -> None:
        state = ServerState(limits=HttpLimits(max_connections=2))
        for _ in range(2):
            protocol, _ = connect(state)
            receive(protocol, b"GET /slow/50 HTTP/1.1\r\nHost: x\r\n\r\n")
        _, refused = connect(state)
        assert refused.closed
        (answer,) = answers(bytes(refused.output))
        assert answer.status == 503
        assert "too many open connections" in answer.json()["error"]
        await drain(state)
        _, later = connect(state)
        assert not later.closed

    run(body)


def test_declared_oversize_body_is_answered_before_any_body_byte() -> None:
    async def body() -> None:
        state = ServerState(limits=FAST)
        protocol, transport = connect(state)
        receive(protocol, b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 2147483648\r\n\r\n")
        await drain(state)
        (answer,) = answers(bytes(transport.output))
        assert answer.status == 413
        assert answer.headers["connection"] == "close"
        receive(protocol, b"x" * 100_000)  # dropped, not buffered or parsed
        await asyncio.sleep(0.03)
        assert transport.closed

    run(body)


def test_chunked_body_is_cut_off_as_soon_as_it_passes_the_limit() -> None:
    async def body() -> None:
        state = ServerState(limits=FAST)
        protocol, transport = connect(state)
        receive(protocol, b"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n%s\r\n" % (40, b"y" * 40)
        receive(protocol, chunk)
        await drain(state)
        assert transport.output == b""
        receive(protocol, chunk)  # 80 > 64: no terminating chunk needed
        await drain(state)
        assert answers(bytes(transport.output))[0].status == 413

    run(body)


def test_replies_the_client_does_not_read_pause_reading() -> None:
    async def body() -> None:
        state = ServerState()
        protocol, transport = connect(state)
        protocol.pause_writing()  # the transport's buffer is past the high-water mark
        assert transport.paused
        receive(protocol, GET * 2)
        await drain(state)
        assert len(answers(bytes(transport.output))) == 1  # the second waits for the client
        protocol.resume_writing()
        await drain(state)
        assert len(answers(bytes(transport.output))) == 2
        assert not transport.paused

    run(body)


def test_large_bodies_wait_for_the_budget_without_being_read() -> None:
    size = 100_000
    release = asyncio.Event

    async def body() -> None:
        gate = release()

        async def slow(request: Request) -> Response:
            await gate.wait()
            return Response(body=b"%d" % len(request.body))

        state = ServerState(budget=RequestBudget(150_000, wait_seconds=5.0))
        head = b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size
        first, first_transport = connect(state, limit=10**9, handle=slow)
        second, second_transport = connect(state, limit=10**9, handle=slow)
        receive(first, head + b"x" * size)
        receive(second, head)
        assert second_transport.paused  # waits in line: its body stays with the client
        assert state.budget.in_use == size
        gate.set()
        await drain(state)
        await asyncio.sleep(0.01)
        assert not second_transport.paused
        receive(second, b"x" * size)
        await drain(state)
        assert answers(bytes(second_transport.output))[0].body == b"100000"
        assert state.budget.in_use == 0
        assert first_transport.output

    run(body)


def test_a_body_that_waits_too_long_for_the_budget_gets_503() -> None:
    async def body() -> None:
        limits = HttpLimits(body_timeout=1.0, linger=0.01)
        state = ServerState(limits=limits, budget=RequestBudget(100_000, wait_seconds=0.05))
        head = b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 80000\r\n\r\n"
        hog, _ = connect(state, limit=10**9)
        receive(hog, head)  # holds 80 kB and sends no body (for a second)
        waiting, transport = connect(state, limit=10**9)
        receive(waiting, head)
        await asyncio.sleep(0.2)
        await drain(state)
        (answer,) = answers(bytes(transport.output))
        assert answer.status == 503
        assert "memory quota" in answer.json()["error"]
        assert state.budget.in_use == 80_000
        hog.connection_lost(None)
        assert state.budget.in_use == 0

    run(body)


def test_connection_caps_share_the_open_file_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    import resource

    assert connection_cap(10) == 10
    assert grpc_connection_cap(7) == 7
    monkeypatch.setattr(resource, "getrlimit", lambda _: (1024, 4096))
    assert (connection_cap(), grpc_connection_cap()) == (512, 256)
    monkeypatch.setattr(resource, "getrlimit", lambda _: (64, 64))
    assert (connection_cap(), grpc_connection_cap()) == (16, 16)
    monkeypatch.setattr(resource, "getrlimit", lambda _: (1 << 20, 1 << 20))
    assert (connection_cap(), grpc_connection_cap()) == (100_000, 100_000)


def test_shutdown_reads_and_answers_a_request_still_arriving() -> None:
    async def body() -> None:
        state = ServerState()
        protocol, transport = connect(state)
        receive(protocol, b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nabc")
        protocol.shutdown()
        assert not transport.closed
        assert not protocol.settled
        receive(protocol, b"def")
        await drain(state)
        (answer,) = answers(bytes(transport.output))
        assert answer.json()["body"] == "abcdef"
        assert answer.headers["connection"] == "close"
        assert transport.closed

    run(body)
