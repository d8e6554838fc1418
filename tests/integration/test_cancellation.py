"""A request whose client gives up must not free its infer request while OpenVINO still runs."""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import numpy.typing as npt
import pytest
from tritonclient.grpc import service_pb2, service_pb2_grpc

from _models import reference, save_ir, slow_model
from _server import F32_FLAGS, ServerPool


def _request(x: npt.NDArray[np.float32]) -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(model_name="slow")
    request.inputs.add(name="x", datatype="FP32", shape=list(x.shape))
    request.raw_input_contents.append(x.tobytes())
    return request


def test_requests_after_a_cancelled_one_get_a_free_infer_request(
    server_factory: ServerPool, tmp_path: Path
) -> None:
    """Two infer requests: the abandoned inference keeps one busy while quick ones follow.

    Were the abandoned request handed out again at once, a quick request would be set on it
    while OpenVINO still runs there ("Infer Request is busy" -> INTERNAL).
    """
    model = slow_model(depth=96)
    save_ir(model, tmp_path / "slow")
    args = ["--model_name", "slow", "--model_path", str(tmp_path / "slow"), "--nireq", "2"]
    server = server_factory.start([*args, *F32_FLAGS])
    rng = np.random.default_rng(7)
    slow = rng.standard_normal((1024, 1024)).astype(np.float32)
    quick = rng.standard_normal((1, 1024)).astype(np.float32)
    expected = reference(model, {"x": quick})["y"]
    options = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]
    with grpc.insecure_channel(server.grpc_target, options=options) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        for _ in range(3):
            with pytest.raises(grpc.RpcError) as caught:
                stub.ModelInfer(_request(slow), timeout=0.05)
            assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
            for _ in range(2):
                reply = stub.ModelInfer(_request(quick), timeout=120)
                got = np.frombuffer(reply.raw_output_contents[0], dtype=np.float32)
                np.testing.assert_allclose(got.reshape(expected.shape), expected, atol=1e-4)
    assert "busy" not in server.log_text()
    assert "unexpected error" not in server.log_text()
