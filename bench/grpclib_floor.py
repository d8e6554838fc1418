"""The grpclib floor: grpclib (pure-Python gRPC over the h2 package) on uvloop answering KServe
ModelInfer with no inference, the same work as floor.py does on grpc.aio.

usage: PYTHONPATH=DIR .venv/bin/python bench/grpclib_floor.py PORT

grpclib is not one of ovserve's dependencies; install it aside, e.g.
``.venv/bin/python -m pip install --target /tmp/grpclib grpclib`` and pass that folder.
"""

from __future__ import annotations

import sys
from typing import Any

import grpclib.const
import grpclib.server
import numpy as np
import uvloop
from tritonclient.grpc import service_pb2 as pb

SERVICE = "/inference.GRPCInferenceService"


class KServeFloor:
    """ModelInfer replies [1,4] zeros; ModelReady is always ready (the readiness poll)."""

    async def infer(self, stream: Any) -> None:
        request = await stream.recv_message()
        x = np.frombuffer(request.raw_input_contents[0], np.float32)
        reply = pb.ModelInferResponse(model_name=request.model_name, id=request.id)
        out = reply.outputs.add(name="y", datatype="FP32")
        out.shape.extend([1, 4])
        reply.raw_output_contents.append(np.zeros(4, x.dtype).tobytes())
        await stream.send_message(reply)

    async def ready(self, stream: Any) -> None:
        await stream.recv_message()
        await stream.send_message(pb.ModelReadyResponse(ready=True))

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        unary = grpclib.const.Cardinality.UNARY_UNARY
        return {
            f"{SERVICE}/ModelInfer": grpclib.const.Handler(
                self.infer, unary, pb.ModelInferRequest, pb.ModelInferResponse
            ),
            f"{SERVICE}/ModelReady": grpclib.const.Handler(
                self.ready, unary, pb.ModelReadyRequest, pb.ModelReadyResponse
            ),
        }


async def main() -> None:
    server = grpclib.server.Server([KServeFloor()])
    await server.start("127.0.0.1", int(sys.argv[1]))
    await server.wait_closed()


if __name__ == "__main__":
    uvloop.run(main())
