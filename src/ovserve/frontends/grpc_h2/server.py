"""The native gRPC transport: listening sockets, TLS (ALPN ``h2``) and a graceful stop."""

from __future__ import annotations

import asyncio

import grpc

from ovserve.config.server_config import ServerConfig
from ovserve.frontends.bind import listen
from ovserve.frontends.descriptors import grpc_connection_cap
from ovserve.frontends.drain import drain
from ovserve.frontends.grpc_h2.calls import Dispatcher
from ovserve.frontends.grpc_h2.connection import ConnectionLimits, Http2Connection, ServerState
from ovserve.frontends.grpc_limits import IDLE_CONNECTION_MS
from ovserve.frontends.request_budget import RequestBudget
from ovserve.frontends.tls import ssl_context


class NativeGrpcFrontend:
    """Listening sockets and the connections they accepted."""

    def __init__(
        self, servers: list[asyncio.Server], state: ServerState, dispatcher: Dispatcher
    ) -> None:
        self._servers = servers
        self._state = state
        self._dispatcher = dispatcher

    async def stop(self, grace: float) -> None:
        """Refuse new calls (GOAWAY), let calls in flight finish within ``grace`` seconds."""
        for server in self._servers:
            server.close()
        for connection in list(self._state.connections):
            connection.shutdown()
        connections, dispatcher = self._state.connections, self._dispatcher
        await drain(lambda: set(dispatcher.tasks), lambda: any(c.busy for c in connections), grace)
        # Replies written just now leave with the close; a connection still open after a
        # moment (a client that does not read) is cut.
        for _ in range(20):
            if not self._state.connections:
                break
            await asyncio.sleep(0.05)
        for connection in list(self._state.connections):
            connection.abort()
        for server in self._servers:
            await server.wait_closed()


async def start_native_grpc(
    methods: dict[str, grpc.RpcMethodHandler], config: ServerConfig, budget: RequestBudget
) -> NativeGrpcFrontend:
    """Serve ``methods`` (by full method name) on ``--port`` at every ``--grpc_bind_address``;
    large messages take from ``budget``."""
    dispatcher = Dispatcher(methods, budget)
    state = ServerState(
        dispatcher,
        ConnectionLimits(
            max_message_bytes=config.max_grpc_message_bytes,
            max_connections=grpc_connection_cap(config.grpc_max_connections),
            handshake_seconds=config.rest_header_timeout_seconds,
            idle_seconds=IDLE_CONNECTION_MS / 1000,
        ),
    )
    context = ssl_context(config.tls, "h2") if config.tls is not None else None

    def protocol() -> Http2Connection:
        return Http2Connection(state)

    servers = await listen(
        "gRPC",
        protocol,
        config.grpc_bind_address,
        config.port,
        tls=context,
        handshake_seconds=config.rest_header_timeout_seconds,
        reuse_port=config.workers > 1,
    )
    return NativeGrpcFrontend(servers, state, dispatcher)
