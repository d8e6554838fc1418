"""Malformed gRPC messages by class, for the fuzz and memory-growth tests.

Every generator takes a ``random.Random`` and returns ``(method path, serialized bytes)``,
built from valid KServe ``ModelInfer`` and TF Serving ``Predict`` requests for the ``add``
model (``a``, ``b`` FP32 [-1, 4] → ``sum``) and the ``text`` model (``text`` BYTES [-1]).
Bytes are sent unparsed through ``channel.unary_unary(path)``, so messages that no client
library would build reach the server.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
from ovmsclient.tfs_compat.protos.tensorflow.core.framework import (
    tensor_pb2,
    tensor_shape_pb2,
    types_pb2,
)
from ovmsclient.tfs_compat.protos.tensorflow_serving.apis import predict_pb2
from tritonclient.grpc import service_pb2

from _mm_helpers import model_entry, write_json_atomically
from _models import add_onnx, save_ir, save_onnx, string_model

KSERVE_INFER = "/inference.GRPCInferenceService/ModelInfer"
TFS_PREDICT = "/tensorflow.serving.PredictionService/Predict"
A = np.arange(8, dtype=np.float32).reshape(2, 4)
ALLOWED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OUT_OF_RANGE,
}
"""Statuses a malformed request may get: client errors. Never UNKNOWN or INTERNAL."""

Message = tuple[str, bytes]
Generator = Callable[[random.Random], Message]


def fuzz_config(folder: Path) -> Path:
    """A config.json serving ``add`` (ONNX) and ``text`` (IR, BYTES)."""
    save_onnx(add_onnx(), folder / "add")
    save_ir(string_model(), folder / "text")
    config = folder / "config.json"
    write_json_atomically(
        config,
        {
            "model_config_list": [
                model_entry("add", folder / "add"),
                model_entry("text", folder / "text"),
            ]
        },
    )
    return config


def kserve_add(a: np.ndarray = A) -> service_pb2.ModelInferRequest:
    """A valid KServe request for ``add`` with raw contents."""
    request = service_pb2.ModelInferRequest(model_name="add")
    for name in ("a", "b"):
        request.inputs.add(name=name, datatype="FP32", shape=list(a.shape))
        request.raw_input_contents.append(a.tobytes())
    return request


def kserve_text(words: list[bytes]) -> service_pb2.ModelInferRequest:
    """A valid KServe BYTES request for ``text`` (4-byte little-endian length prefixes)."""
    request = service_pb2.ModelInferRequest(model_name="text")
    request.inputs.add(name="text", datatype="BYTES", shape=[len(words)])
    request.raw_input_contents.append(b"".join(struct.pack("<I", len(w)) + w for w in words))
    return request


def tfs_add(a: np.ndarray = A) -> predict_pb2.PredictRequest:
    """A valid TF Serving request for ``add`` with ``tensor_content``."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "add"
    for name in ("a", "b"):
        request.inputs[name].CopyFrom(_tfs_tensor(a))
    return request


def _tfs_tensor(a: np.ndarray) -> tensor_pb2.TensorProto:
    shape = tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in a.shape]
    )
    return tensor_pb2.TensorProto(
        dtype=types_pb2.DT_FLOAT, tensor_shape=shape, tensor_content=a.tobytes()
    )


def _valid(rng: random.Random) -> Message:
    if rng.random() < 0.5:
        return KSERVE_INFER, kserve_add().SerializeToString()
    return TFS_PREDICT, tfs_add().SerializeToString()


def random_bytes(rng: random.Random) -> Message:
    path = rng.choice((KSERVE_INFER, TFS_PREDICT))
    return path, rng.randbytes(rng.randrange(0, 2048))


def truncated(rng: random.Random) -> Message:
    path, data = _valid(rng)
    return path, data[: rng.randrange(0, len(data))]


def bit_flips(rng: random.Random) -> Message:
    path, data = _valid(rng)
    mutable = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        mutable[rng.randrange(len(mutable))] = rng.randrange(256)
    return path, bytes(mutable)


_HUGE = (2**31, 2**32 + 4, 2**40, 2**62, 2**63 - 1, 3 * 2**61)
_NEGATIVE = (-1, -2, -4, -(2**31), -(2**62), -(2**63))


def _odd_dims(rng: random.Random, values: tuple[int, ...]) -> Message:
    dims = [rng.choice((*values, 2, 4)) for _ in range(rng.randint(1, 4))]
    if not any(d in values for d in dims):
        dims[0] = rng.choice(values)
    if rng.random() < 0.5:
        request = kserve_add()
        target = request.inputs[rng.randrange(2)]
        del target.shape[:]
        target.shape.extend(dims)
        return KSERVE_INFER, request.SerializeToString()
    tfs = tfs_add()
    tensor = tfs.inputs[rng.choice("ab")]
    del tensor.tensor_shape.dim[:]
    # TensorShapeProto dims are int64 too: negative and huge values are representable.
    tensor.tensor_shape.dim.extend(tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in dims)
    return TFS_PREDICT, tfs.SerializeToString()


def huge_dims(rng: random.Random) -> Message:
    return _odd_dims(rng, _HUGE)


def negative_dims(rng: random.Random) -> Message:
    return _odd_dims(rng, _NEGATIVE)


def content_size_mismatch(rng: random.Random) -> Message:
    data = A.tobytes()
    wrong = (
        data[: rng.randrange(0, len(data))]
        if rng.random() < 0.5
        else data + rng.randbytes(rng.randint(1, 64))
    )
    choice = rng.randrange(3)
    if choice == 0:
        request = kserve_add()
        request.raw_input_contents[rng.randrange(2)] = wrong
        return KSERVE_INFER, request.SerializeToString()
    if choice == 1:  # typed contents of the wrong count
        request = kserve_add()
        del request.raw_input_contents[:]
        for tensor in request.inputs:
            tensor.contents.fp32_contents.extend([1.0] * rng.choice((0, 1, 7, 9, 100)))
        return KSERVE_INFER, request.SerializeToString()
    tfs = tfs_add()
    tfs.inputs[rng.choice("ab")].tensor_content = wrong
    return TFS_PREDICT, tfs.SerializeToString()


def bad_bytes_prefixes(rng: random.Random) -> Message:
    words = [rng.randbytes(rng.randint(0, 12)) for _ in range(rng.randint(1, 5))]
    raw = bytearray(b"".join(struct.pack("<I", len(w)) + w for w in words))
    kind = rng.randrange(4)
    if kind == 0:  # a prefix larger than what follows
        raw[0:4] = struct.pack("<I", rng.choice((len(raw), 2**31, 2**32 - 1)))
    elif kind == 1:  # a prefix cut short
        raw = raw[: rng.choice((1, 2, 3))]
    elif kind == 2:  # trailing bytes after the last element
        raw += rng.randbytes(rng.randint(1, 3))
    else:  # more elements than the shape says
        raw += struct.pack("<I", 1) + b"x"
    request = kserve_text(words)
    request.raw_input_contents[0] = bytes(raw)
    if rng.random() < 0.5:
        tfs = predict_pb2.PredictRequest()
        tfs.model_spec.name = "text"
        tensor = tfs.inputs["text"]
        tensor.dtype = types_pb2.DT_STRING
        tensor.tensor_shape.dim.add(size=len(words) + rng.choice((-1, 1, 1000, 2**40)))
        tensor.string_val.extend(words)
        return TFS_PREDICT, tfs.SerializeToString()
    return KSERVE_INFER, request.SerializeToString()


def many_inputs(rng: random.Random) -> Message:
    count = rng.randint(1000, 5000)
    if rng.random() < 0.5:
        request = service_pb2.ModelInferRequest(model_name="add")
        for index in range(count):
            name = rng.choice(("a", "b", f"x{index}"))
            request.inputs.add(name=name, datatype="FP32", shape=[1, 4])
            request.raw_input_contents.append(b"\0" * 16)
        return KSERVE_INFER, request.SerializeToString()
    tfs = tfs_add()
    one = _tfs_tensor(A[:1])
    for index in range(count):
        tfs.inputs[f"x{index}"].CopyFrom(one)
    return TFS_PREDICT, tfs.SerializeToString()


def wrong_types(rng: random.Random) -> Message:
    if rng.random() < 0.5:
        request = kserve_add()
        request.inputs[rng.randrange(2)].datatype = rng.choice(
            ("", "FP33", "BYTES", "fp32", "INT4", "\u0000", "BF16" * 100)
        )
        return KSERVE_INFER, request.SerializeToString()
    tfs = tfs_add()
    tfs.inputs[rng.choice("ab")].dtype = rng.choice((0, 7, 23, 101, 9999, -5))
    return TFS_PREDICT, tfs.SerializeToString()


CLASSES: dict[str, Generator] = {
    "random bytes": random_bytes,
    "truncated": truncated,
    "bit flips": bit_flips,
    "huge dims": huge_dims,
    "negative dims": negative_dims,
    "content-size mismatch": content_size_mismatch,
    "BYTES bad length prefixes": bad_bytes_prefixes,
    "thousands of inputs": many_inputs,
    "wrong types": wrong_types,
}


def send_raw(channel: grpc.Channel, path: str, data: bytes, timeout: float = 30) -> grpc.StatusCode:
    """Send serialized bytes to ``path``; the status the server answered with."""
    call = channel.unary_unary(path)
    try:
        call(data, timeout=timeout)
    except grpc.RpcError as error:
        code: grpc.StatusCode = error.code()
        return code
    return grpc.StatusCode.OK


def check_good(channel: grpc.Channel) -> None:
    """A good KServe, TF Serving and BYTES request each get the exact answer."""
    kserve = service_pb2.ModelInferResponse.FromString(
        channel.unary_unary(KSERVE_INFER)(kserve_add().SerializeToString(), timeout=30)
    )
    got = np.frombuffer(kserve.raw_output_contents[0], np.float32).reshape(2, 4)
    np.testing.assert_array_equal(got, A + A)
    tfs = predict_pb2.PredictResponse.FromString(
        channel.unary_unary(TFS_PREDICT)(tfs_add().SerializeToString(), timeout=30)
    )
    out = tfs.outputs["sum"]
    got = (
        np.frombuffer(out.tensor_content, np.float32)
        if out.tensor_content
        else np.array(out.float_val, np.float32)
    )
    np.testing.assert_array_equal(got.reshape(2, 4), A + A)
    words = [b"fuzz", b"", b"\xc3\xa9t\xc3\xa9"]
    text = service_pb2.ModelInferResponse.FromString(
        channel.unary_unary(KSERVE_INFER)(kserve_text(words).SerializeToString(), timeout=30)
    )
    expected = b"".join(struct.pack("<I", len(w)) + w for w in words)
    assert text.raw_output_contents[0] == expected, text
