"""``--grpc_workers 2``: two processes on one port, one view of metrics, reload and drain for both.

Each request goes over a new connection, so the kernel (SO_REUSEPORT) spreads them over the
workers; which worker served how much is read from ``ovserve_worker_requests_success``.
"""

from __future__ import annotations

import http.client
import json
import re
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import tritonclient.grpc as triton
from tritonclient.grpc import service_pb2, service_pb2_grpc

from _models import reference, save_ir, scale_model, slow_model
from _server import F32_FLAGS, HOST, ServerPool, ServerProcess, port_is_open

REQUESTS = 40


def rest(server: ServerProcess, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
    """One request on a new connection."""
    assert server.rest_port is not None
    connection = http.client.HTTPConnection(HOST, server.rest_port, timeout=30)
    try:
        payload = None if body is None else json.dumps(body).encode()
        connection.request(method, path, body=payload)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def worker_counts(metrics: str) -> dict[str, int]:
    """pid → successful requests, from ``ovserve_worker_requests_success``."""
    return {
        pid: int(value)
        for pid, value in re.findall(
            r'ovserve_worker_requests_success\{pid="(\d+)",worker="\d"\} (\d+)', metrics
        )
    }


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def infer_body(value: float) -> dict[str, Any]:
    return {"inputs": [{"name": "data", "shape": [1, 2], "datatype": "FP32", "data": [value, 1]}]}


def test_two_workers_share_the_port_and_metrics_add_up(
    server_factory: ServerPool, tmp_path: Path
) -> None:
    save_ir(scale_model((-1, -1), 2.0), tmp_path / "m")
    server = server_factory.start(
        [
            "--model_name",
            "m",
            "--model_path",
            str(tmp_path / "m"),
            "--grpc_workers",
            "2",
            "--metrics_enable",
        ],
        rest=True,
    )
    for value in range(REQUESTS):
        status, body = rest(server, "POST", "/v2/models/m/infer", infer_body(float(value)))
        assert status == 200, body
        assert json.loads(body)["outputs"][0]["data"] == [2.0 * value, 2.0]
    status, body = rest(server, "GET", "/metrics")
    assert status == 200
    metrics = body.decode()
    served = worker_counts(metrics)
    assert len(served) == 2, metrics
    assert all(parent_of(int(pid)) == server.pid for pid in served)
    assert all(count > 0 for count in served.values()), served
    infer_line = re.search(
        r'ovms_requests_success\{api="KServe",interface="REST",method="ModelInfer",'
        r'name="m",version="1"\} (\d+)',
        metrics,
    )
    assert infer_line is not None, metrics
    assert int(infer_line.group(1)) == REQUESTS
    assert sum(served.values()) == sum(
        int(value) for value in re.findall(r"^ovms_requests_success\{.*\} (\d+)$", metrics, re.M)
    )
    # Gauges are summed too: one stream gauge series per model version, the sum of both.
    assert "[worker 0][ovserve.server] Worker 0 of 2" in server.log_text()
    assert "[worker 1][ovserve.server] Worker 1 of 2" in server.log_text()


def test_reload_reaches_every_worker(server_factory: ServerPool, tmp_path: Path) -> None:
    save_ir(scale_model((-1, -1), 2.0), tmp_path / "a")
    save_ir(scale_model((-1, -1), 3.0), tmp_path / "b")
    config = tmp_path / "config.json"

    def write(names: list[str]) -> None:
        entries = [{"config": {"name": name, "base_path": str(tmp_path / name)}} for name in names]
        config.write_text(json.dumps({"model_config_list": entries}))

    write(["a"])
    server = server_factory.start(
        [
            "--config_path",
            str(config),
            "--grpc_workers",
            "2",
            "--file_system_poll_wait_seconds",
            "0",
        ],  # only the reload call can apply the change
        rest=True,
    )
    write(["a", "b"])
    status, body = rest(server, "POST", "/v1/config/reload")
    assert status == 201, body
    # New connections land on either worker: every one must know model b.
    for _ in range(20):
        status, body = rest(server, "POST", "/v2/models/b/infer", infer_body(1.0))
        assert status == 200, body
        assert json.loads(body)["outputs"][0]["data"] == [3.0, 3.0]
    assert server.log_text().count("Loaded model b version 1") == 2


def test_sigterm_drains_every_worker(server_factory: ServerPool, tmp_path: Path) -> None:
    # A reply of a few bytes: a megabyte reply to a client too busy to read it can be cut short at
    # shutdown (the worker's gRPC core closes the connection after the last reply is written; the
    # client's later window updates meet a closed socket, whose reset drops the unsent rest).
    model = slow_model(depth=48, summed=True)
    save_ir(model, tmp_path / "slow")
    server = server_factory.start(
        [
            "--model_name",
            "slow",
            "--model_path",
            str(tmp_path / "slow"),
            "--grpc_workers",
            "2",
            "--metrics_enable",
            *F32_FLAGS,
        ],
        rest=True,
    )
    # Long enough to be in flight at the signal, short enough that even 10 queued requests finish
    # within the 30 s drain on a loaded machine.
    x = np.random.default_rng(3).standard_normal((256, 1024)).astype(np.float32)
    expected = reference(model, {"x": x})["y"]

    def call(_: int) -> Any:
        # A channel of its own (not the shared subchannel pool): a connection of its own.
        options = [
            ("grpc.use_local_subchannel_pool", 1),
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
        ]
        with grpc.insecure_channel(server.grpc_target, options=options) as channel:
            request = service_pb2.ModelInferRequest(model_name="slow")
            request.inputs.add(name="x", datatype="FP32", shape=list(x.shape))
            request.raw_input_contents.append(x.tobytes())
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            return triton.InferResult(stub.ModelInfer(request, timeout=120)).as_numpy("y")

    workers = sorted(worker_counts(rest(server, "GET", "/metrics")[1].decode()))
    assert len(workers) == 2
    with ThreadPoolExecutor(10) as pool:
        futures: list[Future[Any]] = []
        # New connections until both workers are busy (each lands on either; 10 is plenty).
        while len(futures) < 10:
            futures.append(pool.submit(call, len(futures)))
            busy = wait_busy(server, futures)
            if all(busy.get(pid, 0) > 0 for pid in workers):
                break
        assert all(busy.get(pid, 0) > 0 for pid in workers), busy
        server.send_signal()
        answers = [future.result() for future in futures]
    for answer in answers:
        np.testing.assert_allclose(answer, expected, rtol=1e-4, atol=1e-3)
    assert server.wait_exit(90) == 0
    assert server.log_text().count("Stopped") == 2
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)
    assert server.grpc_port is not None
    assert not port_is_open(server.grpc_port)


def wait_busy(server: ServerProcess, futures: list[Future[Any]]) -> dict[str, int]:
    """pid → requests in flight, once every unfinished request has reached a worker."""
    deadline = time.monotonic() + 30
    previous: tuple[int, dict[str, int]] | None = None
    while True:
        # Counted on both sides of the scrape: when no request finished meanwhile and the workers
        # hold as many as are unfinished, every unfinished request is in a worker (a request still
        # connecting at the signal would be refused, rightly, and fail the test for no fault). The
        # same count on two scrapes in a row rules out a request that left a worker just as
        # another was still on its way in.
        pending_before = sum(not future.done() for future in futures)
        metrics = rest(server, "GET", "/metrics")[1].decode()
        busy = {
            pid: int(value)
            for pid, value in re.findall(
                r'ovserve_worker_current_requests\{pid="(\d+)",worker="\d"\} (\d+)', metrics
            )
        }
        pending = sum(not future.done() for future in futures)
        settled = pending == pending_before == sum(busy.values())
        if (settled and previous == (pending, busy)) or time.monotonic() > deadline:
            return busy
        previous = (pending, busy) if settled else None
        time.sleep(0.05)
