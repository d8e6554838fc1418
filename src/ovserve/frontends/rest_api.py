"""The REST APIs assembled over the HTTP transport: KServe v2, TF Serving, config, metrics.

This is the REST counterpart of ``grpc_server.py``: it chooses the routes; ``rest/`` only
carries HTTP.
"""

from __future__ import annotations

import re

from ovserve.config.server_config import ServerConfig
from ovserve.frontends.kserve.rest_routes import kserve_routes
from ovserve.frontends.request_budget import RequestBudget
from ovserve.frontends.rest.app import RestApp
from ovserve.frontends.rest.http import Request, Response
from ovserve.frontends.rest.router import Route, Router, route
from ovserve.frontends.rest.server import RestFrontend, start_http_server
from ovserve.frontends.tfserving.rest_routes import tfs_routes
from ovserve.metrics import Metrics, render_everywhere
from ovserve.serving.service import ServingService

PROMETHEUS_TEXT = b"text/plain; version=0.0.4; charset=utf-8"


def metrics_routes(metrics: Metrics) -> list[Route]:
    """``GET /metrics`` in Prometheus text, only when metrics are enabled."""
    if not metrics.enabled:
        return []

    async def scrape(request: Request, match: re.Match[str]) -> Response:
        return Response(body=await render_everywhere(metrics), content_type=PROMETHEUS_TEXT)

    return [route("GET", "/metrics", scrape)]


def build_app(service: ServingService) -> RestApp:
    """The app with every route; inference routes first (they are matched in order)."""
    return RestApp(
        Router([*kserve_routes(service), *tfs_routes(service), *metrics_routes(service.metrics)])
    )


async def start_rest_server(
    service: ServingService, config: ServerConfig, budget: RequestBudget
) -> RestFrontend:
    """Serve the REST APIs on ``--rest_port`` at every ``--rest_bind_address``."""
    return await start_http_server(build_app(service).handle, config, budget)
