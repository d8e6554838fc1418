"""``inference.GRPCInferenceService``: the KServe v2 gRPC API."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from ovserve.errors import OvserveError
from ovserve.frontends._generated.kserve import grpc_predict_v2_pb2 as pb
from ovserve.frontends._generated.kserve import grpc_predict_v2_pb2_grpc as pb_grpc
from ovserve.frontends.kserve import codec
from ovserve.frontends.kserve.wire import InferRequestView, parse_infer_request
from ovserve.serving.service import ServingService

REQUEST_PARSERS: dict[str, Callable[[bytes], Any]] = {
    "/inference.GRPCInferenceService/ModelInfer": parse_infer_request,
}
"""Methods whose request bytes are read by our own parser instead of the generated one."""


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
        """Whether the (default) version serves."""
        version = codec.parse_version(request.version)
        return pb.ModelReadyResponse(ready=self._service.model_ready(request.name, version))

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelMetadataResponse:
        """Inputs and outputs of the (default) version."""
        version = codec.parse_version(request.version)
        return codec.encode_metadata(self._service.model_metadata(request.name, version))

    async def ModelInfer(
        self,
        request: InferRequestView | pb.ModelInferRequest,
        context: grpc.aio.ServicerContext,
    ) -> pb.ModelInferResponse:
        """One inference; replies in ``raw_output_contents``."""
        view = request if isinstance(request, InferRequestView) else InferRequestView.of(request)
        message = view.message
        result = await self._service.infer(
            message.model_name,
            codec.parse_version(message.model_version),
            codec.decode_inputs(message, view.raw_inputs),
            codec.requested_outputs(message),
        )
        return codec.encode_result(message, result)

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
