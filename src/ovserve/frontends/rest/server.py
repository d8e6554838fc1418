"""The HTTP server: the REST app behind :class:`HttpProtocol` on the running (uv)loop."""

from __future__ import annotations

import asyncio
import logging

from ovserve.config.server_config import ServerConfig
from ovserve.errors import ConfigError
from ovserve.frontends.grpc_server import bind_targets
from ovserve.frontends.kserve.rest_routes import kserve_routes
from ovserve.frontends.rest.app import RestApp
from ovserve.frontends.rest.http import Request, Response
from ovserve.frontends.rest.protocol import HttpProtocol, ServerState
from ovserve.frontends.rest.router import Route, Router, route
from ovserve.frontends.tfserving.rest_routes import tfs_routes
from ovserve.metrics import Metrics
from ovserve.serving.service import ServingService

log = logging.getLogger(__name__)

PROMETHEUS_TEXT = b"text/plain; version=0.0.4; charset=utf-8"


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
        tasks = set(self._state.tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
        for connection in list(self._state.connections):
            connection.abort()
        for server in self._servers:
            await server.wait_closed()


def build_app(service: ServingService, metrics: Metrics) -> RestApp:
    """The app with every route; ``/metrics`` exists only when metrics are enabled."""
    routes: list[Route] = [*kserve_routes(service), *tfs_routes(service)]
    if metrics.enabled:

        async def scrape(request: Request, match: object) -> Response:
            return Response(body=metrics.render(), content_type=PROMETHEUS_TEXT)

        routes.append(route("GET", "/metrics", scrape))
    return RestApp(Router(routes), service, metrics)


async def start_rest_server(
    service: ServingService, config: ServerConfig, metrics: Metrics
) -> RestFrontend:
    """Serve the REST APIs on ``--rest_port`` at every ``--rest_bind_address``."""
    app = build_app(service, metrics)
    state = ServerState()
    limit = config.max_rest_body_bytes

    def protocol() -> HttpProtocol:
        return HttpProtocol(app.handle, state, limit)

    loop = asyncio.get_running_loop()
    servers: list[asyncio.Server] = []
    for target in bind_targets(config.rest_bind_address, config.rest_port):
        host = target.rsplit(":", 1)[0].strip("[]")
        try:
            servers.append(await loop.create_server(protocol, host=host, port=config.rest_port))
        except OSError as error:
            for server in servers:
                server.close()
            raise ConfigError(f"Cannot bind REST to {target}: {error.strerror}") from None
    return RestFrontend(servers, state)
