"""The Python gRPC floor: grpc.aio on uvloop answering KServe ModelInfer with no inference.

usage: floor.py PORT

It parses each ModelInferRequest (upb), reads the first input's bytes as numpy and replies with a
zero tensor of the tiny model's output shape, [1,4] FP32 in raw_output_contents. Whatever a
Python grpc.aio server does per request costs at least this much; ovserve / floor says how much
of that ceiling ovserve reaches. ModelReady answers ready for any name, for the readiness poll.
"""

from __future__ import annotations

import sys

import grpc
import numpy as np
import uvloop
from tritonclient.grpc import service_pb2 as pb

SERVICE = "inference.GRPCInferenceService"


async def infer(raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
    """Parse, touch the input, reply [1,4] zeros."""
    request = pb.ModelInferRequest.FromString(raw)
    x = np.frombuffer(request.raw_input_contents[0], np.float32)
    reply = pb.ModelInferResponse(model_name=request.model_name, id=request.id)
    out = reply.outputs.add(name="y", datatype="FP32")
    out.shape.extend([1, 4])
    reply.raw_output_contents.append(np.zeros(4, x.dtype).tobytes())
    data: bytes = reply.SerializeToString()
    return data


async def ready(raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
    """Always ready."""
    data: bytes = pb.ModelReadyResponse(ready=True).SerializeToString()
    return data


async def main(port: int) -> None:
    """Serve until killed."""
    server = grpc.aio.server()
    handlers = {
        "ModelInfer": grpc.unary_unary_rpc_method_handler(infer),
        "ModelReady": grpc.unary_unary_rpc_method_handler(ready),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1])))
