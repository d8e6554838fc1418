"""An inference OpenVINO refuses at run time answers as OVMS: INTERNAL / 500, a fixed text.

A dynamic-shape model lets a request through validation that OpenVINO's own shape inference
then rejects (here a reshape to four elements of a three-element input). OpenVINO's message goes
to the server log only; the server keeps serving.
"""

from __future__ import annotations

import json

import grpc
import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest
import requests
from tritonclient.grpc import service_pb2, service_pb2_grpc

from _models import save_ir
from _server import ServerPool, ServerProcess

TEXT = "Internal inference error"


def reshape_model() -> ov.Model:
    """``out = reshape(data, [2, 2])`` with ``data`` of any length: only 4 elements work."""
    data = ops.parameter(ov.PartialShape([-1]), np.float32, name="data")
    data.output(0).get_tensor().set_names({"data"})
    out = ops.reshape(data, ops.constant(np.array([2, 2], np.int64)), special_zero=False)
    out.output(0).get_tensor().set_names({"out"})
    return ov.Model([out], [data], "reshape")


@pytest.fixture(scope="module")
def server(
    module_server_factory: ServerPool, tmp_path_factory: pytest.TempPathFactory
) -> ServerProcess:
    base = tmp_path_factory.mktemp("reshape")
    save_ir(reshape_model(), base)
    return module_server_factory.start(["--model_name", "r", "--model_path", str(base)], rest=True)


def grpc_infer(server: ServerProcess, values: list[float]) -> service_pb2.ModelInferResponse:
    request = service_pb2.ModelInferRequest(model_name="r")
    request.inputs.add(name="data", datatype="FP32", shape=[len(values)])
    request.raw_input_contents.append(np.array(values, np.float32).tobytes())
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        return stub.ModelInfer(request, timeout=30)


def rest_infer(server: ServerProcess, values: list[float]) -> requests.Response:
    tensor = {"name": "data", "shape": [len(values)], "datatype": "FP32", "data": values}
    body = json.dumps({"inputs": [tensor]})
    return requests.post(f"{server.rest_url}/v2/models/r/infer", data=body, timeout=30)


def test_grpc_answers_internal_with_ovms_text(server: ServerProcess) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        grpc_infer(server, [1, 2, 3])
    assert (caught.value.code(), caught.value.details()) == (grpc.StatusCode.INTERNAL, TEXT)
    good = grpc_infer(server, [1, 2, 3, 4])
    assert list(good.outputs[0].shape) == [2, 2]


def test_rest_answers_500_with_ovms_text(server: ServerProcess) -> None:
    reply = rest_infer(server, [1, 2, 3])
    assert (reply.status_code, reply.json()) == (500, {"error": TEXT})
    assert rest_infer(server, [1, 2, 3, 4]).status_code == 200


def test_openvino_text_is_logged_not_sent(server: ServerProcess) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        grpc_infer(server, [1, 2])
    assert caught.value.details() == TEXT
    failures = [
        line for line in server.log_text().splitlines() if "OpenVINO failed an inference" in line
    ]
    assert failures, server.log_text()
    assert "failed with an unexpected error" not in server.log_text()
