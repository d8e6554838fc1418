"""TF Serving's ``PredictionService`` and ``ModelService`` over gRPC."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from ovserve.errors import InvalidInput
from ovserve.frontends._generated.tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from ovserve.frontends.tfserving import codec
from ovserve.frontends.tfserving.wire import PredictRequestView, parse_predict_request
from ovserve.serving.service import ServingService

REQUEST_PARSERS: dict[str, Callable[[bytes], Any]] = {
    "/tensorflow.serving.PredictionService/Predict": parse_predict_request,
}
"""Methods whose request bytes are read by our own parser instead of the generated one."""


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Predict and GetModelMetadata."""

    def __init__(self, service: ServingService) -> None:
        self._service = service

    async def Predict(
        self,
        request: PredictRequestView | predict_pb2.PredictRequest,
        context: grpc.aio.ServicerContext,
    ) -> predict_pb2.PredictResponse:
        """One inference; outputs in ``tensor_content``."""
        if not isinstance(request, PredictRequestView):
            request = PredictRequestView.of(request)
        message = request.message
        name, version = codec.parse_model_spec(message.model_spec, message.HasField("model_spec"))
        inputs = [
            codec.decode_tensor(key, proto, request.contents.get(key))
            for key, proto in message.inputs.items()
        ]
        result = await self._service.infer(
            name, version, inputs, list(message.output_filter) or None
        )
        response = predict_pb2.PredictResponse(
            model_spec=codec.encode_model_spec(result.model_name, result.model_version)
        )
        for output_name, array in result.outputs.items():
            response.outputs[output_name].CopyFrom(codec.encode_tensor(array))
        return response

    async def GetModelMetadata(
        self,
        request: get_model_metadata_pb2.GetModelMetadataRequest,
        context: grpc.aio.ServicerContext,
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        """The ``serving_default`` signature of the (default) version."""
        name, version = codec.parse_model_spec(request.model_spec, request.HasField("model_spec"))
        if list(request.metadata_field) != ["signature_def"]:
            raise InvalidInput('metadata_field must be ["signature_def"]')
        return codec.encode_metadata(self._service.model_metadata(name, version))


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """GetModelStatus."""

    def __init__(self, service: ServingService) -> None:
        self._service = service

    async def GetModelStatus(
        self,
        request: get_model_status_pb2.GetModelStatusRequest,
        context: grpc.aio.ServicerContext,
    ) -> get_model_status_pb2.GetModelStatusResponse:
        """Every version's state, or one version's."""
        name, version = codec.parse_model_spec(request.model_spec, request.HasField("model_spec"))
        return codec.encode_status(name, self._service.model_status(name, version))
