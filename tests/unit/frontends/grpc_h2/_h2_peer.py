"""A server-side ``Http2Connection`` over a fake transport, talked to by the ``h2`` package.

The ``h2`` client is the independent peer: it produces the bytes a real client sends and
parses (and validates) what the server wrote. Bytes reach the server as the event loop hands
them over: into the buffer ``get_buffer`` gives, then ``buffer_updated``. Malformed input that
``h2`` refuses to produce is built with :func:`raw_frame`, and the server's output can also be
read frame by frame with ``hyperframe`` (:meth:`Peer.written_frames`).
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import h2.config
import h2.connection
import h2.events
from hyperframe.frame import Frame

from ovserve.frontends.grpc_h2.connection import (
    ConnectionLimits,
    Dispatch,
    Http2Connection,
    ServerState,
)
from ovserve.frontends.grpc_h2.stream import Message, Stream

from _async import async_test
from _fake_transport import FakeTransport

__all__ = ["FakeTransport", "async_test"]  # where the transport's tests have always found them

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
MIB = 1024 * 1024


def raw_frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    """A frame built by hand (for frames ``h2`` refuses to send)."""
    size = len(payload)
    return struct.pack(">BHBBL", size >> 16, size & 0xFFFF, kind, flags, stream) + payload


def grpc_message(payload: bytes, compressed: bool = False) -> bytes:
    """A length-prefixed gRPC message."""
    return struct.pack(">BL", int(compressed), len(payload)) + payload


def request_headers(
    path: str = "/test.Service/Unary", extra: Iterable[tuple[str, str]] = ()
) -> list[tuple[str, str]]:
    """The headers a gRPC client sends to call ``path``."""
    return [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", "localhost"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        *extra,
    ]


@dataclass
class Reply:
    """What the client received on one stream."""

    headers: dict[str, str] = field(default_factory=dict)
    data: bytearray = field(default_factory=bytearray)
    data_frames: list[int] = field(default_factory=list)
    trailers: dict[str, str] = field(default_factory=dict)
    ended: bool = False
    reset: int | None = None

    @property
    def messages(self) -> list[bytes]:
        """The length-prefixed messages of the reply's DATA."""
        found = []
        at = 0
        while at < len(self.data):
            flag, size = struct.unpack_from(">BL", self.data, at)
            assert flag == 0, "the server compressed a reply"
            found.append(bytes(self.data[at + 5 : at + 5 + size]))
            at += 5 + size
        assert at == len(self.data), "a reply message was cut short"
        return found

    @property
    def status(self) -> int | None:
        """``grpc-status`` from the trailers, or from a trailers-only reply's headers."""
        value = self.trailers.get("grpc-status", self.headers.get("grpc-status"))
        return None if value is None else int(value)

    @property
    def message(self) -> str | None:
        """``grpc-message`` as sent (percent-encoded)."""
        return self.trailers.get("grpc-message", self.headers.get("grpc-message"))


def limits(
    max_message_bytes: int = MIB,
    max_connections: int = 10,
    handshake_seconds: float = 5.0,
    idle_seconds: float = 60.0,
) -> ConnectionLimits:
    """Connection limits for a test."""
    return ConnectionLimits(max_message_bytes, max_connections, handshake_seconds, idle_seconds)


class RecordingCall:
    """A stream's call that only records what the stream tells it."""

    def __init__(self) -> None:
        self.messages: list[tuple[bytes, bool]] = []
        self.too_large_sizes: list[int] = []
        self.unaffordable_sizes: list[int] = []
        self.ends = 0
        self.resets = 0
        self.admissions: list[int] = []
        self.admit_at_once = True
        """What ``admit`` answers: False makes the stream wait for memory."""

    def admit(self, size: int) -> bool:
        self.admissions.append(size)
        return self.admit_at_once

    def message(self, data: Message, compressed: bool) -> None:
        self.messages.append((bytes(data), compressed))

    def too_large(self, size: int) -> None:
        self.too_large_sizes.append(size)

    def unaffordable(self, size: int) -> None:
        self.unaffordable_sizes.append(size)

    def end(self) -> None:
        self.ends += 1

    def reset(self) -> None:
        self.resets += 1


class Recorder:
    """A dispatch that attaches a :class:`RecordingCall` to every new stream."""

    def __init__(self) -> None:
        self.streams: list[Stream] = []
        self.calls: dict[int, RecordingCall] = {}

    def __call__(self, connection: Http2Connection, stream: Stream) -> None:
        call = RecordingCall()
        stream.call = call
        self.streams.append(stream)
        self.calls[stream.id] = call


class Peer:
    """One server connection and the ``h2`` client talking to it (inside a running loop)."""

    def __init__(
        self,
        dispatch: Dispatch | None = None,
        *,
        connection_limits: ConnectionLimits | None = None,
        client_settings: dict[int, int] | None = None,
        handshake: bool = True,
        auto_ack: bool = True,
        state: ServerState | None = None,
    ) -> None:
        self.recorder = Recorder()
        self.state = state or ServerState(dispatch or self.recorder, connection_limits or limits())
        self.transport = FakeTransport(strict=True)
        self.connection = Http2Connection(self.state)
        self.connection.connection_made(self.transport)  # type: ignore[arg-type]
        self.client = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        self.auto_ack = auto_ack
        self.replies: dict[int, Reply] = {}
        self.events: list[h2.events.Event] = []
        self.direct_reads = 0
        self._read = 0
        if handshake:
            self.client.initiate_connection()
            if client_settings:  # in force once the server acknowledges them, below
                self.client.update_settings(client_settings)
            self.send()
            self.pump()

    # -- bytes in -------------------------------------------------------------------------

    def feed(self, data: bytes, chunk: int | None = None) -> None:
        """Hand ``data`` to the server as reads of at most ``chunk`` bytes (the buffer's size)."""
        view = memoryview(data)
        while view and not self.transport.closed:
            buffer = self.connection.get_buffer(-1)
            if buffer.obj is not self.state.read_buffer.obj:
                self.direct_reads += 1
            count = min(len(buffer), len(view), chunk or len(view))
            buffer[:count] = view[:count]
            self.connection.buffer_updated(count)
            view = view[count:]

    def send(self, chunk: int | None = None) -> None:
        """Send what the client has to send."""
        data = self.client.data_to_send()
        if data:
            self.feed(data, chunk)

    # -- bytes out ------------------------------------------------------------------------

    def pump(self) -> list[h2.events.Event]:
        """Give the client what the server wrote (and the server the client's answers)."""
        new: list[h2.events.Event] = []
        while len(self.transport.output) > self._read:
            data = bytes(self.transport.output[self._read :])
            self._read = len(self.transport.output)
            events = self.client.receive_data(data)
            for event in events:
                self._note(event)
            new += events
            self.send()
        self.events += new
        return new

    def _note(self, event: h2.events.Event) -> None:
        stream_id = getattr(event, "stream_id", None)
        if not stream_id:
            return
        reply = self.replies.setdefault(stream_id, Reply())
        if isinstance(event, h2.events.ResponseReceived):
            reply.headers.update(_text(event.headers))
        elif isinstance(event, h2.events.DataReceived):
            reply.data += event.data or b""
            reply.data_frames.append(len(event.data or b""))
            if self.auto_ack and event.flow_controlled_length:
                self.client.acknowledge_received_data(event.flow_controlled_length, stream_id)
        elif isinstance(event, h2.events.TrailersReceived):
            reply.trailers.update(_text(event.headers))
        elif isinstance(event, h2.events.StreamEnded):
            reply.ended = True
        elif isinstance(event, h2.events.StreamReset):
            reply.reset = event.error_code

    async def settle(self, rounds: int = 20) -> None:
        """Let tasks run and the two sides talk until nothing more happens."""
        quiet = 0
        while quiet < 3 and rounds:
            rounds -= 1
            await asyncio.sleep(0)
            quiet = 0 if self.pump() else quiet + 1

    def written_frames(self) -> list[Frame]:
        """Every frame the server wrote, parsed by ``hyperframe``."""
        return parse_frames(bytes(self.transport.output))

    def terminated(self) -> h2.events.ConnectionTerminated | None:
        """The GOAWAY the client received, if any."""
        found = [e for e in self.events if isinstance(e, h2.events.ConnectionTerminated)]
        return found[-1] if found else None

    # -- requests -------------------------------------------------------------------------

    def start_call(
        self,
        path: str = "/test.Service/Unary",
        extra: Iterable[tuple[str, str]] = (),
        end_stream: bool = False,
    ) -> int:
        """Open a stream with a gRPC call's headers; its id."""
        stream_id = self.client.get_next_available_stream_id()
        self.client.send_headers(stream_id, request_headers(path, extra), end_stream=end_stream)
        self.send()
        return stream_id

    def send_body(
        self, stream_id: int, data: bytes, end_stream: bool = False, chunk: int | None = None
    ) -> None:
        """Send ``data`` on a stream in frames the server allows, as its windows open."""
        view = memoryview(data)
        while view:
            room = min(
                self.client.max_outbound_frame_size,
                self.client.local_flow_control_window(stream_id),
                len(view),
            )
            assert room > 0, "the server's windows stayed shut"
            self.client.send_data(
                stream_id, view[:room], end_stream=end_stream and room == len(view)
            )
            view = view[room:]
            self.send(chunk)
            self.pump()
        if end_stream and not data:
            self.client.end_stream(stream_id)
            self.send(chunk)

    def call(
        self,
        payload: bytes,
        path: str = "/test.Service/Unary",
        extra: Iterable[tuple[str, str]] = (),
        compressed: bool = False,
    ) -> int:
        """A whole unary request: headers, one message, END_STREAM."""
        stream_id = self.start_call(path, extra)
        self.client.send_data(stream_id, grpc_message(payload, compressed), end_stream=True)
        self.send()
        return stream_id


def parse_frames(data: bytes) -> list[Frame]:
    """The frames in ``data`` (which holds whole frames)."""
    found = []
    view = memoryview(data)
    while view:
        frame, length = Frame.parse_frame_header(view[:9])
        frame.parse_body(view[9 : 9 + length])
        found.append(frame)
        view = view[9 + length :]
    return found


def _text(headers: Iterable[tuple[Any, Any]]) -> dict[str, str]:
    return {str(name): str(value) for name, value in headers}
