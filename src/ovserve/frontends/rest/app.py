"""The REST application: routing, errors as ``{"error": ...}``, request metrics.

It takes whole requests from :mod:`ovserve.frontends.rest.protocol` (which owns the socket,
HTTP parsing and the body-size limit) and returns whole responses.
"""

from __future__ import annotations

import logging
import re
import time

from ovserve.errors import ErrorCode, OvserveError
from ovserve.frontends.request_metrics import count_failure
from ovserve.frontends.rest.http import Request, Response, error_response
from ovserve.frontends.rest.router import Route, Router, version_of
from ovserve.metrics import REST, Metrics
from ovserve.serving.service import ServingService

log = logging.getLogger(__name__)

_INTERNAL_ERROR = OvserveError(code=ErrorCode.INTERNAL)


class RestApp:
    """Answers requests from the routes; counts them when metrics are on."""

    def __init__(self, router: Router, service: ServingService, metrics: Metrics) -> None:
        self._router = router
        self._service = service
        self._metrics = metrics if metrics.enabled else None

    async def handle(self, request: Request) -> Response:
        """One request to one response; never raises."""
        try:
            route, match = self._router.resolve(request.method, request.path)
            if route.counted is not None and self._metrics is not None:
                return await self._counted(route, match, request, self._metrics)
            return await route.handler(request, match)
        except OvserveError as error:
            return error_response(error)
        except Exception:
            log.exception("%s %s failed with an unexpected error", request.method, request.path)
            return error_response(_INTERNAL_ERROR)

    async def _counted(
        self, route: Route, match: re.Match[str], request: Request, metrics: Metrics
    ) -> Response:
        endpoint = route.counted
        assert endpoint is not None
        started = time.perf_counter()
        name = match.group("name") or ""
        try:
            response = await route.handler(request, match)
        except OvserveError:
            count_failure(metrics, self._service, endpoint, name, version_of(match))
            raise
        metrics.record_request(endpoint, name, response.version, ok=True)
        result = response.result
        if result is not None:
            micros = (time.perf_counter() - started) * 1e6
            metrics.record_request_time(REST, name, result.model_version, micros)
        return response
