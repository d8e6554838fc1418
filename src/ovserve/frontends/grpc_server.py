"""The gRPC server: both APIs on one ``grpc.aio`` server, errors mapped in one interceptor."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from ovserve.config.server_config import ServerConfig
from ovserve.errors import ConfigError, InvalidInput, OvserveError
from ovserve.frontends._generated.kserve import grpc_predict_v2_pb2_grpc
from ovserve.frontends._generated.tensorflow_serving.apis import (
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
)
from ovserve.frontends.bind import bind_targets, check_free
from ovserve.frontends.failure_log import FAILURES, quiet_client_errors
from ovserve.frontends.grpc_limits import grpc_hygiene_options
from ovserve.frontends.kserve import grpc_servicer as kserve_servicer
from ovserve.frontends.kserve.grpc_servicer import KServeServicer
from ovserve.frontends.status_mapping import grpc_status
from ovserve.frontends.tfserving import grpc_servicer as tfs_servicer
from ovserve.frontends.tfserving.grpc_servicer import ModelServicer, PredictionServicer
from ovserve.frontends.tls import grpc_credentials
from ovserve.serving.service import ServingService

log = logging.getLogger(__name__)

Behavior = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]

REQUEST_PARSERS = {**kserve_servicer.REQUEST_PARSERS, **tfs_servicer.REQUEST_PARSERS}
"""Each API's own request parsers, by full method name."""


class ErrorInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Turns OvserveError into its gRPC status; anything else becomes INTERNAL, logged once."""

    def __init__(self) -> None:
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        """Wrap each unary method once and reuse the wrapper."""
        method = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is not None:
            return wrapped
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        wrapped = grpc.unary_unary_rpc_method_handler(
            _map_errors(method, handler.unary_unary),
            request_deserializer=_tolerant(
                REQUEST_PARSERS.get(method, handler.request_deserializer)
            ),
            response_serializer=handler.response_serializer,
        )
        self._wrapped[method] = wrapped
        return wrapped


class _Unparsable:
    """Stands in for a request body that is not a valid protobuf message."""


_UNPARSABLE = _Unparsable()


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """A deserializer that yields a marker instead of raising, so the error gets our status."""
    if deserializer is None:
        return None

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except DecodeError:
            return _UNPARSABLE

    return deserialize


def _map_errors(method: str, behavior: Behavior) -> Behavior:
    short = method.rsplit("/", 1)[-1]

    async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            if request is _UNPARSABLE:
                raise InvalidInput("the request is not a valid protobuf message")
            return await behavior(request, context)
        except OvserveError as error:
            status = grpc_status(error.code)
            FAILURES.record("gRPC", status.name, f"{short}: {error.text}")
            await context.abort(status, error.text)
        except Exception:
            log.exception("%s failed with an unexpected error", short)
            await context.abort(grpc.StatusCode.INTERNAL, "Internal server error")

    return guarded


class GrpcFrontend:
    """A started grpc.aio server."""

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server

    async def stop(self, grace: float) -> None:
        """Refuse new calls, let in-flight ones finish within ``grace`` seconds."""
        await self._server.stop(grace)


async def start_grpc_server(service: ServingService, config: ServerConfig) -> GrpcFrontend:
    """Serve TF Serving and KServe gRPC on ``--port``."""
    limit = config.max_grpc_message_bytes
    targets = bind_targets(config.grpc_bind_address, config.port)
    for target in targets:
        check_free("gRPC", target, config.port, reuse_port=config.workers > 1)
    quiet_client_errors()
    server = grpc.aio.server(
        interceptors=[ErrorInterceptor()],
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
            ("grpc.so_reuseport", 1 if config.workers > 1 else 0),
            *grpc_hygiene_options(config),
        ],
    )
    grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
        KServeServicer(service), server
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionServicer(service), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(service), server)
    for target in targets:
        try:
            bound = (
                server.add_secure_port(target, grpc_credentials(config.tls))
                if config.tls is not None
                else server.add_insecure_port(target)
            )
        except RuntimeError:
            bound = 0
        if bound == 0:
            raise ConfigError(f"Cannot bind gRPC to {target}: the address is in use or invalid")
    await server.start()
    return GrpcFrontend(server)
