"""``inference.GRPCInferenceService``: the KServe v2 gRPC API."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from ovserve.errors import OvserveError
from ovserve.frontends._generated.kserve import grpc_predict_v2_pb2 as pb
from ovserve.frontends._generated.kserve import grpc_predict_v2_pb2_grpc as pb_grpc
from ovserve.frontends.kserve.grpc_metadata import encode_metadata
from ovserve.frontends.kserve.grpc_replies import encode_result
from ovserve.frontends.kserve.grpc_requests import decode_inputs, parse_version, requested_outputs
from ovserve.frontends.kserve.wire import InferRequestView, parse_infer_request
from ovserve.metrics import GRPC, KSERVE, Endpoint
from ovserve.serving.service import ServingService

REQUEST_PARSERS: dict[str, Callable[[bytes], Any]] = {
    "/inference.GRPCInferenceService/ModelInfer": parse_infer_request,
}
"""Methods whose request bytes are read by our own parser instead of the generated one."""

INFER = Endpoint(KSERVE, GRPC, "ModelInfer", versioned=True)
METADATA = Endpoint(KSERVE, GRPC, "ModelMetadata", versioned=True)
READY = Endpoint(KSERVE, GRPC, "ModelReady", versioned=False)


class KServeServicer(pb_grpc.GRPCInferenceServiceServicer):
    """Health, metadata and inference; errors become statuses in the interceptor."""

    def __init__(self, service: ServingService) -> None:
        self._service = service

    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerLiveResponse:
        """Always live while the process answers."""
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerReadyResponse:
        """Ready once start-up loading is done."""
        return pb.ServerReadyResponse(ready=self._service.ready)

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerMetadataResponse:
        """Server name and version."""
        return pb.ServerMetadataResponse(
            name=self._service.server_name, version=self._service.server_version
        )

    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelReadyResponse:
        """Whether the (default) version serves: OK with ``ready: false`` while it does not."""
        version = parse_version(request.version)
        return pb.ModelReadyResponse(ready=self._service.model_ready(READY, request.name, version))

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelMetadataResponse:
        """Inputs and outputs of the (default) version."""
        version = parse_version(request.version)
        return encode_metadata(self._service.model_metadata(METADATA, request.name, version))

    async def ModelInfer(
        self,
        request: InferRequestView | pb.ModelInferRequest,
        context: grpc.aio.ServicerContext,
    ) -> pb.ModelInferResponse:
        """One inference; replies in ``raw_output_contents``."""
        view = request if isinstance(request, InferRequestView) else InferRequestView.of(request)
        message = view.message
        version = parse_version(message.model_version)
        with self._service.call(INFER, message.model_name, version) as call:
            inputs = decode_inputs(message, view.raw_inputs)
            result = await call.infer(inputs, requested_outputs(message))
            return encode_result(message, result)

    async def ModelStreamInfer(
        self,
        request_iterator: AsyncIterator[pb.ModelInferRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        """Inferences over one stream, answered in order; an error is reported in-band."""
        async for request in request_iterator:
            try:
                response = await self.ModelInfer(request, context)
            except OvserveError as error:
                yield pb.ModelStreamInferResponse(error_message=error.text)
            else:
                yield pb.ModelStreamInferResponse(infer_response=response)
