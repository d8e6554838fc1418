"""ovserve with parts of the KServe ModelInfer path replaced, to see what each part costs.

usage: OVSERVE_STAGES=fixed|nocall|noov python bench/grpc_stages.py OVSERVE_FLAGS...

Run several of these side by side with the real server and bench/floor.py, load each in turn
with h2load, and read the server CPU per request from /proc/PID/stat (utime + stime over the
run); the differences are what each stage costs inside a loaded server (several times what a
tight loop over the same code says: caches are cold between requests). Stages, cumulative:

* ``fixed``  - the whole gRPC server (registration, error guard, our request parser), but
  ModelInfer returns a prebuilt reply;
* ``nocall`` - ModelInfer decodes the request, opens the counted call and encodes a fixed
  result, without inferring;
* ``noov``   - everything except OpenVINO itself: the engine's ``_run`` wraps the inputs as
  tensors and returns a fixed output (inline on the loop, as the real tiny model runs).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np

from ovserve.cli import main
from ovserve.engine import openvino_engine
from ovserve.frontends._generated.kserve import grpc_predict_v2_pb2 as pb
from ovserve.frontends.kserve import grpc_servicer
from ovserve.tensors import InferResult

STAGE = os.environ.get("OVSERVE_STAGES", "")
OUTPUT = np.zeros((1, 4), np.float32)


def _fixed_reply() -> Any:
    reply = pb.ModelInferResponse(model_name="tiny", model_version="1")
    reply.outputs.add(name="y", datatype="FP32", shape=[1, 4])
    reply.raw_output_contents.append(OUTPUT.tobytes())

    async def infer(self: Any, request: Any, context: Any) -> Any:
        return reply

    return infer


def _no_call() -> Any:
    result = InferResult("tiny", 1, {"y": OUTPUT}, wait_us=0.0, infer_us=0.0)

    async def infer(self: Any, request: Any, context: Any) -> Any:
        view = (
            grpc_servicer.InferRequestView.of(request)
            if isinstance(request, pb.ModelInferRequest)
            else request
        )
        message = view.message
        version = grpc_servicer.parse_version(message.model_version)
        with self._service.call(grpc_servicer.INFER, message.model_name, version):
            grpc_servicer.decode_inputs(message, view.raw_inputs)
            return grpc_servicer.encode_result(message, result)

    return infer


def _no_openvino(self: Any, request: Any, inputs: Any, outputs: Any) -> dict[str, Any]:
    for array in inputs.values():
        openvino_engine._as_ov_tensor(array)
    self._average_run_us = 0.0  # stay inline, as the real tiny model does
    return {"y": OUTPUT.copy()}


if STAGE == "fixed":
    grpc_servicer.KServeServicer.ModelInfer = _fixed_reply()  # type: ignore[method-assign]
elif STAGE == "nocall":
    grpc_servicer.KServeServicer.ModelInfer = _no_call()  # type: ignore[method-assign]
elif STAGE == "noov":
    openvino_engine.OpenVINOCompiledModel._run = _no_openvino  # type: ignore[method-assign]
elif STAGE:
    raise SystemExit(f"unknown OVSERVE_STAGES={STAGE!r}")

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
