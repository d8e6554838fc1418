"""The read wake-up threshold (``SO_RCVLOWAT``) on real TCP sockets: what the kernel is asked,
that it then holds a socket unreadable until that many bytes are in, and the safety nets."""

from __future__ import annotations

import asyncio
import select
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from ovserve.frontends.read_wakeup import (
    STALL_SECONDS,
    WAKE_MAX_BYTES,
    WAKE_MIN_BYTES,
    ReadWakeup,
)

from _async import async_test


@dataclass
class SocketTransport:
    """Just what ReadWakeup asks of a transport, over a real connected socket."""

    sock: socket.socket
    tls: bool = False
    closing: bool = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "socket":
            return self.sock
        if name == "sslcontext":
            return object() if self.tls else None
        return default

    def is_closing(self) -> bool:
        return self.closing


@pytest.fixture
def connected() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A TCP connection on loopback: (the server's end, the client's end)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    with server, client:
        yield server, client


def threshold(sock: socket.socket) -> int:
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT)


def attached(sock: socket.socket) -> ReadWakeup:
    """A ReadWakeup on the running loop, attached to ``sock``."""
    wakeup = ReadWakeup(asyncio.get_running_loop())
    wakeup.attach(SocketTransport(sock))
    return wakeup


def readable(sock: socket.socket) -> bool:
    return bool(select.select([sock], [], [], 0.2)[0])


@async_test
async def test_a_large_body_raises_the_threshold_and_a_small_remainder_lowers_it(
    connected: tuple[socket.socket, socket.socket],
) -> None:
    server, _ = connected
    wakeup = attached(server)
    wakeup.expect(200_000)
    assert threshold(server) == 200_000
    wakeup.expect(150_000)
    assert threshold(server) == 150_000
    wakeup.expect(WAKE_MIN_BYTES - 1)
    assert threshold(server) == 1
    wakeup.expect(10**9)
    assert 1 < threshold(server) <= WAKE_MAX_BYTES
    wakeup.close()


@async_test
async def test_the_kernel_holds_the_socket_unreadable_until_the_threshold_is_in(
    connected: tuple[socket.socket, socket.socket],
) -> None:
    server, client = connected
    wakeup = attached(server)
    wakeup.expect(150_000)
    client.sendall(b"x" * 100_000)
    assert not readable(server)
    client.sendall(b"x" * 50_000)
    assert readable(server)
    wakeup.close()


@async_test
async def test_a_body_that_stops_coming_drops_the_threshold(
    connected: tuple[socket.socket, socket.socket],
) -> None:
    """A client that stops mid-body (or was reset) must not hold back the connection's other
    bytes: a small frame is readable again once the stall timer fired."""
    server, client = connected
    wakeup = attached(server)
    wakeup.expect(500_000)
    client.sendall(b"ping")
    assert not readable(server)
    await asyncio.sleep(STALL_SECONDS * 4)
    assert threshold(server) == 1
    assert readable(server)
    wakeup.close()


@async_test
async def test_progress_keeps_the_threshold_until_the_body_is_in(
    connected: tuple[socket.socket, socket.socket],
) -> None:
    """Each read that leaves a large remainder sets a new threshold and restarts the timer."""
    server, _ = connected
    wakeup = attached(server)
    for left in (900_000, 700_000, 500_000):
        wakeup.expect(left)
        await asyncio.sleep(STALL_SECONDS / 2)
        assert threshold(server) == left
    wakeup.close()
    await asyncio.sleep(STALL_SECONDS * 2)  # closed: the timer is gone with it
    assert threshold(server) == 500_000


@pytest.mark.parametrize("transport_state", ["tls", "closing"])
@async_test
async def test_tls_and_closing_connections_are_left_alone(
    connected: tuple[socket.socket, socket.socket], transport_state: str
) -> None:
    """Under TLS byte counts of the body say nothing about the socket's records; a closing
    transport's descriptor may already belong to someone else."""
    server, _ = connected
    transport = SocketTransport(server, tls=transport_state == "tls")
    wakeup = ReadWakeup(asyncio.get_running_loop())
    wakeup.attach(transport)
    transport.closing = transport_state == "closing"
    wakeup.expect(200_000)
    assert threshold(server) == 1
    wakeup.close()


@async_test
async def test_a_unix_socket_is_left_alone() -> None:
    left, right = socket.socketpair()
    with left, right:
        wakeup = attached(left)
        wakeup.expect(200_000)
        assert threshold(left) == 1
