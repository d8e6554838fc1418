"""TF Serving's ``PredictionService`` and ``ModelService`` over gRPC."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from ovserve.frontends._generated.tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from ovserve.frontends.tfserving import codec
from ovserve.frontends.tfserving.wire import PredictRequestView, parse_predict_request
from ovserve.metrics import GRPC, TFS, Endpoint
from ovserve.serving.service import ServingService

REQUEST_PARSERS: dict[str, Callable[[bytes], Any]] = {
    "/tensorflow.serving.PredictionService/Predict": parse_predict_request,
}
"""Methods whose request bytes are read by our own parser instead of the generated one."""

PREDICT = Endpoint(TFS, GRPC, "Predict", versioned=True)
METADATA = Endpoint(TFS, GRPC, "GetModelMetadata", versioned=True)
STATUS = Endpoint(TFS, GRPC, "GetModelStatus", versioned=False)


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
        with self._service.call(PREDICT, name, version) as call:
            inputs = [
                codec.decode_tensor(key, proto, request.contents.get(key))
                for key, proto in message.inputs.items()
            ]
            result = await call.infer(inputs, list(message.output_filter) or None)
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
        if request.HasField("model_spec"):
            codec.check_metadata_fields(request.metadata_field)
        name, version = codec.parse_model_spec(request.model_spec, request.HasField("model_spec"))
        return codec.encode_metadata(self._service.model_metadata(METADATA, name, version))


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
        return codec.encode_status(name, self._service.model_status(STATUS, name, version))
