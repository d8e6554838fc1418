"""gRPC calls on the native transport: grpcio method handlers dispatched by ``:path``, their
statuses as trailers, deadlines, compressed requests and refusals, with the ``h2`` package as
the client."""

from __future__ import annotations

import asyncio
import gzip
import logging
import zlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import unquote

import grpc
import h2.events
import pytest
from _h2_peer import MIB, Peer, Reply, async_test, grpc_message, limits

from ovserve.frontends.grpc_h2 import calls
from ovserve.frontends.grpc_h2.calls import CallContext, Dispatcher, parse_timeout
from ovserve.frontends.request_budget import RequestBudget

LIMIT = MIB
NON_ASCII_DETAILS = "model «résumé» \u2013 100% not found\n"


class Handlers:
    """The methods the test server offers, recording what they saw."""

    def __init__(self) -> None:
        self.cancelled: list[str] = []
        self.contexts: list[CallContext] = []
        self.stream_requests: list[str] = []
        self.gate = asyncio.Event()

    def methods(self) -> dict[str, grpc.RpcMethodHandler]:
        unary = {
            "Echo": self.echo,
            "Abort": self.abort,
            "Slow": self.slow,
            "SetCode": self.set_code,
            "Boom": self.boom,
            "Context": self.context,
        }
        found = {
            f"/test.Service/{name}": grpc.unary_unary_rpc_method_handler(
                behavior, request_deserializer=_decode, response_serializer=str.encode
            )
            for name, behavior in unary.items()
        }
        found["/test.Service/Raw"] = grpc.unary_unary_rpc_method_handler(self.raw)
        found["/test.Service/Stream"] = grpc.stream_stream_rpc_method_handler(
            self.stream, request_deserializer=_decode, response_serializer=str.encode
        )
        found["/test.Service/ServerStream"] = grpc.unary_stream_rpc_method_handler(self.raw)
        return found

    async def echo(self, request: str, context: CallContext) -> str:
        return f"echo:{request}"

    async def raw(self, request: bytes, context: CallContext) -> bytes:
        return bytes(request)[::-1]

    async def abort(self, request: str, context: CallContext) -> str:
        await context.abort(grpc.StatusCode.NOT_FOUND, NON_ASCII_DETAILS)

    async def slow(self, request: str, context: CallContext) -> str:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            self.cancelled.append(request)
            raise
        return "too late"

    async def set_code(self, request: str, context: CallContext) -> str:
        context.set_code(grpc.StatusCode.FAILED_PRECONDITION)
        context.set_details("not now")
        return "ignored"

    async def boom(self, request: str, context: CallContext) -> str:
        raise RuntimeError("a bug in the handler")

    async def context(self, request: str, context: CallContext) -> str:
        self.contexts.append(context)
        remaining = context.time_remaining()
        return repr(
            (
                sorted(context.invocation_metadata()),
                context.peer(),
                None if remaining is None else round(remaining),
                context.cancelled(),
            )
        )

    async def stream(
        self, requests: AsyncIterator[str], context: CallContext
    ) -> AsyncIterator[str]:
        try:
            async for request in requests:
                self.stream_requests.append(request)
                if request == "abort":
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad one")
                if request == "wait":
                    await asyncio.sleep(30)
                if request == "gate":
                    await self.gate.wait()
                yield f"re:{request[:20]}"
        except asyncio.CancelledError:
            self.cancelled.append("stream")
            raise


def _decode(data: bytes) -> str:
    return bytes(data).decode()


def served(
    max_message_bytes: int = LIMIT, budget: RequestBudget | None = None
) -> tuple[Peer, Handlers]:
    handlers = Handlers()
    dispatcher = Dispatcher(handlers.methods(), budget)
    peer = Peer(dispatcher, connection_limits=limits(max_message_bytes=max_message_bytes))
    return peer, handlers


async def unary(
    peer: Peer,
    payload: bytes,
    method: str = "Echo",
    extra: list[tuple[str, str]] | None = None,
    compressed: bool = False,
) -> Reply:
    stream_id = peer.call(payload, f"/test.Service/{method}", extra or [], compressed)
    await peer.settle()
    return peer.replies[stream_id]


# -- unary calls ----------------------------------------------------------------------------


@async_test
async def test_an_ok_reply() -> None:
    peer, _ = served()
    reply = await unary(peer, b"hello")
    assert reply.headers[":status"] == "200"
    assert reply.headers["content-type"] == "application/grpc"
    assert reply.messages == [b"echo:hello"]
    assert (reply.status, reply.message, reply.ended) == (0, None, True)


@async_test
async def test_a_handler_without_serializers_gets_and_returns_bytes() -> None:
    peer, _ = served()
    reply = await unary(peer, b"\x00\x01\xff", method="Raw")
    assert (reply.messages, reply.status) == ([b"\xff\x01\x00"], 0)


@async_test
async def test_many_calls_on_one_connection() -> None:
    peer, _ = served()
    ids = [peer.call(str(i).encode(), "/test.Service/Echo") for i in range(50)]
    await peer.settle()
    assert [peer.replies[i].messages for i in ids] == [[f"echo:{i}".encode()] for i in range(50)]
    assert not peer.connection.streams


@async_test
async def test_abort_sends_its_status_and_percent_encoded_message() -> None:
    peer, _ = served()
    reply = await unary(peer, b"x", method="Abort")
    assert reply.status == grpc.StatusCode.NOT_FOUND.value[0]
    assert reply.message is not None
    assert reply.message.isascii()
    assert " " in reply.message, "spaces are sent as they are"
    assert "%25" in reply.message, "a percent sign is encoded"
    assert unquote(reply.message) == NON_ASCII_DETAILS
    assert reply.messages == []


def test_percent_encoding_follows_the_grpc_spec() -> None:
    encoded = calls.trailers(grpc.StatusCode.INTERNAL, "a b%c\x7fé~")
    assert b"a b%25c%7F%C3%A9~" in encoded


@async_test
async def test_set_code_without_abort() -> None:
    peer, _ = served()
    reply = await unary(peer, b"x", method="SetCode")
    assert (reply.status, reply.message) == (
        grpc.StatusCode.FAILED_PRECONDITION.value[0],
        "not now",
    )
    assert reply.messages == []


@async_test
async def test_a_failing_handler_is_unknown_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    peer, _ = served()
    with caplog.at_level(logging.ERROR):
        reply = await unary(peer, b"x", method="Boom")
    assert reply.status == grpc.StatusCode.UNKNOWN.value[0]
    assert "a bug in the handler" in caplog.text
    second = await unary(peer, b"after")
    assert second.messages == [b"echo:after"]


@async_test
async def test_an_unknown_method_is_unimplemented_trailers_only() -> None:
    peer, _ = served()
    reply = await unary(peer, b"x", method="Nope")
    assert reply.headers[":status"] == "200"
    assert reply.status == grpc.StatusCode.UNIMPLEMENTED.value[0]
    assert reply.message == "Method not found: /test.Service/Nope"
    assert (reply.trailers, reply.data, reply.ended) == ({}, bytearray(), True)


@async_test
async def test_a_unary_stream_method_is_not_served() -> None:
    peer, _ = served()
    reply = await unary(peer, b"x", method="ServerStream")
    assert reply.status == grpc.StatusCode.UNIMPLEMENTED.value[0]


@async_test
async def test_the_deadline_ends_the_call_and_stops_the_handler() -> None:
    peer, handlers = served()
    stream_id = peer.call(b"late", "/test.Service/Slow", [("grpc-timeout", "30m")])
    await peer.settle()
    assert stream_id not in peer.replies or not peer.replies[stream_id].ended
    await asyncio.sleep(0.06)
    await peer.settle()
    reply = peer.replies[stream_id]
    assert (reply.status, reply.message) == (
        grpc.StatusCode.DEADLINE_EXCEEDED.value[0],
        "Deadline Exceeded",
    )
    assert handlers.cancelled == ["late"]


@async_test
async def test_the_context_tells_metadata_peer_and_time_left() -> None:
    peer, _ = served()
    extra = [("grpc-timeout", "100S"), ("x-meta", "v"), ("x-trace-bin", "AAEC")]
    reply = await unary(peer, b"x", method="Context", extra=extra)
    metadata, address, remaining, cancelled = eval(reply.messages[0].decode())
    assert ("x-meta", "v") in metadata
    assert ("x-trace-bin", "AAEC") in metadata
    assert not [name for name, _ in metadata if name.startswith(":")]
    assert address == "ipv4:127.0.0.1:40123"
    assert remaining in (99, 100)
    assert cancelled is False
    no_deadline = await unary(peer, b"x", method="Context")
    assert eval(no_deadline.messages[0].decode())[2] is None


@async_test
async def test_a_reset_stops_the_handler_and_nothing_is_sent_after() -> None:
    peer, handlers = served()
    stream_id = peer.call(b"gone", "/test.Service/Slow")
    await peer.settle()
    peer.client.reset_stream(stream_id, 8)
    peer.send()
    await peer.settle()
    assert handlers.cancelled == ["gone"]
    assert stream_id not in peer.replies
    assert (await unary(peer, b"next")).messages == [b"echo:next"]


# -- request messages -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [("gzip", gzip.compress), ("deflate", zlib.compress)],
)
@async_test
async def test_a_compressed_request(encoding: str, compress: Any) -> None:
    peer, _ = served()
    payload = b"compressed " * 1000
    reply = await unary(
        peer, compress(payload), extra=[("grpc-encoding", encoding)], compressed=True
    )
    assert reply.messages == [b"echo:" + payload]
    assert reply.status == 0


@async_test
async def test_an_uncompressed_message_on_a_gzip_call_is_taken_as_is() -> None:
    peer, _ = served()
    reply = await unary(peer, b"plain", extra=[("grpc-encoding", "gzip")])
    assert reply.messages == [b"echo:plain"]


@async_test
async def test_an_unknown_compression_is_unimplemented() -> None:
    peer, _ = served()
    reply = await unary(peer, b"zz", extra=[("grpc-encoding", "snappy")], compressed=True)
    assert reply.status == grpc.StatusCode.UNIMPLEMENTED.value[0]
    assert reply.message is not None
    assert "snappy" in reply.message


@async_test
async def test_a_corrupt_compressed_message_is_internal() -> None:
    peer, _ = served()
    reply = await unary(peer, b"not gzip", extra=[("grpc-encoding", "gzip")], compressed=True)
    assert reply.status == grpc.StatusCode.INTERNAL.value[0]


@async_test
async def test_a_compressed_message_inflating_past_the_limit_is_resource_exhausted() -> None:
    peer, _ = served(max_message_bytes=64 * 1024)
    bomb = gzip.compress(bytes(10 * MIB))
    assert len(bomb) < 64 * 1024
    reply = await unary(peer, bomb, extra=[("grpc-encoding", "gzip")], compressed=True)
    assert reply.status == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]


@async_test
async def test_a_message_over_the_limit_is_resource_exhausted_and_the_connection_lives() -> None:
    peer, _ = served(max_message_bytes=1000)
    stream_id = peer.start_call("/test.Service/Echo")
    peer.send_body(stream_id, grpc_message(b"y" * 5000), end_stream=True)
    await peer.settle()
    reply = peer.replies[stream_id]
    assert reply.status == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert reply.message == (
        "Request is larger than the configured limit - message of 5000 bytes; "
        "the limit is 1000 bytes"
    )
    assert (await unary(peer, b"small")).messages == [b"echo:small"]
    assert not peer.transport.closed


@async_test
async def test_two_messages_on_a_unary_call_and_none_at_all() -> None:
    peer, _ = served()
    stream_id = peer.start_call("/test.Service/Echo")
    peer.send_body(stream_id, grpc_message(b"1") + grpc_message(b"2"), end_stream=True)
    await peer.settle()
    assert peer.replies[stream_id].status == grpc.StatusCode.UNIMPLEMENTED.value[0]
    empty = peer.start_call("/test.Service/Echo", end_stream=True)
    await peer.settle()
    assert peer.replies[empty].status == grpc.StatusCode.INTERNAL.value[0]


# -- refused requests -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["abc", "1x", "123456789S", "S", "-1S", "1.5S", "\u00b2S", "\u0661S"]
)
@async_test
async def test_a_bad_grpc_timeout_is_refused_and_the_connection_lives(value: str) -> None:
    peer, _ = served()
    reply = await unary(peer, b"x", extra=[("grpc-timeout", value)])
    assert reply.status == grpc.StatusCode.INTERNAL.value[0]
    assert reply.message is not None
    assert reply.message.startswith("bad grpc-timeout")
    assert not peer.transport.closed
    assert (await unary(peer, b"y")).messages == [b"echo:y"]


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("1H", 3600.0), ("2M", 120.0), ("99999999S", 99999999.0), ("250m", 0.25), ("7u", 7e-6)],
)
def test_grpc_timeout_units(value: str, seconds: float) -> None:
    assert parse_timeout(value) == pytest.approx(seconds)
    assert parse_timeout("3n") == pytest.approx(3e-9)


@async_test
async def test_a_request_that_is_not_post_is_405_unimplemented() -> None:
    peer, _ = served()
    stream_id = peer.client.get_next_available_stream_id()
    headers = [
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/test.Service/Echo"),
        (":authority", "x"),
        ("content-type", "application/grpc"),
    ]
    peer.client.send_headers(stream_id, headers, end_stream=True)
    peer.send()
    await peer.settle()
    reply = peer.replies[stream_id]
    assert reply.headers[":status"] == "405"
    assert reply.status == grpc.StatusCode.UNIMPLEMENTED.value[0]


@async_test
async def test_a_request_that_is_not_grpc_is_415() -> None:
    peer, _ = served()
    stream_id = peer.client.get_next_available_stream_id()
    headers = [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/test.Service/Echo"),
        (":authority", "x"),
        ("content-type", "application/json"),
    ]
    peer.client.send_headers(stream_id, headers)
    peer.client.send_data(stream_id, b"{}", end_stream=True)
    peer.send()
    await peer.settle()
    reply = peer.replies[stream_id]
    assert reply.headers[":status"] == "415"
    assert reply.status == grpc.StatusCode.UNKNOWN.value[0]
    assert (await unary(peer, b"z")).messages == [b"echo:z"]


# -- streaming calls ------------------------------------------------------------------------


@async_test
async def test_a_bidi_stream_answers_each_message_then_ok() -> None:
    peer, _ = served()
    stream_id = peer.start_call("/test.Service/Stream")
    for word in ("one", "two", "three"):
        peer.client.send_data(stream_id, grpc_message(word.encode()))
        peer.send()
        await peer.settle()
    reply = peer.replies[stream_id]
    assert reply.messages == [b"re:one", b"re:two", b"re:three"]
    assert not reply.ended
    peer.client.end_stream(stream_id)
    peer.send()
    await peer.settle()
    assert (reply.status, reply.ended) == (0, True)


@async_test
async def test_a_bidi_stream_aborted_mid_way() -> None:
    peer, _ = served()
    stream_id = peer.start_call("/test.Service/Stream")
    peer.send_body(stream_id, grpc_message(b"ok") + grpc_message(b"abort"))
    await peer.settle()
    reply = peer.replies[stream_id]
    assert reply.messages == [b"re:ok"]
    assert (reply.status, reply.message) == (grpc.StatusCode.INVALID_ARGUMENT.value[0], "bad one")


@async_test
async def test_a_bidi_stream_reset_by_the_client_stops_the_handler() -> None:
    peer, handlers = served()
    stream_id = peer.start_call("/test.Service/Stream")
    peer.send_body(stream_id, grpc_message(b"wait"))
    await peer.settle()
    peer.client.reset_stream(stream_id, 8)
    peer.send()
    await peer.settle()
    assert handlers.cancelled == ["stream"]
    assert not peer.connection.streams


@async_test
async def test_a_bidi_stream_past_its_deadline() -> None:
    peer, handlers = served()
    stream_id = peer.start_call("/test.Service/Stream", extra=[("grpc-timeout", "20m")])
    peer.send_body(stream_id, grpc_message(b"fast") + grpc_message(b"wait"))
    await asyncio.sleep(0.05)
    await peer.settle()
    reply = peer.replies[stream_id]
    assert reply.messages == [b"re:fast"]
    assert reply.status == grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
    assert handlers.cancelled == ["stream"]


def stream_window_updates(peer: Peer, stream_id: int) -> int:
    return sum(
        1
        for event in peer.events
        if isinstance(event, h2.events.WindowUpdated) and event.stream_id == stream_id
    )


@async_test
async def test_a_burst_on_a_stream_waits_for_its_handler_instead_of_failing() -> None:
    """Past MAX_QUEUED_MESSAGES requests waiting for a busy handler, the stream's receive
    window stops being reopened: the client is held back (as grpcio's server does), and every
    request is answered once the handler catches up."""
    peer, handlers = served(max_message_bytes=MIB)
    stream_id = peer.start_call("/test.Service/Stream")
    peer.send_body(stream_id, grpc_message(b"gate"))
    await peer.settle()
    message = grpc_message(b"x" * 100_000)
    sent = 0
    while peer.client.local_flow_control_window(stream_id) >= len(message):
        assert sent < 1000, "the server kept opening the window of a stream that waits"
        peer.send_body(stream_id, message)
        sent += 1
    assert sent > calls.MAX_QUEUED_MESSAGES
    assert handlers.stream_requests == ["gate"]
    updates = stream_window_updates(peer, stream_id)
    handlers.gate.set()
    for _ in range(50):
        await peer.settle()
    assert stream_window_updates(peer, stream_id) > updates, "the window reopens"
    assert peer.client.local_flow_control_window(stream_id) > len(message)
    peer.client.end_stream(stream_id)
    peer.send()
    await peer.settle()
    reply = peer.replies[stream_id]
    assert len(reply.messages) == sent + 1
    assert (reply.status, reply.ended) == (0, True)


@async_test
async def test_many_small_requests_at_once_on_a_stream_are_all_answered() -> None:
    peer, _ = served()
    stream_id = peer.start_call("/test.Service/Stream")
    count = 10 * calls.MAX_QUEUED_MESSAGES
    peer.send_body(stream_id, b"".join(grpc_message(b"m%d" % i) for i in range(count)), True)
    for _ in range(20):
        await peer.settle()
    reply = peer.replies[stream_id]
    assert reply.messages == [b"re:m%d" % i for i in range(count)]
    assert reply.status == 0


# -- the request budget ---------------------------------------------------------------------


@async_test
async def test_a_large_message_waits_for_the_budget_and_runs_once_memory_is_free() -> None:
    budget = RequestBudget(100 * 1024, wait_seconds=5)
    peer, _ = served(budget=budget)
    held = budget.cost(90 * 1024)
    assert budget.try_take(held)  # another request holds most of the budget
    payload = b"x" * (90 * 1024)
    stream_id = peer.call(payload, "/test.Service/Raw")
    await peer.settle()
    assert stream_id not in peer.replies or not peer.replies[stream_id].ended
    budget.give_back(held)
    await asyncio.sleep(0.05)  # the budget's waiter, then the handler, run
    await peer.settle()
    reply = peer.replies[stream_id]
    assert (reply.status, reply.messages) == (0, [payload[::-1]])
    assert budget.in_use == 0  # given back once answered


@async_test
async def test_a_large_message_that_waits_too_long_is_refused_and_the_budget_is_left_whole() -> (
    None
):
    budget = RequestBudget(100 * 1024, wait_seconds=0.05)
    peer, _ = served(budget=budget)
    held = budget.cost(90 * 1024)
    assert budget.try_take(held)
    stream_id = peer.call(b"x" * (90 * 1024), "/test.Service/Raw")
    await asyncio.sleep(0.2)
    await peer.settle()
    reply = peer.replies[stream_id]
    assert reply.status == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert "memory quota" in unquote(reply.message or "")
    budget.give_back(held)
    assert budget.in_use == 0
    small = await unary(peer, b"small")  # the connection goes on
    assert small.messages == [b"echo:small"]
