"""Listening addresses shared by both transports, and a clear answer when a port is taken.

gRPC's C core reports a taken port with its own log line and a generic "Failed to bind"; a
person starting the server should read one line that names the port and says it is in use, so
each address is tried with a plain socket first.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
from collections.abc import Callable

from ovserve.errors import ConfigError


def bind_targets(addresses: str, port: int) -> list[str]:
    """``host:port`` for each address of a comma list (IPv6 in brackets)."""
    targets = []
    for address in (part.strip() for part in addresses.split(",")):
        if not address:
            continue
        host = f"[{address}]" if ":" in address and not address.startswith("[") else address
        targets.append(f"{host}:{port}")
    return targets


def host_of(target: str) -> str:
    """The host part of a ``host:port`` target, without IPv6 brackets."""
    return target.rsplit(":", 1)[0].strip("[]")


def port_in_use(what: str, target: str, port: int) -> ConfigError:
    """The one start-up line for a taken port."""
    return ConfigError(f"{what} port {port} is already in use (binding {target})")


def check_free(what: str, target: str, port: int, *, reuse_port: bool = False) -> None:
    """Raise :func:`port_in_use` when something already listens on ``target``, or ConfigError
    naming the address when it cannot be bound at all (not an address of this host).

    ``reuse_port``: the workers of one server share the port (SO_REUSEPORT), so a sibling's
    listener is not "in use"; a listener without SO_REUSEPORT still is."""
    host = host_of(target)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        return
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        # The servers bind with SO_REUSEADDR too: only a live listener makes this fail.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            probe.bind(address)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise port_in_use(what, target, port) from None
            raise ConfigError(f"Cannot bind {what} to {target}: {error.strerror}") from None


async def listen(
    what: str,
    protocol: Callable[[], asyncio.BaseProtocol],
    addresses: str,
    port: int,
    *,
    tls: ssl.SSLContext | None,
    handshake_seconds: float,
    reuse_port: bool,
) -> list[asyncio.Server]:
    """Listening sockets for ``protocol`` at every address of ``addresses`` (a comma list) on the
    running loop; a taken port or a bad address is a ConfigError naming it, with nothing left
    listening."""
    loop = asyncio.get_running_loop()
    servers: list[asyncio.Server] = []
    for target in bind_targets(addresses, port):
        try:
            servers.append(
                await loop.create_server(
                    protocol,
                    host=host_of(target),
                    port=port,
                    ssl=tls,
                    ssl_handshake_timeout=handshake_seconds if tls is not None else None,
                    reuse_port=reuse_port,
                )
            )
        except OSError as error:
            for server in servers:
                server.close()
            if error.errno == errno.EADDRINUSE:
                raise port_in_use(what, target, port) from None
            raise ConfigError(f"Cannot bind {what} to {target}: {error.strerror}") from None
    return servers
