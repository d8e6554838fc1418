"""Domain results → KServe v2 gRPC inference replies."""

from __future__ import annotations

from ovserve.frontends._generated.kserve import grpc_predict_v2_pb2 as pb
from ovserve.frontends.kserve.datatypes import encode_bytes_elements
from ovserve.tensors import DataType, InferResult


def encode_result(request: pb.ModelInferRequest, result: InferResult) -> pb.ModelInferResponse:
    """Outputs in ``raw_output_contents``, in model order (or request order when named)."""
    response = pb.ModelInferResponse(
        model_name=result.model_name, model_version=str(result.model_version), id=request.id
    )
    for name, array in result.outputs.items():
        datatype = DataType.from_numpy(array.dtype)
        response.outputs.add(name=name, datatype=datatype.value, shape=array.shape)
        if datatype is DataType.BYTES:
            response.raw_output_contents.append(encode_bytes_elements(array))
        else:
            response.raw_output_contents.append(array.tobytes())
    return response
