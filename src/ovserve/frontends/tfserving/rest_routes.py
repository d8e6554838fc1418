"""TF Serving REST (status, metadata, predict) and OVMS's ``/v1/config`` endpoints."""

from __future__ import annotations

import re

from ovserve.errors import ErrorCode, ModelNotFound
from ovserve.frontends.rest.http import Request, Response, rest_error
from ovserve.frontends.rest.router import Route, route, version_of
from ovserve.frontends.tfserving import rest_codec
from ovserve.metrics import REST, TFS, Endpoint
from ovserve.serving.service import ServingService

# A version or a label (labels are accepted and ignored, as OVMS does).
_VERSION = r"(?:/versions/(?P<version>[0-9]+)|/labels/(?P<label>\w+))?"
_PREDICT = r"/v1/models/(?P<name>[^/:]+)" + _VERSION + r":(?P<verb>classify|regress|predict)"
_STATUS = r"/v1/models(?:/(?P<name>[^/:]+))?" + _VERSION

PREDICT = Endpoint(TFS, REST, "Predict", versioned=True)
METADATA = Endpoint(TFS, REST, "GetModelMetadata", versioned=True)
STATUS = Endpoint(TFS, REST, "GetModelStatus", versioned=False)


class TfsRest:
    """Handlers over the serving core."""

    def __init__(self, service: ServingService) -> None:
        self._service = service

    async def predict(self, request: Request, match: re.Match[str]) -> Response:
        """``POST /v1/models/{m}[/versions/{v}]:predict`` in row or column format."""
        if match.group("verb") != "predict":
            raise rest_error(ErrorCode.REST_NOT_FOUND)
        with self._service.call(PREDICT, match.group("name"), version_of(match)) as call:
            parsed = rest_codec.decode_predict(request.body, call.inputs)
            result = await call.infer(parsed.inputs)
            return Response(body=rest_codec.encode_predict(result, parsed.order))

    async def status(self, request: Request, match: re.Match[str]) -> Response:
        """``GET /v1/models/{m}[/versions/{v}]``: every version, or one."""
        name = match.group("name")
        if not name:
            raise ModelNotFound()
        statuses = self._service.model_status(STATUS, name, version_of(match))
        return Response(body=rest_codec.encode_status(name, statuses))

    async def metadata(self, request: Request, match: re.Match[str]) -> Response:
        """``GET /v1/models/{m}[/versions/{v}]/metadata``."""
        name = match.group("name")
        if not name:
            raise ModelNotFound()
        metadata = self._service.model_metadata(METADATA, name, version_of(match))
        return Response(body=rest_codec.encode_metadata(metadata))

    async def config_status(self, request: Request, match: re.Match[str]) -> Response:
        """``GET /v1/config``: every model's version statuses."""
        return Response(body=rest_codec.encode_config(self._service.all_statuses()))

    async def config_reload(self, request: Request, match: re.Match[str]) -> Response:
        """``POST /v1/config/reload``: 201 when anything changed, else 200; body as GET."""
        changed = await self._service.reload_config()
        body = rest_codec.encode_config(self._service.all_statuses())
        return Response(status=201 if changed else 200, body=body)


def tfs_routes(service: ServingService) -> list[Route]:
    """The TF Serving REST routes and OVMS's config endpoints."""
    handlers = TfsRest(service)
    return [
        route("POST", _PREDICT, handlers.predict),
        route("GET", _STATUS + "/metadata", handlers.metadata),
        route("GET", _STATUS, handlers.status),
        route("POST", "/v1/config/reload", handlers.config_reload),
        route("GET", "/v1/config", handlers.config_status),
    ]
