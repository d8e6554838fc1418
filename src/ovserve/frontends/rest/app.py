"""The REST application: routing, and errors answered as OVMS's ``{"error": ...}``.

It takes whole requests from :mod:`ovserve.frontends.rest.protocol` (which owns the socket,
HTTP parsing and the body-size limit) and returns whole responses. Which routes exist is decided
above this package (``frontends/rest_api.py``), as the gRPC servicers are chosen above gRPC.
"""

from __future__ import annotations

import logging

from ovserve.errors import ErrorCode, OvserveError
from ovserve.frontends.rest.http import Request, Response, error_response
from ovserve.frontends.rest.router import Router

log = logging.getLogger(__name__)

_INTERNAL_ERROR = OvserveError(code=ErrorCode.INTERNAL)


class RestApp:
    """Answers requests from the routes."""

    def __init__(self, router: Router) -> None:
        self._router = router

    async def handle(self, request: Request) -> Response:
        """One request to one response; never raises."""
        try:
            route, match = self._router.resolve(request.method, request.path)
            return await route.handler(request, match)
        except OvserveError as error:
            return error_response(error)
        except Exception:
            log.exception("%s %s failed with an unexpected error", request.method, request.path)
            return error_response(_INTERNAL_ERROR)
