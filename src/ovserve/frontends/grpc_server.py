"""The gRPC server: both APIs on one ``grpc.aio`` server, errors mapped in one place (``guard``)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

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
from ovserve.frontends.grpc_h2.server import NativeGrpcFrontend, start_native_grpc
from ovserve.frontends.grpc_limits import grpc_hygiene_options
from ovserve.frontends.kserve import grpc_servicer as kserve_servicer
from ovserve.frontends.kserve.grpc_servicer import KServeServicer
from ovserve.frontends.memory_trim import Trimmer
from ovserve.frontends.request_budget import RequestBudget
from ovserve.frontends.status_mapping import grpc_status
from ovserve.frontends.tfserving import grpc_servicer as tfs_servicer
from ovserve.frontends.tfserving.grpc_servicer import ModelServicer, PredictionServicer
from ovserve.frontends.tls import grpc_credentials
from ovserve.serving.service import ServingService

log = logging.getLogger(__name__)

Behavior = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]

REQUEST_PARSERS = {**kserve_servicer.REQUEST_PARSERS, **tfs_servicer.REQUEST_PARSERS}
"""Each API's own request parsers, by full method name."""


def guard(
    method: str, handler: grpc.RpcMethodHandler, trimmer: Trimmer | None = None
) -> grpc.RpcMethodHandler:
    """``handler`` with our errors turned into statuses and our request parser, if any.

    Unary methods only (the stream method reports its errors in-band); others are returned
    unchanged. A large request asks ``trimmer`` to give freed memory back after the burst.
    """
    if handler.unary_unary is None:
        return handler
    return grpc.unary_unary_rpc_method_handler(
        _map_errors(method, handler.unary_unary),
        request_deserializer=_tolerant(
            REQUEST_PARSERS.get(method, handler.request_deserializer), trimmer
        ),
        response_serializer=handler.response_serializer,
    )


class _GuardedRegistration:
    """Stands in for the server in the generated ``add_*_to_server`` functions.

    Each method's handler is wrapped once here, at registration, and kept by full method name
    (``methods``) for the native transport, or registered with a grpc.aio ``server`` both as a
    generic handler and as a registered method. A server interceptor did the same wrapping, but
    grpc.aio awaits every interceptor on every call: a coroutine and a lookup per request. The
    generated code hands each service's handlers over twice (a generic handler, then the same
    dictionary as registered methods); the dictionary is the one taken.
    """

    def __init__(self, server: grpc.aio.Server | None, trimmer: Trimmer) -> None:
        self._server = server
        self._trimmer = trimmer
        self.services: list[str] = []
        self.methods: dict[str, grpc.RpcMethodHandler] = {}

    def add_generic_rpc_handlers(self, generic_handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        """Unwrapped: the same handlers arrive next, by name, in add_registered_method_handlers."""

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        """Wrap every method of ``service`` and register it on the real server."""
        guarded = {
            name: guard(f"/{service}/{name}", handler, self._trimmer)
            for name, handler in handlers.items()
        }
        self.methods.update({f"/{service}/{name}": h for name, h in guarded.items()})
        if self._server is not None:
            self._server.add_generic_rpc_handlers(
                (grpc.method_handlers_generic_handler(service, guarded),)
            )
            self._server.add_registered_method_handlers(service, guarded)
        self.services.append(service)


TRIM_AFTER_BYTES: Final = 128 * 1024
"""Requests from this size ask for a ``malloc_trim`` after the burst: the process keeps their
buffers for reuse (``heap.keep_request_buffers``) and this gives them back once idle."""


class _Unparsable:
    """Stands in for a request body that is not a valid protobuf message."""


_UNPARSABLE = _Unparsable()


def _tolerant(
    deserializer: Callable[[bytes], Any] | None, trimmer: Trimmer | None
) -> Callable[[bytes], Any] | None:
    """A deserializer that yields a marker instead of raising, so the error gets our status."""
    if deserializer is None:
        return None

    def deserialize(data: bytes) -> Any:
        if trimmer is not None and len(data) >= TRIM_AFTER_BYTES:
            trimmer.soon()
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


def _register(
    service: ServingService, server: grpc.aio.Server | None, trimmer: Trimmer
) -> _GuardedRegistration:
    """Both APIs' servicers, their handlers guarded; on ``server`` too when it is given."""
    registration = _GuardedRegistration(server, trimmer)
    generated: Any = registration
    grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
        KServeServicer(service), generated
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionServicer(service), generated
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(service), generated)
    if len(registration.services) != 3:  # generated code without registered methods
        raise RuntimeError(f"gRPC services left unregistered; registered: {registration.services}")
    return registration


async def start_grpc_server(
    service: ServingService, config: ServerConfig, budget: RequestBudget
) -> GrpcFrontend | NativeGrpcFrontend:
    """Serve TF Serving and KServe gRPC on ``--port``, on the ``--grpc_stack`` transport (the
    native one takes large messages from ``budget``; both trim with its trimmer)."""
    if config.grpc_stack == "native":
        methods = _register(service, None, budget.trimmer).methods
        return await start_native_grpc(methods, config, budget)
    limit = config.max_grpc_message_bytes
    targets = bind_targets(config.grpc_bind_address, config.port)
    for target in targets:
        check_free("gRPC", target, config.port, reuse_port=config.workers > 1)
    quiet_client_errors()
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
            ("grpc.so_reuseport", 1 if config.workers > 1 else 0),
            *grpc_hygiene_options(config),
        ],
    )
    _register(service, server, budget.trimmer)
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
