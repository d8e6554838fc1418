"""Graceful shutdown: SIGTERM/SIGINT finish in-flight requests, refuse new ones, exit 0."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import grpc
import numpy as np
import numpy.typing as npt
import pytest
import tritonclient.grpc as triton
from tritonclient.grpc import service_pb2, service_pb2_grpc

from _models import reference, save_ir, scale_model, slow_model
from _rest import sample, scrape
from _server import F32_FLAGS, ServerPool, ServerProcess, port_is_open, wait_for


def in_flight_now(server: ServerProcess) -> float:
    """The server's own count of requests in the model now (OVMS's ``ovms_current_requests``)."""
    return sample(scrape(server.rest_url), "ovms_current_requests", name="slow", version="1")


def slow_request(x: npt.NDArray[np.float32]) -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(model_name="slow")
    request.inputs.add(name="x", datatype="FP32", shape=list(x.shape))
    request.raw_input_contents.append(x.tobytes())
    return request


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_in_flight_request_completes_and_exit_is_0(
    server_factory: ServerPool, tmp_path: Path, signum: int
) -> None:
    model = slow_model(depth=96)
    save_ir(model, tmp_path / "slow")
    server = server_factory.start(
        [
            *("--model_name", "slow", "--model_path", str(tmp_path / "slow")),
            *F32_FLAGS,
            "--metrics_enable",
        ],
        rest=True,
    )
    x = np.random.default_rng(5).standard_normal((1024, 1024)).astype(np.float32)
    expected = reference(model, {"x": x})["y"]

    channel = grpc.insecure_channel(
        server.grpc_target, options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)]
    )
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    assert in_flight_now(server) == 0
    in_flight = stub.ModelInfer.future(slow_request(x), timeout=120)
    # Wait until the server itself reports the request in the model, however long that takes.
    wait_for(lambda: in_flight_now(server) == 1 or in_flight.done(), "the inference to start")
    server.send_signal(signum)
    # The reply had not arrived when the signal was sent: the shutdown met it in flight. (If
    # this machine ever runs the model faster than a scrape and a kill, this fails, never passes
    # vacuously; the model takes about a second here.)
    assert not in_flight.done(), "the inference finished before the signal: make it slower"
    wait_for(lambda: "Shutting down" in server.log_text(), "the shutdown to begin")

    with (
        pytest.raises(grpc.RpcError) as refused,
        grpc.insecure_channel(server.grpc_target) as fresh,
    ):
        service_pb2_grpc.GRPCInferenceServiceStub(fresh).ServerLive(
            service_pb2.ServerLiveRequest(), timeout=10
        )
    assert refused.value.code() is grpc.StatusCode.UNAVAILABLE

    response = in_flight.result()
    got = triton.InferResult(response).as_numpy("y")
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    channel.close()

    assert server.wait_exit(60) == 0
    log = server.log_text()
    assert "Stopped" in log
    assert "Traceback" not in log
    assert server.grpc_port is not None
    assert not port_is_open(server.grpc_port)


def test_idle_server_exits_0_quickly(server_factory: ServerPool, tmp_path: Path) -> None:
    save_ir(scale_model(), tmp_path / "m")
    server = server_factory.start(["--model_name", "m", "--model_path", str(tmp_path / "m")])
    client = triton.InferenceServerClient(server.grpc_target)
    assert client.is_model_ready("m")
    started = time.monotonic()
    assert server.stop() == 0
    assert time.monotonic() - started < 10
    assert "Stopped" in server.log_text()
