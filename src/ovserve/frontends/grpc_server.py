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
from ovserve.frontends.grpc_metrics import GrpcMetrics
from ovserve.frontends.kserve import grpc_servicer as kserve_servicer
from ovserve.frontends.kserve.grpc_servicer import KServeServicer
from ovserve.frontends.status_mapping import grpc_status
from ovserve.frontends.tfserving import grpc_servicer as tfs_servicer
from ovserve.frontends.tfserving.grpc_servicer import ModelServicer, PredictionServicer
from ovserve.metrics import Metrics
from ovserve.serving.service import ServingService

log = logging.getLogger(__name__)

Behavior = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]

REQUEST_PARSERS = {**kserve_servicer.REQUEST_PARSERS, **tfs_servicer.REQUEST_PARSERS}
"""Each API's own request parsers, by full method name."""


class ErrorInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Turns OvserveError into its gRPC status; anything else becomes INTERNAL, logged once.

    With metrics on, it also counts the methods OVMS counts.
    """

    def __init__(self, metrics: GrpcMetrics | None = None) -> None:
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}
        self._metrics = metrics

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
        behavior = handler.unary_unary
        if self._metrics is not None and self._metrics.counts(method):
            behavior = _counted(method, behavior, self._metrics)
        wrapped = grpc.unary_unary_rpc_method_handler(
            _map_errors(method, behavior),
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
            log.info("%s failed: %s", short, error.text)
            await context.abort(grpc_status(error.code), error.text)
        except Exception:
            log.exception("%s failed with an unexpected error", short)
            await context.abort(grpc.StatusCode.INTERNAL, "Internal server error")

    return guarded


def _counted(method: str, behavior: Behavior, metrics: GrpcMetrics) -> Behavior:
    async def counted(request: Any, context: grpc.aio.ServicerContext) -> Any:
        started = metrics.started()
        try:
            reply = await behavior(request, context)
        except Exception:
            metrics.failed(method, request)
            raise
        metrics.succeeded(method, request, reply, started)
        return reply

    return counted


def bind_targets(addresses: str, port: int) -> list[str]:
    """``host:port`` for each address of a comma list (IPv6 in brackets)."""
    targets = []
    for address in (part.strip() for part in addresses.split(",")):
        if not address:
            continue
        host = f"[{address}]" if ":" in address and not address.startswith("[") else address
        targets.append(f"{host}:{port}")
    return targets


class GrpcFrontend:
    """A started grpc.aio server."""

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server

    async def stop(self, grace: float) -> None:
        """Refuse new calls, let in-flight ones finish within ``grace`` seconds."""
        await self._server.stop(grace)


async def start_grpc_server(
    service: ServingService, config: ServerConfig, metrics: Metrics | None = None
) -> GrpcFrontend:
    """Serve TF Serving and KServe gRPC on ``--port``."""
    limit = config.max_grpc_message_bytes
    counting = GrpcMetrics(service, metrics) if metrics is not None and metrics.enabled else None
    server = grpc.aio.server(
        interceptors=[ErrorInterceptor(counting)],
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
            ("grpc.so_reuseport", 0),
        ],
    )
    grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
        KServeServicer(service), server
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionServicer(service), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(service), server)
    for target in bind_targets(config.grpc_bind_address, config.port):
        try:
            bound = server.add_insecure_port(target)
        except RuntimeError as error:
            raise ConfigError(f"Cannot bind gRPC to {target}: {error}") from None
        if bound == 0:
            raise ConfigError(f"Cannot bind gRPC to {target}: the address is in use or invalid")
    await server.start()
    return GrpcFrontend(server)
