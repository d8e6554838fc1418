"""KServe v2 REST: health, server and model metadata, model readiness, inference."""

from __future__ import annotations

import re

from ovserve.errors import ServerNotReady
from ovserve.frontends.kserve import rest_codec
from ovserve.frontends.rest.http import OCTET_STREAM, Request, Response
from ovserve.frontends.rest.router import Route, route, version_of
from ovserve.metrics import KSERVE, REST, Endpoint
from ovserve.serving.service import ServingService

_MODEL = r"/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[0-9]+))?"

INFER = Endpoint(KSERVE, REST, "ModelInfer", versioned=True)
METADATA = Endpoint(KSERVE, REST, "ModelMetadata", versioned=True)
READY = Endpoint(KSERVE, REST, "ModelReady", versioned=False)


class KServeRest:
    """Handlers over the serving core; errors propagate to the app as OvserveError."""

    def __init__(self, service: ServingService) -> None:
        self._service = service

    async def infer(self, request: Request, match: re.Match[str]) -> Response:
        """``POST /v2/models/{m}[/versions/{v}]/infer``: JSON and binary tensors."""
        header_length = rest_codec.parse_header_length(
            request.header(b"inference-header-content-length")
        )
        # Lazy: as OVMS, a malformed body is reported even when the model is unknown.
        with self._service.call(INFER, match.group("name"), version_of(match), lazy=True) as call:
            parsed = rest_codec.decode_infer_request(request.body, header_length)
            result = await call.infer(parsed.inputs, parsed.outputs)
            header, binary = rest_codec.encode_infer_response(result, parsed)
        if not binary:
            return Response(body=header)
        return Response(
            body=header,
            content_type=OCTET_STREAM,
            headers=((b"inference-header-content-length", str(len(header)).encode()),),
            tail=tuple(binary),
        )

    async def model_ready(self, request: Request, match: re.Match[str]) -> Response:
        """``GET .../ready``: 200 with an empty body, or 404 while the version is not ready.

        Unlike inference, version 0 is not the default version here: OVMS answers "not found".
        """
        text = match.group("version")
        version = int(text) if text else None
        self._service.require_ready(READY, match.group("name"), version)
        return Response()

    async def model_metadata(self, request: Request, match: re.Match[str]) -> Response:
        """``GET /v2/models/{m}[/versions/{v}]``."""
        metadata = self._service.model_metadata(METADATA, match.group("name"), version_of(match))
        return Response(body=rest_codec.encode_metadata(metadata))

    async def server_live(self, request: Request, match: re.Match[str]) -> Response:
        """``GET /v2/health/live``: live while the process answers."""
        return Response()

    async def server_ready(self, request: Request, match: re.Match[str]) -> Response:
        """``GET /v2/health/ready``: 200 once start-up loading is done, 503 before and after."""
        if not self._service.ready:
            raise ServerNotReady()
        return Response()

    async def server_metadata(self, request: Request, match: re.Match[str]) -> Response:
        """``GET /v2``."""
        return Response(
            body=rest_codec.encode_server_metadata(
                self._service.server_name, self._service.server_version
            )
        )


def kserve_routes(service: ServingService) -> list[Route]:
    """The KServe v2 REST routes, inference first."""
    handlers = KServeRest(service)
    return [
        route("POST", _MODEL + "/infer", handlers.infer),
        route("GET", _MODEL + "/ready", handlers.model_ready),
        route("GET", _MODEL + "/?", handlers.model_metadata),
        route("GET", "/v2/health/live", handlers.server_live),
        route("GET", "/v2/health/ready", handlers.server_ready),
        route("GET", "/v2/?", handlers.server_metadata),
    ]
