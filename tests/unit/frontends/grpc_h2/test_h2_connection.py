"""``Http2Connection`` over a fake transport, with the ``h2`` package as the client: the
handshake, PING, both directions of flow control, frame sizes, CONTINUATION, padding, resets,
floods, protocol errors, timeouts and the graceful GOAWAY."""

from __future__ import annotations

import asyncio
import random

import h2.events
import h2.settings
import hpack
import pytest
from _h2_peer import (
    MIB,
    PREFACE,
    FakeTransport,
    Peer,
    Recorder,
    async_test,
    grpc_message,
    limits,
    parse_frames,
    raw_frame,
    request_headers,
)
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from ovserve.frontends.grpc_h2 import connection as conn
from ovserve.frontends.grpc_h2 import frames as f
from ovserve.frontends.grpc_h2.calls import OK_TRAILERS, RESPONSE_HEADERS
from ovserve.frontends.grpc_h2.connection import ServerState
from ovserve.frontends.grpc_h2.header_codec import literal

S = h2.settings.SettingCodes


def goaway_of(peer: Peer) -> GoAwayFrame:
    found = [frame for frame in peer.written_frames() if isinstance(frame, GoAwayFrame)]
    assert len(found) == 1, f"GOAWAY frames written: {found}"
    return found[0]


def answer(peer: Peer, stream_id: int, message: bytes) -> None:
    """The server replies on ``stream_id`` as a unary call does."""
    stream = next(s for s in peer.recorder.streams if s.id == stream_id)
    peer.connection.send_unary(stream, RESPONSE_HEADERS, message, OK_TRAILERS)


# -- handshake and PING ---------------------------------------------------------------------


@async_test
async def test_handshake_settings_window_and_ack() -> None:
    peer = Peer()
    changed = next(e for e in peer.events if isinstance(e, h2.events.RemoteSettingsChanged))
    values = {key: setting.new_value for key, setting in changed.changed_settings.items()}
    assert values == {
        S.ENABLE_PUSH: 0,
        S.MAX_CONCURRENT_STREAMS: conn.MAX_STREAMS,
        S.INITIAL_WINDOW_SIZE: conn.STREAM_WINDOW,
        S.MAX_FRAME_SIZE: conn.MAX_FRAME,
        S.MAX_HEADER_LIST_SIZE: conn.MAX_HEADER_BLOCK,
    }
    (update,) = [e for e in peer.events if isinstance(e, h2.events.WindowUpdated)]
    assert (update.stream_id, update.delta) == (0, conn.CONNECTION_WINDOW - f.DEFAULT_WINDOW)
    assert peer.client.outbound_flow_control_window == conn.CONNECTION_WINDOW
    assert any(isinstance(e, h2.events.SettingsAcknowledged) for e in peer.events)
    acks = [x for x in peer.written_frames() if isinstance(x, SettingsFrame) and "ACK" in x.flags]
    assert len(acks) == 1
    assert peer.connection.peer == "ipv4:127.0.0.1:40123"
    assert not peer.transport.closed


@async_test
async def test_preface_and_frames_arriving_one_byte_per_read() -> None:
    peer = Peer(handshake=False)
    peer.client.initiate_connection()
    peer.client.ping(b"pingpong")
    peer.send(chunk=1)
    peer.pump()
    acks = [e for e in peer.events if isinstance(e, h2.events.PingAckReceived)]
    assert [e.ping_data for e in acks] == [b"pingpong"]
    stream_id = peer.call(b"split everywhere")
    peer.client.data_to_send()
    calls = peer.recorder.calls
    assert calls[stream_id].messages == [(b"split everywhere", False)]


@async_test
async def test_ping_is_acked_with_its_data() -> None:
    peer = Peer()
    peer.client.ping(b"\x00\x01\x02\x03\x04\x05\x06\x07")
    peer.send()
    events = peer.pump()
    assert [e.ping_data for e in events if isinstance(e, h2.events.PingAckReceived)] == [
        b"\x00\x01\x02\x03\x04\x05\x06\x07"
    ]


# -- requests in --------------------------------------------------------------------------


@async_test
async def test_a_unary_exchange_and_its_reply_in_one_write() -> None:
    peer = Peer()
    stream_id = peer.call(b"request", extra=[("x-meta", "value")])
    call = peer.recorder.calls[stream_id]
    assert (call.messages, call.ends) == ([(b"request", False)], 1)
    (stream,) = peer.recorder.streams
    assert ("x-meta", "value") in stream.headers
    writes = peer.transport.writes
    answer(peer, stream_id, b"reply")
    assert peer.transport.writes == writes + 1
    peer.pump()
    reply = peer.replies[stream_id]
    assert reply.headers[":status"] == "200"
    assert (reply.messages, reply.status, reply.ended) == ([b"reply"], 0, True)
    assert not peer.connection.streams


@async_test
async def test_a_large_message_is_read_straight_into_its_buffer() -> None:
    peer = Peer(connection_limits=limits(max_message_bytes=4 * MIB))
    body = random.Random(1).randbytes(3 * MIB)
    stream_id = peer.start_call()
    peer.send_body(stream_id, grpc_message(body), end_stream=True, chunk=256 * 1024)
    assert peer.recorder.calls[stream_id].messages == [(body, False)]
    assert peer.direct_reads > 0


@async_test
async def test_messages_cut_at_random_read_sizes() -> None:
    rng = random.Random(2)
    peer = Peer(connection_limits=limits(max_message_bytes=MIB))
    sent = [rng.randbytes(rng.choice([0, 7, 20_000, 300_000])) for _ in range(12)]
    stream_id = peer.start_call(path="/test.Service/Stream")
    wire = b"".join(grpc_message(body) for body in sent)
    at = 0
    while at < len(wire):
        step = rng.randint(1, 100_000)
        peer.client.send_data(stream_id, wire[at : at + step], end_stream=at + step >= len(wire))
        at += step
        data = peer.client.data_to_send()
        while data:
            size = rng.randint(1, 70_000)
            peer.feed(data[:size])
            data = data[size:]
        peer.pump()
    call = peer.recorder.calls[stream_id]
    assert [body for body, _ in call.messages] == sent
    assert call.ends == 1


@pytest.mark.parametrize("read_size", [256 * 1024, 40_000, 16_393])
@async_test
async def test_runs_of_16_kib_frames_on_interleaved_streams_arrive_intact(read_size: int) -> None:
    """Clients on the default frame size send large messages as runs of equal 16 KiB DATA
    frames, which the server takes a run at a time: the runs here are broken by the other
    stream's frames, PINGs, message boundaries inside a frame and the end of each read."""
    rng = random.Random(read_size)
    peer = Peer(connection_limits=limits(max_message_bytes=MIB))
    sent = {
        peer.start_call(path="/test.Service/Stream"): [
            rng.randbytes(size) for size in (100_000, 7, 250_000, 16_379)
        ],
        peer.start_call(path="/test.Service/Stream"): [rng.randbytes(300_000)],
    }
    left = {sid: b"".join(grpc_message(body) for body in bodies) for sid, bodies in sent.items()}
    pings = 0
    while left:
        sid = rng.choice(sorted(left))
        for _ in range(rng.randint(1, 8)):
            chunk, left[sid] = left[sid][:16_384], left[sid][16_384:]
            peer.client.send_data(sid, chunk, end_stream=not left[sid])
            if not left[sid]:
                del left[sid]
                break
        if rng.random() < 0.3:
            peer.client.ping(pings.to_bytes(8, "big"))
            pings += 1
    peer.feed(peer.client.data_to_send(), chunk=read_size)
    events = peer.pump()
    for sid, bodies in sent.items():
        call = peer.recorder.calls[sid]
        assert [body for body, _ in call.messages] == bodies
        assert call.ends == 1
    assert sum(isinstance(event, h2.events.PingAckReceived) for event in events) == pings


@async_test
async def test_the_server_opens_its_windows_as_data_arrives() -> None:
    """20 MiB on one stream, more than both receive windows: only the server's WINDOW_UPDATEs
    let the client go on sending (``send_body`` fails when a window stays shut)."""
    peer = Peer(connection_limits=limits(max_message_bytes=32 * MIB))
    stream_id = peer.start_call(path="/test.Service/Stream")
    body = bytes(20 * MIB)
    peer.send_body(stream_id, grpc_message(body), end_stream=True)
    assert peer.recorder.calls[stream_id].messages == [(body, False)]
    updates = [e for e in peer.events if isinstance(e, h2.events.WindowUpdated)]
    assert any(e.stream_id == stream_id for e in updates)
    assert sum(e.delta for e in updates if e.stream_id == 0) >= 20 * MIB


@async_test
async def test_a_message_waiting_for_memory_holds_both_windows_until_admitted() -> None:
    """The bytes of a message that waits for the request budget do not reopen the connection's
    window (so one connection holds at most its window of waiting bytes); admission does."""
    peer = Peer(connection_limits=limits(max_message_bytes=32 * MIB))
    stream_id = peer.start_call()
    peer.recorder.streams[0].call.admit_at_once = False  # type: ignore[union-attr]
    body = bytes(12 * MIB)
    message = grpc_message(body)
    first = peer.client.local_flow_control_window(stream_id)
    assert first >= conn.CONNECTION_WINDOW // 2  # enough to reopen the connection's window

    def reopened() -> int:
        return sum(
            e.delta
            for e in peer.events
            if isinstance(e, h2.events.WindowUpdated) and e.stream_id in (0, stream_id)
        )

    before = reopened()
    peer.send_body(stream_id, message[:first])
    assert peer.client.local_flow_control_window(stream_id) == 0
    assert reopened() == before  # held: neither window reopened
    peer.connection.admitted(peer.recorder.streams[0])
    peer.pump()
    assert reopened() >= before + 2 * first  # the connection's and the stream's
    peer.send_body(stream_id, message[first:], end_stream=True)
    assert peer.recorder.calls[stream_id].messages == [(body, False)]
    assert peer.recorder.calls[stream_id].admissions == [len(body)]


@async_test
async def test_messages_waiting_for_memory_do_not_stall_an_admitted_call_on_the_connection() -> (
    None
):
    """Two waiting messages fill their stream windows (16 MiB, the connection's whole window);
    only half of it stays spent, so a third, admitted call still sends its 12 MiB."""
    peer = Peer(connection_limits=limits(max_message_bytes=32 * MIB))
    waiting = []
    for _ in range(2):
        stream_id = peer.start_call()
        peer.recorder.calls[stream_id].admit_at_once = False
        message = grpc_message(bytes(12 * MIB))
        peer.send_body(stream_id, message[: peer.client.local_flow_control_window(stream_id)])
        waiting.append(stream_id)
    admitted = peer.start_call()
    body = bytes(12 * MIB)
    peer.send_body(admitted, grpc_message(body), end_stream=True)
    assert peer.recorder.calls[admitted].messages == [(body, False)]
    assert all(not peer.recorder.calls[w].messages for w in waiting)
    assert all(peer.client.local_flow_control_window(w) == 0 for w in waiting)


@async_test
async def test_padded_data_and_padded_prioritised_headers() -> None:
    peer = Peer()
    stream_id = peer.client.get_next_available_stream_id()
    peer.client.send_headers(stream_id, request_headers(), priority_weight=200)
    (headers,) = parse_frames(peer.client.data_to_send())
    assert isinstance(headers, HeadersFrame)
    assert "PRIORITY" in headers.flags
    headers.flags.add("PADDED")
    headers.pad_length = 9
    peer.feed(headers.serialize())
    peer.client.send_data(stream_id, grpc_message(b"padded"), pad_length=30)
    peer.client.send_data(stream_id, b"", end_stream=True, pad_length=4)
    peer.send()
    call = peer.recorder.calls[stream_id]
    assert (call.messages, call.ends) == ([(b"padded", False)], 1)
    answer(peer, stream_id, b"ok")
    peer.pump()
    assert peer.replies[stream_id].messages == [b"ok"]


@async_test
async def test_headers_continued_in_continuation_frames() -> None:
    peer = Peer(handshake=False)
    peer.client.initiate_connection()
    stream_id = peer.client.get_next_available_stream_id()
    big = "b" * 40_000  # over the 16 KiB frame the client may send before our SETTINGS
    peer.client.send_headers(stream_id, request_headers(extra=[("x-big", big)]))
    data = peer.client.data_to_send()
    assert any(isinstance(x, ContinuationFrame) for x in parse_frames(data[len(PREFACE) :]))
    peer.feed(data, chunk=5000)
    peer.pump()
    (stream,) = peer.recorder.streams
    assert ("x-big", big) in stream.headers
    assert not peer.transport.closed


@async_test
async def test_continued_headers_over_the_limit_end_the_connection() -> None:
    peer = Peer()
    block = literal("x-big", "z" * (conn.MAX_HEADER_BLOCK + 10))
    peer.feed(
        raw_frame(f.HEADERS, 0, 1, block[:30_000])
        + raw_frame(f.CONTINUATION, 0, 1, block[30_000:60_000])
        + raw_frame(f.CONTINUATION, f.END_HEADERS, 1, block[60_000:])
    )
    assert goaway_of(peer).error_code == f.ENHANCE_YOUR_CALM
    assert peer.transport.closed
    assert not peer.recorder.streams


# -- replies out: flow control and frame sizes ----------------------------------------------


@async_test
async def test_a_reply_waits_for_the_clients_stream_window() -> None:
    peer = Peer(client_settings={S.INITIAL_WINDOW_SIZE: 10}, auto_ack=False)
    stream_id = peer.call(b"q")
    message = bytes(range(100))
    answer(peer, stream_id, message)
    peer.pump()
    reply = peer.replies[stream_id]
    assert (len(reply.data), reply.ended, reply.trailers) == (10, False, {})
    peer.client.increment_flow_control_window(50, stream_id)
    peer.send()
    peer.pump()
    assert (len(reply.data), reply.ended) == (60, False)
    peer.client.increment_flow_control_window(1000, stream_id)
    peer.send()
    peer.pump()
    assert (reply.messages, reply.status, reply.ended) == ([message], 0, True)


@async_test
async def test_a_larger_initial_window_in_settings_releases_a_waiting_reply() -> None:
    peer = Peer(client_settings={S.INITIAL_WINDOW_SIZE: 10}, auto_ack=False)
    stream_id = peer.call(b"q")
    answer(peer, stream_id, b"x" * 1000)
    peer.pump()
    assert len(peer.replies[stream_id].data) == 10
    peer.client.update_settings({S.INITIAL_WINDOW_SIZE: 65_535})
    peer.send()
    peer.pump()
    assert peer.replies[stream_id].messages == [b"x" * 1000]


@async_test
async def test_a_reply_waits_for_the_connection_window() -> None:
    peer = Peer(client_settings={S.INITIAL_WINDOW_SIZE: MIB}, auto_ack=False)
    first, second = peer.call(b"1"), peer.call(b"2")
    answer(peer, first, b"a" * 50_000)
    answer(peer, second, b"b" * 50_000)
    peer.pump()
    received = sum(len(peer.replies[s].data) for s in (first, second))
    assert received == f.DEFAULT_WINDOW
    peer.client.increment_flow_control_window(40_000)
    peer.send()
    peer.pump()
    assert peer.replies[first].messages == [b"a" * 50_000]
    assert peer.replies[second].messages == [b"b" * 50_000]


@pytest.mark.parametrize(("max_frame", "size"), [(None, 40_000), (20_000, 70_000)])
@async_test
async def test_reply_data_frames_respect_the_clients_max_frame_size(
    max_frame: int | None, size: int
) -> None:
    settings: dict[int, int] = {S.INITIAL_WINDOW_SIZE: MIB}
    if max_frame is not None:
        settings[S.MAX_FRAME_SIZE] = max_frame
    peer = Peer(client_settings=settings)
    stream_id = peer.call(b"q")
    answer(peer, stream_id, b"m" * size)
    peer.pump()
    reply = peer.replies[stream_id]
    limit = max_frame or f.DEFAULT_MAX_FRAME
    assert max(reply.data_frames) == limit
    assert reply.messages == [b"m" * size]


@async_test
async def test_a_reply_that_fits_one_frame_exactly_leaves_in_one_write() -> None:
    peer = Peer()
    stream_id = peer.call(b"q")
    writes = peer.transport.writes
    answer(peer, stream_id, b"e" * (f.DEFAULT_MAX_FRAME - 5))
    assert peer.transport.writes == writes + 1
    peer.pump()
    assert peer.replies[stream_id].data_frames == [f.DEFAULT_MAX_FRAME]


@async_test
async def test_streamed_replies_drain_as_the_client_reads() -> None:
    peer = Peer(client_settings={S.INITIAL_WINDOW_SIZE: 65_535}, auto_ack=False)
    stream_id = peer.start_call(path="/test.Service/Stream")
    stream = peer.recorder.streams[0]
    peer.connection.send_headers(stream, RESPONSE_HEADERS)
    peer.connection.send_message(stream, b"s" * (2 * conn.DRAINED_BYTES))
    waiting = asyncio.ensure_future(peer.connection.drained(stream))
    await peer.settle()
    assert not waiting.done(), "2 MiB wait for a 64 KiB window"
    peer.auto_ack = True
    for event in list(peer.events):
        if isinstance(event, h2.events.DataReceived):
            peer.client.acknowledge_received_data(event.flow_controlled_length, stream_id)
    peer.send()
    for _ in range(100):
        await peer.settle()
        if waiting.done():
            break
    assert waiting.done()
    peer.connection.send_trailers(stream, OK_TRAILERS)
    peer.pump()
    reply = peer.replies[stream_id]
    assert (reply.messages, reply.status) == ([b"s" * (2 * conn.DRAINED_BYTES)], 0)


@async_test
async def test_a_lost_connection_wakes_a_drain_waiter_and_resets_calls() -> None:
    peer = Peer(auto_ack=False)
    stream_id = peer.start_call(path="/test.Service/Stream")
    stream = peer.recorder.streams[0]
    peer.connection.send_message(stream, bytes(2 * conn.DRAINED_BYTES))
    waiting = asyncio.ensure_future(peer.connection.drained(stream))
    await asyncio.sleep(0)
    peer.connection.connection_lost(None)
    await asyncio.wait_for(waiting, 1)
    assert peer.recorder.calls[stream_id].resets == 1
    assert not peer.state.connections


# -- resets, floods, protocol errors --------------------------------------------------------


@async_test
async def test_rst_stream_resets_the_call_and_later_data_is_ignored() -> None:
    peer = Peer()
    stream_id = peer.start_call()
    peer.client.send_data(stream_id, grpc_message(b"half")[:4])
    peer.send()
    peer.client.reset_stream(stream_id, 8)
    peer.send()
    call = peer.recorder.calls[stream_id]
    assert call.resets == 1
    assert not peer.connection.streams
    peer.feed(raw_frame(f.DATA, f.END_STREAM, stream_id, b"late data"))
    assert (call.messages, call.ends) == ([], 0)
    assert not peer.transport.closed
    second = peer.call(b"next")
    assert peer.recorder.calls[second].messages == [(b"next", False)]


@async_test
async def test_a_stream_window_update_of_zero_resets_only_that_stream() -> None:
    peer = Peer()
    stream_id = peer.start_call()
    peer.feed(raw_frame(f.WINDOW_UPDATE, 0, stream_id, bytes(4)))
    resets = [x for x in peer.written_frames() if isinstance(x, RstStreamFrame)]
    assert [(x.stream_id, x.error_code) for x in resets] == [(stream_id, f.PROTOCOL_ERROR)]
    assert peer.recorder.calls[stream_id].resets == 1
    assert not peer.transport.closed


@async_test
async def test_a_stream_window_past_the_maximum_resets_only_that_stream() -> None:
    peer = Peer()
    stream_id = peer.start_call()
    peer.feed(raw_frame(f.WINDOW_UPDATE, 0, stream_id, f.MAX_WINDOW.to_bytes(4, "big")))
    resets = [x for x in peer.written_frames() if isinstance(x, RstStreamFrame)]
    assert [(x.stream_id, x.error_code) for x in resets] == [(stream_id, f.FLOW_CONTROL_ERROR)]
    assert peer.recorder.calls[stream_id].resets == 1
    assert not peer.transport.closed


@async_test
async def test_a_ping_flood_gets_goaway_enhance_your_calm() -> None:
    peer = Peer()
    for index in range(conn.MAX_PINGS_WITHOUT_CALLS):
        peer.client.ping(index.to_bytes(8, "big"))
    peer.send()
    assert not peer.transport.closed
    peer.call(b"a call between pings starts the count again")
    for index in range(conn.MAX_PINGS_WITHOUT_CALLS):
        peer.client.ping(index.to_bytes(8, "big"))
    peer.send()
    assert not peer.transport.closed
    peer.client.ping(b"one more")
    peer.send()
    assert peer.transport.closed
    peer.pump()
    terminated = peer.terminated()
    assert terminated is not None
    assert terminated.error_code == f.ENHANCE_YOUR_CALM
    assert terminated.additional_data == b"too_many_pings"


@async_test
async def test_a_rapid_reset_flood_gets_goaway_enhance_your_calm() -> None:
    peer = Peer()
    for _ in range(conn.MAX_RESETS_PER_SECOND):
        stream_id = peer.start_call()
        peer.client.reset_stream(stream_id, 8)
        peer.send()
    assert not peer.transport.closed
    assert len(peer.recorder.streams) == conn.MAX_RESETS_PER_SECOND
    stream_id = peer.start_call()
    peer.client.reset_stream(stream_id, 8)
    peer.send()
    assert peer.transport.closed
    away = goaway_of(peer)
    assert (away.error_code, away.last_stream_id) == (f.ENHANCE_YOUR_CALM, stream_id)


@pytest.mark.parametrize(
    "garbage",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS ClientHello
        b"PRX",
    ],
)
@async_test
async def test_a_bad_preface_gets_goaway_protocol_error(garbage: bytes) -> None:
    peer = Peer(handshake=False)
    peer.feed(garbage)
    away = goaway_of(peer)
    assert (away.error_code, away.last_stream_id) == (f.PROTOCOL_ERROR, 0)
    assert peer.transport.closed
    assert not peer.recorder.streams


def _settings(values: dict[int, int]) -> bytes:
    return b"".join(k.to_bytes(2, "big") + v.to_bytes(4, "big") for k, v in values.items())


BAD_FRAMES = {
    "HEADERS on stream 0": (raw_frame(f.HEADERS, f.END_HEADERS, 0, b"\x83"), f.PROTOCOL_ERROR),
    "HEADERS on an even stream": (
        raw_frame(f.HEADERS, f.END_HEADERS, 2, b"\x83"),
        f.PROTOCOL_ERROR,
    ),
    "DATA on stream 0": (raw_frame(f.DATA, 0, 0, b"x"), f.PROTOCOL_ERROR),
    "DATA on an idle stream": (raw_frame(f.DATA, 0, 7, b"x"), f.PROTOCOL_ERROR),
    "a frame over our max size": (
        raw_frame(f.PING, 0, 0, bytes(conn.MAX_FRAME + 1)),
        f.FRAME_SIZE_ERROR,
    ),
    "a SETTINGS of a bad length": (raw_frame(f.SETTINGS, 0, 0, bytes(7)), f.FRAME_SIZE_ERROR),
    "SETTINGS on a stream": (raw_frame(f.SETTINGS, 0, 1, b""), f.PROTOCOL_ERROR),
    "an initial window too large": (
        raw_frame(f.SETTINGS, 0, 0, _settings({f.SETTINGS_INITIAL_WINDOW_SIZE: 1 << 31})),
        f.FLOW_CONTROL_ERROR,
    ),
    "a max frame size too small": (
        raw_frame(f.SETTINGS, 0, 0, _settings({f.SETTINGS_MAX_FRAME_SIZE: 100})),
        f.PROTOCOL_ERROR,
    ),
    "a connection WINDOW_UPDATE of 0": (
        raw_frame(f.WINDOW_UPDATE, 0, 0, bytes(4)),
        f.PROTOCOL_ERROR,
    ),
    "a WINDOW_UPDATE of a bad length": (
        raw_frame(f.WINDOW_UPDATE, 0, 0, bytes(3)),
        f.FRAME_SIZE_ERROR,
    ),
    "a connection window overflow": (
        raw_frame(f.WINDOW_UPDATE, 0, 0, f.MAX_WINDOW.to_bytes(4, "big")),
        f.FLOW_CONTROL_ERROR,
    ),
    "a PING of a bad length": (raw_frame(f.PING, 0, 0, bytes(7)), f.PROTOCOL_ERROR),
    "a PING on a stream": (raw_frame(f.PING, 0, 1, bytes(8)), f.PROTOCOL_ERROR),
    "an RST_STREAM on stream 0": (raw_frame(f.RST_STREAM, 0, 0, bytes(4)), f.PROTOCOL_ERROR),
    "PUSH_PROMISE from a client": (raw_frame(f.PUSH_PROMISE, 0, 1, bytes(4)), f.PROTOCOL_ERROR),
    "an undecodable header block": (
        raw_frame(f.HEADERS, f.END_HEADERS, 1, b"\xff\xff\xff\x0f"),
        f.COMPRESSION_ERROR,
    ),
    "CONTINUATION without HEADERS": (
        raw_frame(f.CONTINUATION, f.END_HEADERS, 1, b"\x83"),
        f.PROTOCOL_ERROR,
    ),
    "another frame inside a header block": (
        raw_frame(f.HEADERS, 0, 1, b"\x83") + raw_frame(f.PING, 0, 0, bytes(8)),
        f.PROTOCOL_ERROR,
    ),
    "padding longer than the frame": (
        raw_frame(f.DATA, f.PADDED, 1, b"\x05abc"),
        f.PROTOCOL_ERROR,
    ),
    "a padded frame without its pad length": (
        raw_frame(f.HEADERS, f.PADDED | f.END_HEADERS, 1, b""),
        f.PROTOCOL_ERROR,
    ),
}


@pytest.mark.parametrize("name", list(BAD_FRAMES))
@async_test
async def test_a_protocol_error_gets_goaway_with_its_code(name: str) -> None:
    frame, code = BAD_FRAMES[name]
    peer = Peer()
    peer.feed(frame)
    assert goaway_of(peer).error_code == code
    assert peer.transport.closed


@async_test
async def test_a_reused_stream_id_is_a_protocol_error() -> None:
    peer = Peer()
    peer.client.send_headers(3, request_headers())  # stream 1 skipped
    peer.send()
    peer.feed(raw_frame(f.HEADERS, f.END_HEADERS, 1, b"\x83\x86"))
    away = goaway_of(peer)
    assert (away.error_code, away.last_stream_id) == (f.PROTOCOL_ERROR, 3)
    assert [s.id for s in peer.recorder.streams] == [3]


@async_test
async def test_priority_and_unknown_frames_are_ignored() -> None:
    peer = Peer()
    peer.feed(raw_frame(f.PRIORITY, 0, 1, bytes(5)) + raw_frame(0x42, 0xFF, 0, b"whatever"))
    stream_id = peer.call(b"still served")
    assert peer.recorder.calls[stream_id].messages == [(b"still served", False)]
    assert not peer.transport.closed


@async_test
async def test_the_reserved_bit_of_a_stream_id_is_ignored() -> None:
    peer = Peer()
    reserved = 0x8000_0000
    peer.feed(
        raw_frame(f.HEADERS, f.END_HEADERS, reserved | 1, hpack.Encoder().encode(request_headers()))
        + raw_frame(f.DATA, f.END_STREAM, reserved | 1, grpc_message(b"served"))
    )
    assert [s.id for s in peer.recorder.streams] == [1]
    assert peer.recorder.calls[1].messages == [(b"served", False)]
    assert not peer.transport.closed


# -- stopping -------------------------------------------------------------------------------


def goaways_of(peer: Peer) -> list[tuple[int, int]]:
    return [
        (x.last_stream_id, x.error_code)
        for x in peer.written_frames()
        if isinstance(x, GoAwayFrame)
    ]


SHUTDOWN_PING_ACK = raw_frame(f.PING, f.ACK, 0, conn.SHUTDOWN_PING)


@async_test
async def test_shutdown_takes_streams_until_its_ping_is_acked_then_refuses() -> None:
    """The first GOAWAY still takes every stream, with a PING; requests the client sent before
    reading it are served. Once the PING is acknowledged, the last GOAWAY names the last stream
    taken, later streams are refused, and the connection closes after the last reply."""
    peer = Peer()
    first = peer.call(b"in flight")
    ids = iter(range(first + 2, 100, 2))
    before, after = next(ids), next(ids)
    peer.client.send_headers(before, request_headers())
    before_bytes = peer.client.data_to_send()
    peer.client.send_headers(after, request_headers(), end_stream=True)
    after_bytes = peer.client.data_to_send()
    peer.connection.shutdown()
    pings = [x for x in peer.written_frames() if isinstance(x, PingFrame) and not x.flags]
    assert [x.opaque_data for x in pings] == [conn.SHUTDOWN_PING]
    assert goaways_of(peer) == [(f.MAX_STREAM_ID, f.NO_ERROR)]
    peer.feed(before_bytes)
    assert [s.id for s in peer.recorder.streams] == [first, before]
    peer.feed(SHUTDOWN_PING_ACK)
    assert goaways_of(peer)[1:] == [(before, f.NO_ERROR)]
    peer.feed(after_bytes)
    resets = [x for x in peer.written_frames() if isinstance(x, RstStreamFrame)]
    assert [(x.stream_id, x.error_code) for x in resets] == [(after, f.REFUSED_STREAM)]
    assert [s.id for s in peer.recorder.streams] == [first, before]
    answer(peer, first, b"done")
    assert not peer.transport.closed, "a call is still in flight"
    peer.feed(raw_frame(f.DATA, f.END_STREAM, before, grpc_message(b"2")))
    answer(peer, before, b"done too")
    assert peer.transport.closed
    replies = [x for x in peer.written_frames() if isinstance(x, DataFrame)]
    assert [(x.stream_id, x.data) for x in replies] == [
        (first, grpc_message(b"done")),
        (before, grpc_message(b"done too")),
    ]


@async_test
async def test_shutdown_without_an_ack_sends_the_last_goaway_after_a_while(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(conn, "SHUTDOWN_PING_SECONDS", 0.01)
    peer = Peer()
    peer.connection.shutdown()
    peer.connection.shutdown()  # a second stop changes nothing
    assert not peer.transport.closed
    await asyncio.sleep(0.05)
    assert goaways_of(peer) == [(f.MAX_STREAM_ID, f.NO_ERROR), (0, f.NO_ERROR)]
    assert peer.transport.closed


@async_test
async def test_abort_cuts_a_connection_whose_close_is_still_flushing() -> None:
    """The end of a graceful stop: a connection closed (GOAWAY) whose client does not read
    stays in the server's set until the transport is aborted."""
    peer = Peer()
    peer.connection.shutdown()
    peer.feed(SHUTDOWN_PING_ACK)
    assert peer.transport.closed
    assert not peer.transport.aborted
    peer.connection.abort()
    assert peer.transport.aborted


@async_test
async def test_the_clients_goaway_stops_new_streams() -> None:
    peer = Peer()
    first = peer.start_call()
    second = peer.client.get_next_available_stream_id()
    peer.client.send_headers(second, request_headers())
    later = peer.client.data_to_send()
    peer.feed(raw_frame(f.GOAWAY, 0, 0, first.to_bytes(4, "big") + bytes(4)))
    peer.feed(later)
    assert [s.id for s in peer.recorder.streams] == [first]
    assert not peer.transport.closed
    peer.feed(raw_frame(f.RST_STREAM, 0, first, bytes(4)))
    assert peer.transport.closed


@async_test
async def test_no_preface_within_the_handshake_timeout_is_cut() -> None:
    peer = Peer(handshake=False, connection_limits=limits(handshake_seconds=0.01))
    peer.feed(PREFACE[:10])
    await asyncio.sleep(0.05)
    assert goaway_of(peer).error_code == f.PROTOCOL_ERROR
    assert peer.transport.aborted


@async_test
async def test_an_idle_connection_is_closed_and_a_busy_one_is_not() -> None:
    quick = limits(handshake_seconds=0.01, idle_seconds=0.03)
    idle, busy = Peer(connection_limits=quick), Peer(connection_limits=quick)
    busy.start_call()
    await asyncio.sleep(0.1)
    away = goaway_of(idle)
    assert (away.error_code, away.additional_data) == (f.NO_ERROR, b"max_idle")
    assert idle.transport.closed
    assert not busy.transport.closed
    assert not [x for x in busy.written_frames() if isinstance(x, GoAwayFrame)]


@async_test
async def test_connections_past_the_cap_are_refused() -> None:
    state = ServerState(Recorder(), limits(max_connections=2))
    first, second = Peer(state=state), Peer(state=state)
    third = Peer(state=state, handshake=False)
    assert not first.transport.closed
    assert not second.transport.closed
    assert third.transport.aborted
    assert not third.transport.output
    assert len(state.connections) == 2
    first.connection.connection_lost(None)
    assert len(state.connections) == 1


@async_test
async def test_a_client_that_does_not_read_is_not_read_from() -> None:
    peer = Peer()
    peer.connection.pause_writing()
    assert peer.transport.paused
    peer.connection.resume_writing()
    assert not peer.transport.paused


@async_test
async def test_window_updates_from_the_server_are_well_formed() -> None:
    peer = Peer(connection_limits=limits(max_message_bytes=16 * MIB))
    stream_id = peer.start_call()
    peer.send_body(stream_id, grpc_message(bytes(10 * MIB)), end_stream=True)
    for frame in peer.written_frames():
        if isinstance(frame, WindowUpdateFrame):
            assert 0 < frame.window_increment <= f.MAX_WINDOW
    assert isinstance(peer.transport, FakeTransport)
