"""Request bodies for each API, built once with the public clients' protobufs, and one checked call.

The load generators replay pre-serialised bodies (h2load for gRPC, hey for REST), so the client
spends no CPU on encoding. Before a run, the exact body is sent once with grpcio / urllib and the
reply is checked (status and output shape): h2load sees only HTTP status, not grpc-status.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import grpc
from ovmsclient.tfs_compat.protos.tensorflow.core.framework import tensor_pb2, types_pb2
from ovmsclient.tfs_compat.protos.tensorflow.core.framework import tensor_shape_pb2 as shape_pb2
from ovmsclient.tfs_compat.protos.tensorflow_serving.apis import predict_pb2
from tritonclient.grpc import service_pb2 as kserve_pb2

from models import Request

KSERVE_INFER = "/inference.GRPCInferenceService/ModelInfer"
TFS_PREDICT = "/tensorflow.serving.PredictionService/Predict"
GRPC_LIMITS = [
    ("grpc.max_receive_message_length", 1 << 30),
    ("grpc.max_send_message_length", 1 << 30),
]
WARMUP = 10  # checked call + this many calls before each measured run


class CheckFailed(RuntimeError):
    """The server's reply to the exact benchmark body was wrong."""


@dataclass(frozen=True)
class Bodies:
    """Files holding one request in each encoding."""

    pb: Path  # bare protobuf message (grpcio)
    grpc_frame: Path  # gRPC length-prefixed frame (h2load)
    api: str


def kserve_message(req: Request) -> bytes:
    """A ModelInferRequest with the tensor in raw_input_contents."""
    msg = kserve_pb2.ModelInferRequest(model_name=req.model)
    tensor = msg.inputs.add(name=req.input, datatype="FP32")
    tensor.shape.extend(req.shape)
    msg.raw_input_contents.append(req.array().tobytes())
    data: bytes = msg.SerializeToString()
    return data


def tfs_message(req: Request) -> bytes:
    """A TF Serving PredictRequest with the tensor in tensor_content (as ovmsclient sends it)."""
    msg = predict_pb2.PredictRequest()
    msg.model_spec.name = req.model
    shape = shape_pb2.TensorShapeProto(
        dim=[shape_pb2.TensorShapeProto.Dim(size=d) for d in req.shape]
    )
    msg.inputs[req.input].CopyFrom(
        tensor_pb2.TensorProto(
            dtype=types_pb2.DT_FLOAT, tensor_shape=shape, tensor_content=req.array().tobytes()
        )
    )
    data: bytes = msg.SerializeToString()
    return data


def rest_json(req: Request) -> bytes:
    """A KServe v2 JSON infer body."""
    body = {
        "inputs": [
            {
                "name": req.input,
                "shape": list(req.shape),
                "datatype": "FP32",
                "data": req.array().ravel().tolist(),
            }
        ]
    }
    return json.dumps(body, separators=(",", ":")).encode()


def write_grpc_bodies(req: Request, api: str, folder: Path) -> Bodies:
    """Write the protobuf message and its gRPC frame for api ``kserve`` or ``tfs``."""
    folder.mkdir(parents=True, exist_ok=True)
    msg = kserve_message(req) if api == "kserve" else tfs_message(req)
    stem = folder / f"{api}-{req.model}-{req.label}"
    pb, frame = stem.with_suffix(".pb"), stem.with_suffix(".grpc")
    pb.write_bytes(msg)
    frame.write_bytes(b"\x00" + len(msg).to_bytes(4, "big") + msg)
    return Bodies(pb, frame, api)


def write_rest_body(req: Request, folder: Path) -> Path:
    """Write the v2 JSON body."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"rest-{req.model}-{req.label}.json"
    path.write_bytes(rest_json(req))
    return path


def check_grpc(target: str, req: Request, bodies: Bodies) -> None:
    """Send the exact body, check grpc-status 0 and the output shape, then warm up."""
    method = KSERVE_INFER if bodies.api == "kserve" else TFS_PREDICT
    msg = bodies.pb.read_bytes()
    with grpc.insecure_channel(target, options=GRPC_LIMITS) as channel:
        call = channel.unary_unary(method)
        try:
            raw = call(msg, timeout=60)
        except grpc.RpcError as error:
            raise CheckFailed(f"grpc-status {error.code().name}: {error.details()}") from None
        shape = _kserve_shape(raw, req) if bodies.api == "kserve" else _tfs_shape(raw, req)
        if shape != req.out_shape:
            raise CheckFailed(f"output {req.output} has shape {shape}, expected {req.out_shape}")
        for _ in range(WARMUP):
            call(msg, timeout=60)


def _kserve_shape(raw: bytes, req: Request) -> tuple[int, ...]:
    reply = kserve_pb2.ModelInferResponse.FromString(raw)
    names = [o.name for o in reply.outputs]
    if req.output not in names:
        raise CheckFailed(f"no output {req.output!r} in {names}")
    i = names.index(req.output)
    n = len(reply.raw_output_contents[i]) // 4 if len(reply.raw_output_contents) > i else 0
    shape = tuple(reply.outputs[i].shape)
    if n != math.prod(shape):
        raise CheckFailed(f"output {req.output} carries {n} values for shape {shape}")
    return shape


def _tfs_shape(raw: bytes, req: Request) -> tuple[int, ...]:
    reply = predict_pb2.PredictResponse.FromString(raw)
    if req.output not in reply.outputs:
        raise CheckFailed(f"no output {req.output!r} in {list(reply.outputs)}")
    tensor = reply.outputs[req.output]
    shape = tuple(d.size for d in tensor.tensor_shape.dim)
    n = len(tensor.tensor_content) // 4 or len(tensor.float_val)
    if n != math.prod(shape):
        raise CheckFailed(f"output {req.output} carries {n} values for shape {shape}")
    return shape


def check_rest(url: str, req: Request, body: Path) -> None:
    """POST the exact JSON body, check HTTP 200 and the output shape, then warm up."""
    data = body.read_bytes()
    headers = {"Content-Type": "application/json"}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data, headers), timeout=60) as r:
            reply = json.loads(r.read())
    except urllib.error.HTTPError as error:
        raise CheckFailed(f"HTTP {error.code}: {error.read()[:300]!r}") from None
    except (urllib.error.URLError, OSError) as error:
        raise CheckFailed(f"no REST answer at {url}: {error}") from None
    outputs = {o.get("name"): o for o in reply.get("outputs", [])}
    out = outputs.get(req.output)
    if out is None or tuple(out.get("shape", ())) != req.out_shape:
        raise CheckFailed(f"unexpected reply {json.dumps(reply)[:300]}")
    for _ in range(WARMUP):
        with urllib.request.urlopen(urllib.request.Request(url, data, headers), timeout=60) as r:
            r.read()
