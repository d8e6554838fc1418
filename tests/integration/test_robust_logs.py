"""Logs that scale with traffic: failed requests are DEBUG lines plus a WARNING summary.

At the default INFO level, 300 failed requests (gRPC and REST) leave no per-request line, only
a summary with counts by kind (logged at most every 10 s and at shutdown); calls whose
deadline expires while the model works leave no traceback from grpcio (without the filter in
``failure_log``, 1,000 calls with deadlines of 2-40 ms produced grpcio's ExecuteBatchError
traceback here).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import re
from pathlib import Path

import grpc
import numpy as np
import requests
import tritonclient.grpc as triton_grpc
from tritonclient.utils import InferenceServerException

from _models import add_onnx, save_ir, save_onnx, slow_model
from _server import ServerPool

BAD = 100
CALLS = 1000


def test_failed_requests_are_summarized_not_logged_one_by_one(
    server_factory: ServerPool, tmp_path: Path
) -> None:
    save_onnx(add_onnx(), tmp_path / "add")
    server = server_factory.start(
        ["--model_name", "add", "--model_path", str(tmp_path / "add")], rest=True
    )
    client = triton_grpc.InferenceServerClient(server.grpc_target)
    for _ in range(BAD):
        with contextlib.suppress(InferenceServerException):
            client.get_model_metadata("nope")
        wrong = triton_grpc.InferInput("a", [3], "FP32")
        wrong.set_data_from_numpy(np.zeros(3, np.float32))
        with contextlib.suppress(InferenceServerException):
            client.infer("add", [wrong])
        assert (
            requests.post(
                f"{server.rest_url}/v2/models/add/infer", data=b"{", timeout=5
            ).status_code
            == 400
        )
    client.close()
    assert server.stop() == 0
    log = server.log_text()
    assert len(log.splitlines()) < 30, log[-3000:]
    summaries = re.findall(r"\[WARNING\]\[ovserve.requests\] Failed requests in the last .*", log)
    assert summaries, log[-3000:]
    counts: dict[str, int] = {}
    for line in summaries:
        for count, kind in re.findall(r"(\d+) ((?:gRPC|REST) [^,]+)", line):
            counts[kind] = counts.get(kind, 0) + int(count)
    assert counts == {
        "gRPC NOT_FOUND": BAD,
        "gRPC INVALID_ARGUMENT": BAD,
        "REST 400 Bad Request": BAD,
    }, summaries


def test_expired_deadlines_leave_no_grpcio_traceback(
    server_factory: ServerPool, tmp_path: Path
) -> None:
    save_ir(slow_model(size=256, depth=24), tmp_path / "slow")
    server = server_factory.start(["--model_name", "slow", "--model_path", str(tmp_path / "slow")])
    # Long enough that most deadlines (2-40 ms) expire somewhere on the way, on a fast machine too.
    x = np.ones((256, 256), np.float32)

    def call(index: int) -> grpc.StatusCode:
        client = triton_grpc.InferenceServerClient(server.grpc_target)
        tensor = triton_grpc.InferInput("x", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        try:
            client.infer("slow", [tensor], client_timeout=0.002 + (index % 20) * 0.002)
        except InferenceServerException as error:
            return (
                grpc.StatusCode.DEADLINE_EXCEEDED
                if "Deadline" in str(error)
                else grpc.StatusCode.UNKNOWN
            )
        finally:
            client.close()
        return grpc.StatusCode.OK

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(call, range(CALLS)))
    expired = statuses.count(grpc.StatusCode.DEADLINE_EXCEEDED)
    print(f"{expired} of {CALLS} deadlines expired")
    assert expired > CALLS // 4, statuses
    assert server.stop() == 0
    log = server.log_text()
    assert "Traceback" not in log, log[-3000:]
    assert "ExecuteBatchError" not in log
