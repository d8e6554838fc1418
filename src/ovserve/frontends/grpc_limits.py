"""gRPC core options that bound what slow or idle clients can hold.

A TCP connection that never completes its HTTP/2 handshake is dropped after the REST header
timeout (gRPC core's default is 120 s); connections past the cap from
:mod:`ovserve.frontends.descriptors` are refused, so a gRPC flood leaves descriptors for REST; a
connection with no calls for five minutes is closed (clients reconnect transparently); clients
may ping at most every 10 s without calls.
"""

from __future__ import annotations

from typing import Final

from ovserve.config.server_config import ServerConfig
from ovserve.frontends.descriptors import grpc_connection_cap

IDLE_CONNECTION_MS: Final = 5 * 60 * 1000
MIN_PING_INTERVAL_MS: Final = 10 * 1000


def grpc_hygiene_options(config: ServerConfig) -> list[tuple[str, int]]:
    """Channel arguments for ``grpc.aio.server``."""
    return [
        ("grpc.server_handshake_timeout_ms", int(config.rest_header_timeout_seconds * 1000)),
        ("grpc.max_connection_idle_ms", IDLE_CONNECTION_MS),
        ("grpc.max_allowed_incoming_connections", grpc_connection_cap(config.grpc_max_connections)),
        ("grpc.http2.min_ping_interval_without_data_ms", MIN_PING_INTERVAL_MS),
    ]
