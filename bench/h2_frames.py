"""The native gRPC transport's receive path alone: a 602 KB message in 16 KiB DATA frames (as
nghttp2's h2load sends it) fed to one ``Http2Connection`` through get_buffer/buffer_updated, the
way the event loop does, with a fake transport. Prints microseconds per request, and what the
harness's own copying costs.

usage: .venv/bin/python bench/h2_frames.py [--frame BYTES] [--requests N]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import hpack

from ovserve.frontends.grpc_h2 import frames as f
from ovserve.frontends.grpc_h2.connection import ConnectionLimits, Http2Connection, ServerState
from ovserve.frontends.grpc_h2.stream import Message, Stream

MESSAGE_BYTES = 602 * 1024


class _Transport:
    def write(self, data: bytes) -> None: ...
    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, key: str) -> Any:
        return ("127.0.0.1", 1)

    def close(self) -> None: ...
    def abort(self) -> None: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...


class _Call:
    messages = 0

    def message(self, data: Message, compressed: bool) -> None:
        _Call.messages += 1

    def admit(self, size: int) -> bool:
        return True

    def too_large(self, size: int) -> None: ...
    def unaffordable(self, size: int) -> None: ...
    def end(self) -> None: ...
    def reset(self) -> None: ...


def _dispatch(connection: Http2Connection, stream: Stream) -> None:
    stream.call = _Call()


async def _measure(frame_bytes: int, count: int) -> None:
    state = ServerState(_dispatch, ConnectionLimits(1 << 30, 100, 30.0, 300.0))
    connection = Http2Connection(state)
    connection.connection_made(_Transport())  # type: ignore[arg-type]
    encoder = hpack.Encoder()
    message = b"\x00" + MESSAGE_BYTES.to_bytes(4, "big") + b"x" * MESSAGE_BYTES
    headers = [(":method", "POST"), (":path", "/a/b"), ("content-type", "application/grpc")]

    def request(stream_id: int) -> bytes:
        out = [f.frame(f.HEADERS, f.END_HEADERS, stream_id, encoder.encode(headers))]
        for at in range(0, len(message), frame_bytes):
            last = at + frame_bytes >= len(message)
            chunk = message[at : at + frame_bytes]
            out.append(f.frame(f.DATA, f.END_STREAM if last else 0, stream_id, chunk))
        return b"".join(out)

    def feed(data: bytes) -> None:
        view, at = memoryview(data), 0
        while at < len(view):
            buffer = connection.get_buffer(-1)
            size = min(len(buffer), len(view) - at)
            buffer[:size] = view[at : at + size]
            connection.buffer_updated(size)
            at += size

    feed(f.PREFACE + request(1))
    bodies = [request(3 + 2 * k) for k in range(count)]
    started = time.perf_counter()
    for body in bodies:
        feed(body)
        connection.streams.clear()
    per_request = (time.perf_counter() - started) / count * 1e6
    scratch = memoryview(bytearray(256 * 1024))
    started = time.perf_counter()
    for body in bodies:
        view, at = memoryview(body), 0
        while at < len(view):
            size = min(len(scratch), len(view) - at)
            scratch[:size] = view[at : at + size]
            at += size
    copying = (time.perf_counter() - started) / count * 1e6
    print(
        f"{frame_bytes}-byte frames: {per_request:.0f} us per 602 KB request "
        f"(of which the harness's copying {copying:.0f} us); messages {_Call.messages}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frame", type=int, default=16 * 1024)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(_measure(args.frame, args.requests))


if __name__ == "__main__":
    main()
