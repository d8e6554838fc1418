"""One client connection speaking HTTP/2 (RFC 9113) for gRPC: frames in, streams to calls, replies
out within the client's flow-control windows.

Reads go into buffers the protocol provides (``asyncio.BufferedProtocol``): frames through one
scratch buffer shared by the server's connections, and the body of a large request message
straight into that message's own buffer (:mod:`.stream`). A small unary reply (headers, message
and trailers) leaves in one write.

Bounded against broken or hostile clients: a connection that does not send the HTTP/2 preface
within the handshake timeout, or that holds no call for the idle timeout, is closed; a header
block is capped; a ping or reset flood ends the connection with ENHANCE_YOUR_CALM; a client
that does not read its replies stops being read from.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, cast

import numpy as np

from ovserve.frontends.grpc_h2 import frames as f
from ovserve.frontends.grpc_h2.header_codec import (
    HeaderBlockError,
    HeaderDecoder,
)
from ovserve.frontends.grpc_h2.stream import Stream
from ovserve.frontends.read_wakeup import WAKE_MIN_BYTES, ReadWakeup

log = logging.getLogger(__name__)

STREAM_WINDOW: Final = 8 * 1024 * 1024
"""Receive window of each stream: a 602 KB image tensor arrives without waiting for updates."""
CONNECTION_WINDOW: Final = 16 * 1024 * 1024
MAX_FRAME: Final = 1024 * 1024
"""Largest frame we accept (advertised): fewer frame headers between a large message's bytes."""
MAX_HEADER_BLOCK: Final = 64 * 1024
"""A header block (with its continuations) past this ends the connection."""
MAX_HELD: Final = CONNECTION_WINDOW // 2
"""Waiting messages' bytes for which one connection's window stays spent (the rest of the
window keeps admitted calls on the same connection flowing)."""
MAX_STREAMS: Final = 1000
DIRECT_READ_MIN: Final = 16 * 1024
"""Message bytes still to come from which the kernel reads them straight into the message."""
READ_BUFFER_BYTES: Final = 1024 * 1024
"""The scratch buffer all connections read frames into (one per server). A large request that is
already waiting in the socket (as when the server is busy inferring) comes in one read: a 602 KB
message in 16 KiB frames took four reads and three ``SO_RCVLOWAT`` changes with 256 KiB."""
MAX_PINGS_WITHOUT_CALLS: Final = 100
MAX_RESETS_PER_SECOND: Final = 500
"""Client resets within a second that end the connection (the "rapid reset" attack)."""
DRAINED_BYTES: Final = 1024 * 1024
"""A streaming call sends its next reply once less than this is waiting for the window."""

SHUTDOWN_PING: Final = b"ovserve!"
SHUTDOWN_PING_SECONDS: Final = 1.0
"""How long a stopping server waits for the client to acknowledge its first GOAWAY."""

_unpack_header = f.HEADER_STRUCT.unpack_from

Dispatch = Callable[["Http2Connection", Stream], None]


@dataclass(frozen=True)
class ConnectionLimits:
    """What bounds one connection."""

    max_message_bytes: int
    max_connections: int
    handshake_seconds: float
    idle_seconds: float


@dataclass
class ServerState:
    """What the connections of one server share."""

    dispatch: Dispatch
    limits: ConnectionLimits
    connections: dict[Http2Connection, None] = field(default_factory=dict)
    read_buffer: memoryview = field(
        default_factory=lambda: memoryview(bytearray(READ_BUFFER_BYTES))
    )


class Http2Failure(Exception):
    """A connection error: GOAWAY with ``code``, then close."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


class Http2Connection(asyncio.BufferedProtocol):
    """The server side of one HTTP/2 connection."""

    def __init__(self, state: ServerState) -> None:
        self._state = state
        self._limits = state.limits
        self.max_message_bytes = state.limits.max_message_bytes
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._pending = bytearray()
        self._preface_seen = False
        self._decoder = HeaderDecoder(MAX_HEADER_BLOCK)
        self.streams: dict[int, Stream] = {}
        self._last_stream = 0
        self._continuation: tuple[int, int, bytearray] | None = None
        self._data_stream: Stream | None = None
        self._body_stream: Stream | None = None
        """The stream whose DATA came last: while its message is large and unfinished, the
        socket wakes the loop only once that message's bytes are in (see :mod:`read_wakeup`)."""
        self._wakeup = ReadWakeup(self._loop)
        self._data_left = 0
        self._data_end = False
        self._direct: memoryview | None = None
        self._peer_initial_window = f.DEFAULT_WINDOW
        self._peer_max_frame = f.DEFAULT_MAX_FRAME
        self._send_window = f.DEFAULT_WINDOW
        self._blocked: dict[int, Stream] = {}
        self._receive_window = CONNECTION_WINDOW
        self._receive_unacked = 0
        self._held = 0
        """Bytes of messages waiting for memory whose connection window is not reopened."""
        self._pings = 0
        self._resets = 0
        self._resets_since = 0.0
        self._goaway_sent = False
        self._draining = False
        self.closed = False
        self._drain_waiters: dict[int, asyncio.Future[None]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._last_active = self._loop.time()
        self.peer = ""

    # -- connection lifecycle -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Send our settings; refuse the connection past the cap."""
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        address = transport.get_extra_info("peername")
        if isinstance(address, tuple) and len(address) >= 2:
            host, port = address[0], address[1]
            self.peer = f"ipv6:[{host}]:{port}" if ":" in host else f"ipv4:{host}:{port}"
        if len(self._state.connections) >= self._limits.max_connections:
            transport.abort()
            self.closed = True
            return
        self._state.connections[self] = None
        self._wakeup.attach(transport)
        transport.write(
            f.settings_frame(
                {
                    f.SETTINGS_ENABLE_PUSH: 0,
                    f.SETTINGS_MAX_CONCURRENT_STREAMS: MAX_STREAMS,
                    f.SETTINGS_INITIAL_WINDOW_SIZE: STREAM_WINDOW,
                    f.SETTINGS_MAX_FRAME_SIZE: MAX_FRAME,
                    f.SETTINGS_MAX_HEADER_LIST_SIZE: MAX_HEADER_BLOCK,
                }
            )
            + f.window_update(0, CONNECTION_WINDOW - f.DEFAULT_WINDOW)
        )
        self._timer = self._loop.call_later(self._limits.handshake_seconds, self._handshake_due)

    def connection_lost(self, exc: Exception | None) -> None:
        """Every call still open is reset: nobody will read its answer."""
        self.closed = True
        self._state.connections.pop(self, None)
        if self._timer is not None:
            self._timer.cancel()
        streams = list(self.streams.values())
        self.streams.clear()
        self._wakeup.close()
        for stream in streams:
            if stream.call is not None:
                stream.call.reset()
        for waiter in self._drain_waiters.values():
            if not waiter.done():
                waiter.set_result(None)
        self._drain_waiters.clear()

    def pause_writing(self) -> None:
        """The client does not read its replies: stop reading its requests."""
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        """The client reads again."""
        if self._transport is not None and not self.closed:
            self._transport.resume_reading()

    def shutdown(self) -> None:
        """Graceful stop, in two steps as gRPC's servers do: a GOAWAY that still takes every
        stream, with a PING; once the client acknowledges it (requests it sent before reading
        the GOAWAY have arrived by then), the GOAWAY naming the last stream taken. The
        connection closes once its calls are done."""
        if self.closed or self._draining:
            return
        self._draining = True
        self._write(f.goaway(f.MAX_STREAM_ID, f.NO_ERROR) + f.frame(f.PING, 0, 0, SHUTDOWN_PING))
        self._loop.call_later(SHUTDOWN_PING_SECONDS, self._last_goaway)

    def _last_goaway(self) -> None:
        if self.closed or self._goaway_sent:
            return
        self._goaway_sent = True
        self._write(f.goaway(self._last_stream, f.NO_ERROR))
        if not self.streams:
            self._close()

    def abort(self) -> None:
        """Close at once (the grace is over), also a close still flushing to a client that
        does not read (``closed`` is already set then; aborting a lost transport is a no-op)."""
        if self._transport is not None:
            self._transport.abort()

    @property
    def busy(self) -> bool:
        """Whether a call is open on this connection."""
        return bool(self.streams)

    def _close(self) -> None:
        if self._transport is not None and not self.closed:
            self.closed = True
            self._transport.close()

    def _fail(self, code: int, reason: str) -> None:
        """A connection error: tell the client why, and close."""
        if self.closed:
            return
        log.debug("gRPC connection %s closed: %s", self.peer, reason)
        self._goaway_sent = True
        self._write(f.goaway(self._last_stream, code, reason.encode("utf-8", "replace")[:256]))
        self._close()

    def _handshake_due(self) -> None:
        self._timer = None
        if not self._preface_seen:
            self._fail(f.PROTOCOL_ERROR, "no HTTP/2 preface within the handshake timeout")
            self.abort()
            return
        self._timer = self._loop.call_later(self._limits.idle_seconds, self._idle_due)

    def _idle_due(self) -> None:
        self._timer = None
        if self.closed:
            return
        idle_for = self._loop.time() - self._last_active
        if not self.streams and idle_for >= self._limits.idle_seconds:
            self._goaway_sent = True
            self._write(f.goaway(self._last_stream, f.NO_ERROR, b"max_idle"))
            self._close()
            return
        wait = max(1.0, self._limits.idle_seconds - idle_for)
        self._timer = self._loop.call_later(wait, self._idle_due)

    # -- reading --------------------------------------------------------------------------

    def get_buffer(self, sizehint: int) -> memoryview:
        """The message being read, when its bytes come next; else the shared scratch buffer."""
        stream = self._data_stream
        if stream is not None and self._data_left >= DIRECT_READ_MIN and not self._pending:
            view = stream.receive_view(self._data_left)
            if view is not None and len(view) >= DIRECT_READ_MIN:
                self._direct = view
                return view
        return self._state.read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        """Handle the frames (or message bytes) just read."""
        try:
            if self._direct is not None:
                self._direct = None
                self._received_direct(nbytes)
                self._await_body()
                return
            data = self._state.read_buffer[:nbytes]
            if self._pending:
                self._pending += data
                view = memoryview(self._pending)
                try:
                    used = self._process(view)
                finally:
                    view.release()
                del self._pending[:used]
            else:
                used = self._process(data)
                if used < nbytes:
                    self._pending = bytearray(data[used:])
            self._await_body()
        except Http2Failure as error:
            self._pending = bytearray()
            self._fail(error.code, str(error))

    def _await_body(self) -> None:
        """Ask the kernel to wake us once the large message being read is in (or what of it
        the client may send before we reopen its windows)."""
        stream = self._body_stream
        if stream is None:
            return
        left = stream.message_left
        if left < WAKE_MIN_BYTES or stream.id not in self.streams:
            self._body_stream = None
            self._wakeup.expect(0)
            return
        credit = min(STREAM_WINDOW - stream.receive_unacked, self._receive_window)
        self._wakeup.expect(min(left, credit))

    def _received_direct(self, count: int) -> None:
        stream = self._data_stream
        assert stream is not None
        self._data_left -= count
        stream.received_into_view(count)
        if self._data_left == 0:
            self._end_data()

    def _process(self, view: memoryview) -> int:
        at = 0
        end = len(view)
        if not self._preface_seen:
            if end < len(f.PREFACE):
                if bytes(view) != f.PREFACE[:end]:
                    raise Http2Failure(f.PROTOCOL_ERROR, "not an HTTP/2 client preface")
                return 0
            if bytes(view[: len(f.PREFACE)]) != f.PREFACE:
                raise Http2Failure(f.PROTOCOL_ERROR, "not an HTTP/2 client preface")
            self._preface_seen = True
            at = len(f.PREFACE)
        while at < end and not self.closed:
            if self._data_left:
                take = min(self._data_left, end - at)
                self._data_payload(view[at : at + take])
                at += take
                continue
            if end - at < f.HEADER_BYTES:
                break
            high, low, kind, flags, stream_id = _unpack_header(view, at)
            length = high << 8 | low
            stream_id &= 0x7FFF_FFFF
            if length > MAX_FRAME:
                raise Http2Failure(f.FRAME_SIZE_ERROR, f"frame of {length} bytes")
            if self._continuation is not None and kind != f.CONTINUATION:
                raise Http2Failure(f.PROTOCOL_ERROR, "expected CONTINUATION")
            if kind == f.DATA and not flags & f.PADDED:
                if self._body_stream is not None and not flags & f.END_STREAM and length:
                    used = self._data_run(view, at, stream_id, length)
                    if used:
                        at += used
                        continue
                # The payload is taken as far as it has arrived; the rest, when it comes, goes
                # on through _data_left (or straight into the message, see get_buffer).
                at += f.HEADER_BYTES
                self._begin_data(stream_id, length, flags)
                if length == 0:
                    self._end_data()
                    continue
                take = min(length, end - at)
                if take:
                    self._data_payload(view[at : at + take])
                    at += take
                continue
            if end - at < f.HEADER_BYTES + length:
                break
            payload = view[at + f.HEADER_BYTES : at + f.HEADER_BYTES + length]
            at += f.HEADER_BYTES + length
            self._frame(kind, flags, stream_id, payload)
        return at

    def _data_run(self, view: memoryview, at: int, stream_id: int, length: int) -> int:
        """Take a run of equal DATA frames inside the large message being read at once; the
        bytes used (0: not such a run).

        Clients that keep to the default 16 KiB frames send a 602 KB message in 38 of them, all
        with the same 9-byte header: checking the headers and copying the payloads row by row
        in numpy costs what two frames one by one do.
        """
        stream = self._body_stream
        step = f.HEADER_BYTES + length
        if stream is None or stream.id != stream_id or stream.waiting:
            return 0
        count = min((len(view) - at) // step, stream.message_left // length)
        if count < 2:
            return 0
        frames = np.frombuffer(view, np.uint8, count * step, at).reshape(count, step)
        headers = frames[:, : f.HEADER_BYTES].tobytes()  # one C call, no ufunc reductions
        first = headers[: f.HEADER_BYTES]
        if headers != first * count:
            count = next(  # the first frame that differs (the first never does)
                index
                for index in range(1, count)
                if headers[index * f.HEADER_BYTES : (index + 1) * f.HEADER_BYTES] != first
            )
            if count < 2:
                return 0
        self._begin_data(stream.id, count * length, 0)
        self._data_left = 0
        stream.receive_rows(frames[:count, f.HEADER_BYTES :])
        self._end_data()
        return count * step

    def _frame(self, kind: int, flags: int, stream_id: int, payload: memoryview) -> None:
        if kind == f.HEADERS:
            self._headers_frame(flags, stream_id, payload)
        elif kind == f.DATA:  # padded
            self._begin_data(stream_id, len(payload), flags)
            inner = _unpad(payload)
            self._data_left = len(inner)
            if inner:
                self._data_payload(inner)
            else:
                self._end_data()
        elif kind == f.CONTINUATION:
            self._continuation_frame(flags, stream_id, payload)
        elif kind == f.SETTINGS:
            self._settings_frame(flags, stream_id, payload)
        elif kind == f.WINDOW_UPDATE:
            self._window_update_frame(stream_id, payload)
        elif kind == f.PING:
            self._ping_frame(flags, stream_id, payload)
        elif kind == f.RST_STREAM:
            self._reset_frame(stream_id, payload)
        elif kind == f.GOAWAY:
            self._goaway_sent = True  # the client leaves: take no new streams
        elif kind == f.PUSH_PROMISE:
            raise Http2Failure(f.PROTOCOL_ERROR, "a client sent PUSH_PROMISE")
        # PRIORITY and unknown frame types are ignored (RFC 9113 §5.5).

    def _begin_data(self, stream_id: int, length: int, flags: int) -> None:
        if stream_id == 0:
            raise Http2Failure(f.PROTOCOL_ERROR, "DATA on stream 0")
        self._receive_window -= length
        if self._receive_window < 0:
            raise Http2Failure(f.FLOW_CONTROL_ERROR, "the connection window was exceeded")
        stream = self.streams.get(stream_id)
        self._data_left = length
        self._data_end = bool(flags & f.END_STREAM)
        if stream is None or stream.remote_ended:
            if stream_id > self._last_stream:
                raise Http2Failure(f.PROTOCOL_ERROR, "DATA on an idle stream")
            self._data_stream = None
            self._replenish(length)
            return
        self._pings = 0
        self._data_stream = stream
        self._body_stream = stream
        stream.receive_unacked += length
        if stream.waiting and self._held + length <= MAX_HELD:
            # The connection's window stays spent for these bytes until the message is admitted;
            # past MAX_HELD only the stream's window is held, so admitted calls keep flowing.
            stream.held += length
            self._held += length
            return
        self._replenish(length)
        if stream.waiting:
            return
        if (
            stream.receive_unacked >= STREAM_WINDOW // 2
            and not self._data_end
            and not stream.hold_window
        ):
            self._write(f.window_update(stream_id, stream.receive_unacked))
            stream.receive_unacked = 0

    def _replenish(self, count: int) -> None:
        """``count`` received bytes are dealt with: reopen the connection's window (in halves)."""
        self._receive_unacked += count
        if self._receive_unacked >= (CONNECTION_WINDOW - self._held) // 2:
            self._write(f.window_update(0, self._receive_unacked))
            self._receive_window += self._receive_unacked
            self._receive_unacked = 0

    def admitted(self, stream: Stream) -> None:
        """The message ``stream`` was reading got its memory: let its bytes flow again."""
        stream.waiting = False
        self._release_held(stream)
        self._reopen(stream)

    def _release_held(self, stream: Stream) -> None:
        held, stream.held = stream.held, 0
        self._held -= held
        if held and not self.closed:
            self._replenish(held)

    def open_window(self, stream: Stream) -> None:
        """A streaming call caught up with its requests: let its client send again."""
        stream.hold_window = False
        self._reopen(stream)

    def _reopen(self, stream: Stream) -> None:
        """Give the stream's client back the window its read bytes took, unless it is held."""
        held = stream.hold_window or stream.waiting or stream.remote_ended
        if stream.receive_unacked and not held and stream.id in self.streams:
            self._write(f.window_update(stream.id, stream.receive_unacked))
            stream.receive_unacked = 0

    def _data_payload(self, chunk: memoryview) -> None:
        stream = self._data_stream
        self._data_left -= len(chunk)
        if stream is not None:
            stream.receive(chunk)
        if self._data_left == 0:
            self._end_data()

    def _end_data(self) -> None:
        stream = self._data_stream
        self._data_stream = None
        if self._data_end and stream is not None:
            self._remote_end(stream)

    def _headers_frame(self, flags: int, stream_id: int, payload: memoryview) -> None:
        if stream_id == 0 or (not stream_id & 1 and stream_id not in self.streams):
            raise Http2Failure(f.PROTOCOL_ERROR, f"HEADERS on stream {stream_id}")
        block = _unpad(payload) if flags & f.PADDED else payload
        if flags & f.PRIORITY_FLAG:
            block = block[5:]
        if flags & f.END_HEADERS:
            self._headers(stream_id, flags, bytes(block))
        else:
            self._continuation = (stream_id, flags, bytearray(block))

    def _continuation_frame(self, flags: int, stream_id: int, payload: memoryview) -> None:
        if self._continuation is None or self._continuation[0] != stream_id:
            raise Http2Failure(f.PROTOCOL_ERROR, "unexpected CONTINUATION")
        block = self._continuation[2]
        block += payload
        if len(block) > MAX_HEADER_BLOCK:
            raise Http2Failure(f.ENHANCE_YOUR_CALM, "header block over the limit")
        if flags & f.END_HEADERS:
            first_flags = self._continuation[1]
            self._continuation = None
            self._headers(stream_id, first_flags, bytes(block))

    def _headers(self, stream_id: int, flags: int, block: bytes) -> None:
        if len(block) > MAX_HEADER_BLOCK:
            raise Http2Failure(f.ENHANCE_YOUR_CALM, "header block over the limit")
        try:
            headers = self._decoder.decode(block)
        except HeaderBlockError as error:
            raise Http2Failure(f.COMPRESSION_ERROR, f"bad header block: {error}") from None
        self._pings = 0
        self._last_active = self._loop.time()
        stream = self.streams.get(stream_id)
        if stream is not None:  # trailers from the client
            if flags & f.END_STREAM:
                self._remote_end(stream)
            return
        if stream_id <= self._last_stream:
            raise Http2Failure(f.PROTOCOL_ERROR, f"stream {stream_id} reused")
        self._last_stream = stream_id
        if self._goaway_sent or len(self.streams) >= MAX_STREAMS:
            self._write(f.rst_stream(stream_id, f.REFUSED_STREAM))
            return
        stream = Stream(
            stream_id, headers, self._peer_initial_window, self._limits.max_message_bytes
        )
        self.streams[stream_id] = stream
        self._state.dispatch(self, stream)
        if flags & f.END_STREAM and stream_id in self.streams:
            self._remote_end(stream)

    def _remote_end(self, stream: Stream) -> None:
        stream.remote_ended = True
        if stream.call is not None:
            stream.call.end()

    def _settings_frame(self, flags: int, stream_id: int, payload: memoryview) -> None:
        if stream_id != 0:
            raise Http2Failure(f.PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & f.ACK:
            return
        if len(payload) % 6:
            raise Http2Failure(f.FRAME_SIZE_ERROR, "SETTINGS of a bad length")
        for key, value in f.parse_settings(bytes(payload)):
            if key == f.SETTINGS_INITIAL_WINDOW_SIZE:
                if value > f.MAX_WINDOW:
                    raise Http2Failure(f.FLOW_CONTROL_ERROR, "initial window too large")
                delta = value - self._peer_initial_window
                self._peer_initial_window = value
                for stream in self.streams.values():
                    stream.send_window += delta
            elif key == f.SETTINGS_MAX_FRAME_SIZE:
                if not f.DEFAULT_MAX_FRAME <= value <= f.MAX_FRAME_LIMIT:
                    raise Http2Failure(f.PROTOCOL_ERROR, "bad SETTINGS_MAX_FRAME_SIZE")
                self._peer_max_frame = value
        self._write(f.frame(f.SETTINGS, f.ACK, 0))
        self._flush_blocked()

    def _window_update_frame(self, stream_id: int, payload: memoryview) -> None:
        if len(payload) != 4:
            raise Http2Failure(f.FRAME_SIZE_ERROR, "WINDOW_UPDATE of a bad length")
        increment = f.read_word(bytes(payload)) & 0x7FFF_FFFF
        if stream_id == 0:
            if increment == 0:
                raise Http2Failure(f.PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
            self._send_window += increment
            if self._send_window > f.MAX_WINDOW:
                raise Http2Failure(f.FLOW_CONTROL_ERROR, "connection window overflow")
            self._flush_blocked()
            return
        stream = self.streams.get(stream_id)
        if stream is None:
            return
        if increment == 0:
            self._reset(stream, f.PROTOCOL_ERROR)
            return
        stream.send_window += increment
        if stream.send_window > f.MAX_WINDOW:
            self._reset(stream, f.FLOW_CONTROL_ERROR)
            return
        self._flush(stream)

    def _ping_frame(self, flags: int, stream_id: int, payload: memoryview) -> None:
        if stream_id != 0 or len(payload) != 8:
            raise Http2Failure(f.PROTOCOL_ERROR, "bad PING")
        if flags & f.ACK:
            if bytes(payload) == SHUTDOWN_PING and self._draining:
                self._last_goaway()
            return
        self._pings += 1
        if self._pings > MAX_PINGS_WITHOUT_CALLS:
            raise Http2Failure(f.ENHANCE_YOUR_CALM, "too_many_pings")
        self._write(f.frame(f.PING, f.ACK, 0, bytes(payload)))

    def _reset_frame(self, stream_id: int, payload: memoryview) -> None:
        if stream_id == 0 or len(payload) != 4:
            raise Http2Failure(f.PROTOCOL_ERROR, "bad RST_STREAM")
        now = self._loop.time()
        if now - self._resets_since > 1.0:
            self._resets_since = now
            self._resets = 0
        self._resets += 1
        if self._resets > MAX_RESETS_PER_SECOND:
            raise Http2Failure(f.ENHANCE_YOUR_CALM, "too many stream resets")
        stream = self.streams.get(stream_id)
        if stream is not None:
            self._remove(stream)
            if stream.call is not None:
                stream.call.reset()
            self._stream_done(stream_id)

    # -- writing --------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def send_unary(self, stream: Stream, headers: bytes, message: bytes, trailers: bytes) -> None:
        """A whole reply: headers, one length-prefixed message, trailers."""
        if stream.id not in self.streams:
            return
        size = len(message) + 5
        if (
            size <= stream.send_window
            and size <= self._send_window
            and size <= self._peer_max_frame
            and not stream.outbound
        ):
            stream.send_window -= size
            self._send_window -= size
            stream.sent_headers = True
            prefix = b"\x00" + len(message).to_bytes(4, "big")
            self._write(
                b"".join(
                    (
                        f.frame(f.HEADERS, f.END_HEADERS, stream.id, headers),
                        f.frame_header(f.DATA, 0, stream.id, size),
                        prefix,
                        message,
                        f.frame(f.HEADERS, f.END_HEADERS | f.END_STREAM, stream.id, trailers),
                    )
                )
            )
            self._finished(stream)
            return
        self.send_headers(stream, headers)
        self.send_message(stream, message)
        self.send_trailers(stream, trailers)

    def send_headers(self, stream: Stream, headers: bytes) -> None:
        """The reply's headers (once)."""
        if stream.sent_headers or stream.id not in self.streams:
            return
        stream.sent_headers = True
        self._write(f.frame(f.HEADERS, f.END_HEADERS, stream.id, headers))

    def send_message(self, stream: Stream, message: bytes) -> None:
        """One length-prefixed reply message, sent as the windows allow."""
        if stream.id not in self.streams:
            return
        prefix = b"\x00" + len(message).to_bytes(4, "big")
        stream.outbound.append(memoryview(prefix))
        if message:
            stream.outbound.append(memoryview(message))
        stream.outbound_bytes += len(message) + 5
        self._flush(stream)

    def send_trailers(self, stream: Stream, trailers: bytes, *, headers: bytes = b"") -> None:
        """End the reply: trailers after the queued messages, or trailers only (with
        ``headers`` first in the same block) when nothing was sent."""
        if stream.id not in self.streams:
            return
        if not stream.sent_headers:
            stream.sent_headers = True
            self._write(
                f.frame(f.HEADERS, f.END_HEADERS | f.END_STREAM, stream.id, headers + trailers)
            )
            self._finished(stream)
            return
        stream.trailers = trailers
        self._flush(stream)

    async def drained(self, stream: Stream) -> None:
        """Wait until little of ``stream``'s reply waits for the client's window."""
        while stream.outbound_bytes >= DRAINED_BYTES and stream.id in self.streams:
            waiter = self._loop.create_future()
            self._drain_waiters[stream.id] = waiter
            await waiter

    def _flush(self, stream: Stream) -> None:
        """Send what the windows allow of ``stream``'s queued reply; then its trailers."""
        while stream.outbound and not self.closed:
            allowed = min(stream.send_window, self._send_window, self._peer_max_frame)
            if allowed <= 0:
                if self._send_window <= 0:
                    self._blocked[stream.id] = stream
                break
            pieces: list[memoryview] = []
            size = 0
            while stream.outbound and size < allowed:
                piece = stream.outbound[0]
                if len(piece) <= allowed - size:
                    pieces.append(stream.outbound.popleft())
                    size += len(piece)
                else:
                    pieces.append(piece[: allowed - size])
                    stream.outbound[0] = piece[allowed - size :]
                    size = allowed
            stream.send_window -= size
            self._send_window -= size
            stream.outbound_bytes -= size
            self._write(f.frame_header(f.DATA, 0, stream.id, size) + b"".join(pieces))
        if stream.outbound_bytes < DRAINED_BYTES:
            self._wake_drained(stream.id)
        if not stream.outbound and stream.trailers is not None and stream.id in self.streams:
            trailers = stream.trailers
            stream.trailers = None
            self._write(f.frame(f.HEADERS, f.END_HEADERS | f.END_STREAM, stream.id, trailers))
            self._finished(stream)

    def _wake_drained(self, stream_id: int) -> None:
        waiter = self._drain_waiters.pop(stream_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _flush_blocked(self) -> None:
        for stream in list(self.streams.values()):
            if stream.outbound or stream.trailers is not None:
                self._blocked.pop(stream.id, None)
                self._flush(stream)

    def _finished(self, stream: Stream) -> None:
        """The reply is complete; a client still sending is told to stop (RST NO_ERROR)."""
        self._remove(stream)
        if not stream.remote_ended:
            self._write(f.rst_stream(stream.id, f.NO_ERROR))
        self._stream_done(stream.id)

    def _reset(self, stream: Stream, error: int) -> None:
        """Close ``stream`` with RST_STREAM ``error``; its call is reset."""
        self._remove(stream)
        self._write(f.rst_stream(stream.id, error))
        if stream.call is not None:
            stream.call.reset()
        self._stream_done(stream.id)

    def _remove(self, stream: Stream) -> None:
        """Forget ``stream``: later bytes for it are discarded, its held window comes back."""
        self.streams.pop(stream.id, None)
        self._blocked.pop(stream.id, None)
        stream.discarding = True
        self._release_held(stream)
        if stream is self._body_stream:  # its client stops sending: wake on any byte again
            self._body_stream = None
            self._wakeup.expect(0)

    def _stream_done(self, stream_id: int) -> None:
        self._last_active = self._loop.time()
        self._wake_drained(stream_id)
        if self._goaway_sent and not self.streams:
            self._close()


def _unpad(payload: memoryview) -> memoryview:
    if not payload:
        raise Http2Failure(f.PROTOCOL_ERROR, "padded frame without a pad length")
    pad = payload[0]
    if pad >= len(payload):
        raise Http2Failure(f.PROTOCOL_ERROR, "padding longer than the frame")
    return payload[1 : len(payload) - pad]
