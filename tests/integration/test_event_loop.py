"""A long inference never blocks the server: health checks and other models answer meanwhile.

One server serves a slow model (one inference takes seconds here) and a tiny one. While a slow
inference is in flight, as the server itself reports (``ovms_current_requests``), readiness
over REST and gRPC and the tiny model over both APIs must each answer within ``BOUND_S``; and
the slow request must still be running after those probes, so they really overlapped it. If a
long inference ran on the event loop (e.g. the inline/worker-thread choice inverted), the probes
would wait for it and this fails.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import requests
import tritonclient.grpc as triton
from tritonclient.grpc import service_pb2, service_pb2_grpc

from _models import save_ir, scale_model, slow_model
from _rest import sample, scrape
from _server import ServerPool, ServerProcess, wait_for

F32 = {"plugin_config": {"INFERENCE_PRECISION_HINT": "f32"}}

BOUND_S = 0.2
SLOW_AT_LEAST_S = 1.0


def timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def slow_in_flight(server: ServerProcess) -> float:
    return sample(scrape(server.rest_url), "ovms_current_requests", name="slow", version="1")


def test_slow_inference_does_not_block_health_or_other_models(
    server_factory: ServerPool, tmp_path: Path
) -> None:
    save_ir(slow_model(depth=96), tmp_path / "slow")
    save_ir(scale_model((1, 3)), tmp_path / "tiny")
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "model_config_list": [
                    {"config": {"name": name, "base_path": str(tmp_path / name), **F32}}
                    for name in ("slow", "tiny")
                ]
            }
        )
    )
    server = server_factory.start(["--config_path", str(config), "--metrics_enable"], rest=True)
    x = np.ones((1024, 1024), np.float32)
    slow_request = service_pb2.ModelInferRequest(model_name="slow")
    slow_request.inputs.add(name="x", datatype="FP32", shape=[1024, 1024])
    slow_request.raw_input_contents.append(x.tobytes())
    options = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]
    session = requests.Session()
    tiny_grpc = triton.InferenceServerClient(server.grpc_target)
    tiny_input = triton.InferInput("data", [1, 3], "FP32")
    tiny_input.set_data_from_numpy(np.array([[1, 2, 3]], np.float32))
    tiny_body = json.dumps(
        {"inputs": [{"name": "data", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}
    )

    def rest_ready() -> None:
        assert session.get(f"{server.rest_url}/v2/health/ready", timeout=10).status_code == 200

    def grpc_ready() -> None:
        assert tiny_grpc.is_server_ready(client_timeout=10)

    def tiny_rest() -> None:
        reply = session.post(f"{server.rest_url}/v2/models/tiny/infer", data=tiny_body, timeout=10)
        assert reply.json()["outputs"][0]["data"] == [2, 4, 6]

    def tiny_over_grpc() -> None:
        reply = tiny_grpc.infer("tiny", [tiny_input], client_timeout=10)
        assert reply.as_numpy("out").tolist() == [[2, 4, 6]]

    probes = {"REST ready": rest_ready, "gRPC ready": grpc_ready}
    probes |= {"tiny REST": tiny_rest, "tiny gRPC": tiny_over_grpc}
    for probe in probes.values():  # warm connections and code paths
        probe()

    with grpc.insecure_channel(server.grpc_target, options=options) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        started = time.perf_counter()
        in_flight = stub.ModelInfer.future(slow_request, timeout=300)
        wait_for(lambda: slow_in_flight(server) == 1 or in_flight.done(), "the slow inference")
        times = {name: timed(probe) for name, probe in probes.items()}
        overlapped = not in_flight.done()
        reply = in_flight.result()
        slow_s = time.perf_counter() - started
    tiny_grpc.close()

    assert list(reply.outputs[0].shape) == [1024, 1024]
    assert slow_s >= SLOW_AT_LEAST_S, f"the slow model took only {slow_s:.2f} s: make it slower"
    assert overlapped, f"the slow inference ({slow_s:.2f} s) ended before the probes did"
    slow_probes = {name: f"{t * 1000:.0f} ms" for name, t in times.items() if t > BOUND_S}
    assert not slow_probes, f"answered later than {BOUND_S * 1000:.0f} ms: {slow_probes}"
