"""Model metadata → the KServe v2 gRPC ``ModelMetadataResponse``."""

from __future__ import annotations

from ovserve.frontends._generated.kserve import grpc_predict_v2_pb2 as pb
from ovserve.serving.service import ModelMetadata
from ovserve.tensors import TensorSpec


def _tensor_metadata(spec: TensorSpec) -> pb.ModelMetadataResponse.TensorMetadata:
    return pb.ModelMetadataResponse.TensorMetadata(
        name=spec.name, datatype=spec.datatype.value, shape=spec.shape.metadata_sizes()
    )


def encode_metadata(metadata: ModelMetadata) -> pb.ModelMetadataResponse:
    """Model metadata; dynamic and range dimensions are reported as -1, as OVMS does."""
    return pb.ModelMetadataResponse(
        name=metadata.name,
        versions=[str(version) for version in metadata.versions],
        platform="OpenVINO",
        inputs=[_tensor_metadata(spec) for spec in metadata.inputs],
        outputs=[_tensor_metadata(spec) for spec in metadata.outputs],
    )
