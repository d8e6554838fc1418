"""ModelStreamInfer over a real gRPC stream with tritonclient's streaming API.

Requests on one stream are answered in order, each with its own id and values (checked against
in-process OpenVINO); a bad request in the middle gets its error in-band, with OVMS's text, and
the stream carries on: the requests after it are still answered.
"""

from __future__ import annotations

import queue
from typing import Any

import numpy as np
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from _models import add_mul_model, reference
from _server import ServerProcess

TIMEOUT_S = 30


def inputs(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any], name_b: str = "b") -> list[Any]:
    tensors = [
        triton.InferInput("a", list(a.shape), "FP32"),
        triton.InferInput(name_b, list(b.shape), "FP32"),
    ]
    tensors[0].set_data_from_numpy(a)
    tensors[1].set_data_from_numpy(b)
    return tensors


def test_stream_answers_in_order_with_an_error_mid_stream(add_mul_server: ServerProcess) -> None:
    rng = np.random.default_rng(11)
    pairs = [
        (
            rng.standard_normal((rows, 4)).astype(np.float32),
            rng.standard_normal((rows, 4)).astype(np.float32),
        )
        for rows in (1, 3, 2, 5)
    ]
    replies: queue.Queue[tuple[Any, InferenceServerException | None]] = queue.Queue()
    client = triton.InferenceServerClient(add_mul_server.grpc_target)
    client.start_stream(callback=lambda result, error: replies.put((result, error)))
    try:
        for index, (a, b) in enumerate(pairs):
            client.async_stream_infer("add_mul", inputs(a, b), request_id=f"r{index}")
            if index == 1:  # a bad request in the middle: wrong input name
                client.async_stream_infer("add_mul", inputs(a, b, name_b="c"), request_id="bad")
        got = [replies.get(timeout=TIMEOUT_S) for _ in range(len(pairs) + 1)]
    finally:
        client.stop_stream()
        client.close()

    errors = [(index, error) for index, (_, error) in enumerate(got) if error is not None]
    assert [index for index, _ in errors] == [2]
    assert errors[0][1].message() == "Missing input with specific name - Required input: b"
    answered = [result for result, error in got if error is None]
    assert [result.get_response().id for result in answered] == ["r0", "r1", "r2", "r3"]
    for result, (a, b) in zip(answered, pairs, strict=True):
        expected = reference(add_mul_model(), {"a": a, "b": b})
        np.testing.assert_array_equal(result.as_numpy("sum"), expected["sum"])
        np.testing.assert_array_equal(result.as_numpy("product"), expected["product"])
