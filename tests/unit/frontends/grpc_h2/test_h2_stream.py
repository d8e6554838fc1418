"""Request message assembly on one stream: length prefixes split anywhere, empty and several
messages in one DATA payload, the size limit, and reads straight into the message's buffer."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest
from _h2_peer import RecordingCall, grpc_message

from ovserve.frontends.grpc_h2.stream import Stream

LIMIT = 1000


def stream_with_call(limit: int = LIMIT) -> tuple[Stream, RecordingCall]:
    stream = Stream(1, [(":path", "/x")], send_window=65_535, limit=limit)
    call = RecordingCall()
    stream.call = call
    return stream, call


def test_one_message_in_one_payload() -> None:
    stream, call = stream_with_call()
    stream.receive(memoryview(grpc_message(b"hello")))
    assert call.messages == [(b"hello", False)]


def test_a_message_fed_one_byte_at_a_time() -> None:
    stream, call = stream_with_call()
    wire = grpc_message(b"abcdefgh", compressed=True)
    for at in range(len(wire)):
        assert not call.messages
        stream.receive(memoryview(wire)[at : at + 1])
    assert call.messages == [(b"abcdefgh", True)]


@pytest.mark.parametrize("seed", range(10))
def test_many_messages_cut_at_random_places(seed: int) -> None:
    rng = random.Random(seed)
    sent = [
        (rng.randbytes(rng.choice([0, 0, 1, 4, 5, 6, 100, 999])), rng.random() < 0.3)
        for _ in range(30)
    ]
    wire = b"".join(grpc_message(body, compressed) for body, compressed in sent)
    stream, call = stream_with_call()
    at = 0
    while at < len(wire):
        step = rng.randint(1, 300)
        stream.receive(memoryview(wire)[at : at + step])
        at += step
    assert call.messages == sent


def test_zero_length_messages_and_several_in_one_payload() -> None:
    stream, call = stream_with_call()
    stream.receive(memoryview(grpc_message(b"") + grpc_message(b"x") + grpc_message(b"")))
    assert call.messages == [(b"", False), (b"x", False), (b"", False)]


def test_a_message_at_the_limit_is_taken_one_over_is_refused_and_the_rest_dropped() -> None:
    stream, call = stream_with_call(limit=10)
    stream.receive(memoryview(grpc_message(b"0123456789")))
    assert call.messages == [(b"0123456789", False)]
    stream.receive(memoryview(grpc_message(b"0123456789A")[:7]))
    assert call.too_large_sizes == [11]
    assert stream.discarding
    stream.receive(memoryview(b"23456789A" + grpc_message(b"after")))
    assert stream.receive_view(100) is None
    assert call.messages == [(b"0123456789", False)]


def test_a_declared_size_is_refused_before_any_body_byte() -> None:
    stream, call = stream_with_call(limit=LIMIT)
    stream.receive(memoryview(b"\x00\xff\xff\xff\xff"))
    assert call.too_large_sizes == [0xFFFF_FFFF]


def test_receive_view_takes_the_body_straight_into_the_message() -> None:
    stream, call = stream_with_call()
    body = bytes(range(256)) * 3
    wire = grpc_message(body)
    assert stream.receive_view(100) is None, "no message begun: no view"
    stream.receive(memoryview(wire)[:8])  # the prefix and 3 body bytes
    view = stream.receive_view(10_000)
    assert view is not None
    assert len(view) == len(body) - 3
    view[:100] = wire[8:108]
    stream.received_into_view(100)
    assert not call.messages
    view = stream.receive_view(50)
    assert view is not None
    assert len(view) == 50, "at most what was asked"
    view[:] = wire[108:158]
    stream.received_into_view(50)
    stream.receive(memoryview(wire)[158:])
    assert call.messages == [(body, False)]


def test_receive_view_to_the_end_finishes_the_message() -> None:
    stream, call = stream_with_call()
    stream.receive(memoryview(grpc_message(b"abc"))[:5])
    view = stream.receive_view(3)
    assert view is not None
    view[:] = b"abc"
    stream.received_into_view(3)
    assert call.messages == [(b"abc", False)]
    assert stream.receive_view(3) is None


def test_a_stream_without_a_call_assembles_and_drops() -> None:
    stream = Stream(3, [], send_window=0, limit=LIMIT)
    stream.receive(memoryview(grpc_message(b"lost") + grpc_message(b"x" * (LIMIT + 1))))
    assert stream.discarding


UNAFFORDABLE = """
import resource
from ovserve.frontends.grpc_h2.stream import Stream

class Call:
    def __init__(self):
        self.seen = []
    def message(self, data, compressed):
        self.seen.append(("message", len(data)))
    def admit(self, size):
        return True
    def too_large(self, size):
        self.seen.append(("too_large", size))
    def unaffordable(self, size):
        self.seen.append(("unaffordable", size))
    def end(self):
        pass
    def reset(self):
        pass

with open("/proc/self/statm") as statm:
    used = int(statm.read().split()[0]) * resource.getpagesize()
resource.setrlimit(resource.RLIMIT_AS, (used + 256 * 1024 * 1024, resource.RLIM_INFINITY))
stream = Stream(1, [], send_window=0, limit=1 << 33)
stream.call = call = Call()
stream.receive(memoryview(b"\\x00\\xc0\\x00\\x00\\x00" + b"body bytes that are dropped"))
print(call.seen, stream.discarding)
"""


def test_a_message_that_cannot_be_allocated_is_unaffordable() -> None:
    """A 3 GiB message under the size limit in a process allowed 256 MiB more memory."""
    done = subprocess.run(
        [sys.executable, "-c", UNAFFORDABLE],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[('unaffordable', 3221225472)] True"
