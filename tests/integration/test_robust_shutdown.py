"""SIGTERM under load: every request the server accepted is answered, then it exits 0.

Four REST and four gRPC clients each send one request to a model that takes a while; the
signal arrives once the server is busy with them (it burns CPU) and every request has been
sent. All eight must come back with the right answer.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import time
from pathlib import Path

import numpy as np
import requests
import tritonclient.grpc as triton_grpc

from _models import reference, save_ir, slow_model
from _server import F32_FLAGS, ServerPool, wait_for

CLIENTS = 4
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all threads (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def test_sigterm_under_load_answers_every_request_in_flight(
    server_factory: ServerPool, tmp_path: Path
) -> None:
    model = slow_model(size=512, depth=96)
    save_ir(model, tmp_path / "slow")
    server = server_factory.start(
        ["--model_name", "slow", "--model_path", str(tmp_path / "slow"), *F32_FLAGS], rest=True
    )
    inputs = [
        np.random.default_rng(seed).standard_normal((512, 512)).astype(np.float32)
        for seed in range(2 * CLIENTS)
    ]
    expected = [reference(model, {"x": x})["y"] for x in inputs]
    sent: list[float] = []

    def rest(x: np.ndarray) -> np.ndarray:
        document = {"inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32"}]}
        document["inputs"][0]["data"] = x.ravel().tolist()
        body = json.dumps(document).encode()
        with requests.Session() as session:
            # Connected before the request counts as sent: only the request itself races.
            assert session.get(f"{server.rest_url}/v2/health/live", timeout=10).ok
            sent.append(time.monotonic())
            reply = session.post(f"{server.rest_url}/v2/models/slow/infer", data=body, timeout=120)
        assert reply.status_code == 200, reply.text
        return np.array(reply.json()["outputs"][0]["data"], np.float32).reshape(x.shape)

    def grpc_infer(x: np.ndarray) -> np.ndarray:
        client = triton_grpc.InferenceServerClient(server.grpc_target)
        assert client.is_server_live()
        tensor = triton_grpc.InferInput("x", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        sent.append(time.monotonic())
        result = np.asarray(client.infer("slow", [tensor], client_timeout=120).as_numpy("y"))
        client.close()
        return result

    idle_cpu = cpu_seconds(server.pid)
    with concurrent.futures.ThreadPoolExecutor(2 * CLIENTS) as pool:
        futures = [
            pool.submit(rest if index % 2 else grpc_infer, x) for index, x in enumerate(inputs)
        ]
        wait_for(lambda: len(sent) == len(inputs), "every request to be sent")
        wait_for(lambda: cpu_seconds(server.pid) - idle_cpu > 0.5, "the server to be busy")
        time.sleep(0.2)  # the last requests sent are read by now
        in_flight = sum(not future.done() for future in futures)
        assert in_flight >= 3, f"only {in_flight} requests in flight at the signal: slow down"
        server.send_signal()
        results = [future.result(timeout=120) for future in futures]
    for got, want in zip(results, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert server.wait_exit(60) == 0
    log = server.log_text()
    assert "Stopped" in log
    assert "Traceback" not in log
