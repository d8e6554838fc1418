"""Any frames a client sends after a valid start end, at worst, its own connection: nothing
raises out of ``buffer_updated`` (an exception there would be logged by the event loop as a fatal
protocol error), and a connection that was failed says why with a GOAWAY."""

from __future__ import annotations

import asyncio

import grpc
import hpack
from _h2_peer import Peer, grpc_message, raw_frame, request_headers
from hyperframe.frame import GoAwayFrame
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ovserve.frontends.grpc_h2 import frames as f
from ovserve.frontends.grpc_h2.calls import Dispatcher

_STREAMS = st.sampled_from([0, 1, 2, 3, 5, 7, 0x7FFF_FFFF])


@st.composite
def _frame(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 11))
    flags = draw(st.sampled_from([0, f.END_STREAM, f.END_HEADERS, f.PADDED, 0x25, 0xFF]))
    stream = draw(_STREAMS)
    if kind == f.HEADERS and draw(st.booleans()):
        # A valid block now and then, so streams open and calls start.
        payload = hpack.Encoder().encode(request_headers())
    elif kind == f.DATA and draw(st.booleans()):
        payload = grpc_message(draw(st.binary(max_size=40)))[: draw(st.integers(0, 60))]
    else:
        payload = draw(st.binary(max_size=48))
    return raw_frame(kind, flags, stream, payload)


@settings(
    max_examples=300,
    derandomize=True,  # the same examples in every run (5,000 random ones were run clean)
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(_frame(), min_size=1, max_size=12), st.integers(1, 64))
def test_random_frames_never_escape_the_connection(frames: list[bytes], chunk: int) -> None:
    async def body() -> None:
        peer = Peer()
        peer.feed(b"".join(frames), chunk)  # raises if anything escapes buffer_updated
        for _ in range(5):  # calls that started run (their replies are not read back)
            await asyncio.sleep(0)
        if peer.transport.closed and not peer.transport.aborted:
            assert any(isinstance(x, GoAwayFrame) for x in peer.written_frames())

    asyncio.run(body())


async def _echo(request: bytes, context: object) -> bytes:
    return bytes(request)


_METHODS = {"/test.Service/Unary": grpc.unary_unary_rpc_method_handler(_echo)}
_VALUES = st.sampled_from(["", "1S", "0n", "99999999H", "1x", "²S", "gzip", "deflate", "zz"])


@st.composite
def _call(draw: st.DrawFn) -> bytes:
    """A call's HEADERS (metadata drawn from awkward values) and DATA frames, on stream 1."""
    extra = [
        (name, draw(_VALUES))
        for name in draw(st.lists(st.sampled_from(["grpc-timeout", "grpc-encoding", "x-a"])))
    ]
    headers = hpack.Encoder().encode(request_headers(extra=extra))
    flags = f.END_HEADERS | (f.END_STREAM if draw(st.booleans()) else 0)
    out = [raw_frame(f.HEADERS, flags, 1, headers)]
    for _ in range(draw(st.integers(0, 3))):
        compressed = draw(st.booleans())
        payload = grpc_message(draw(st.binary(max_size=40)), compressed)
        cut = draw(st.integers(0, len(payload)))
        out.append(raw_frame(f.DATA, f.END_STREAM if draw(st.booleans()) else 0, 1, payload[:cut]))
    return b"".join(out)


@settings(
    max_examples=300, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(_call(), st.integers(1, 64))
def test_random_calls_raise_nothing_out_of_the_connection_or_their_tasks(
    call: bytes, chunk: int
) -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        errors: list[dict[str, object]] = []
        loop.set_exception_handler(lambda _, context: errors.append(context))
        peer = Peer(Dispatcher(_METHODS))
        peer.feed(call, chunk)
        for _ in range(10):
            await asyncio.sleep(0)
        assert errors == []

    asyncio.run(body())
