"""The HTTP transport: a request handler behind :class:`HttpProtocol` on the running (uv)loop.

It knows sockets, addresses and shutdown only; the APIs it serves are assembled above it
(``frontends/rest_api.py``) and handed in as one ``handle`` callable.
"""

from __future__ import annotations

import asyncio
import logging

from ovserve.config.server_config import ServerConfig
from ovserve.frontends.bind import listen
from ovserve.frontends.drain import drain
from ovserve.frontends.request_budget import RequestBudget
from ovserve.frontends.rest.limits import log_limits, rest_server_state
from ovserve.frontends.rest.protocol import Handle, HttpProtocol, ServerState
from ovserve.frontends.tls import rest_ssl_context

log = logging.getLogger(__name__)


class RestFrontend:
    """Listening sockets and the connections they accepted."""

    def __init__(self, servers: list[asyncio.Server], state: ServerState) -> None:
        self._servers = servers
        self._state = state

    async def stop(self, grace: float) -> None:
        """Stop accepting, let in-flight requests finish within ``grace`` seconds, close."""
        for server in self._servers:
            server.close()
        for connection in list(self._state.connections):
            connection.shutdown()
        state = self._state
        # Requests still arriving become tasks once complete: wait for both, within the grace.
        await drain(
            lambda: set(state.tasks),
            lambda: bool(state.tasks) or any(not c.settled for c in state.connections),
            grace,
        )
        for connection in list(self._state.connections):
            connection.abort()
        for server in self._servers:
            await server.wait_closed()


async def start_http_server(
    handle: Handle, config: ServerConfig, budget: RequestBudget
) -> RestFrontend:
    """Serve ``handle`` on ``--rest_port`` at every ``--rest_bind_address``; large bodies take
    from ``budget``."""
    state = rest_server_state(config, budget)
    limit = config.max_rest_body_bytes
    ssl_context = rest_ssl_context(config.tls) if config.tls is not None else None

    def protocol() -> HttpProtocol:
        return HttpProtocol(handle, state, limit)

    servers = await listen(
        "REST",
        protocol,
        config.rest_bind_address,
        config.rest_port,
        tls=ssl_context,
        handshake_seconds=config.rest_header_timeout_seconds,
        reuse_port=config.workers > 1,
    )
    log_limits(state)
    return RestFrontend(servers, state)
