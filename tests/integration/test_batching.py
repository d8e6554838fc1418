"""Dynamic batching on real OpenVINO: concurrent requests of several kinds, each its own answer.

The server is given a long ``--max_queue_delay_microseconds`` so that requests sent together
really are batched (the histogram in ``/metrics`` proves it); without a delay, batches form only
when requests happen to queue, which a test cannot force.
"""

from __future__ import annotations

import json
import re
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
import pytest
import tritonclient.grpc as triton
from openvino import opset13 as ops
from tritonclient.utils import InferenceServerException

from _models import reference, save_ir, scale_model
from _server import F32_FLAGS, ServerPool, ServerProcess

FACTORS = {1: 2.0, 2: 3.0}
"""Version → the factor its model multiplies by."""
WIDTHS = (3, 5, 8)
REPEATS = 4


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two versions of ``out = data * factor`` with ``data`` [-1, -1]."""
    base = tmp_path_factory.mktemp("batched")
    for version, factor in FACTORS.items():
        save_ir(scale_model((-1, -1), factor), base, version)
    return base


@pytest.fixture(scope="module")
def server(module_server_factory: ServerPool, versions: Path) -> ServerProcess:
    return module_server_factory.start(
        [
            "--model_name",
            "batched",
            "--model_path",
            str(versions),
            "--model_version_policy",
            '{"all": {}}',
            "--max_queue_delay_microseconds",
            "1000000",
            "--metrics_enable",
            *F32_FLAGS,
        ],
        rest=True,
    )


def infer(server: ServerProcess, version: int, data: np.ndarray[Any, Any]) -> Any:
    client = triton.InferenceServerClient(server.grpc_target)
    try:
        tensor = triton.InferInput(
            "data", list(data.shape), "FP32" if data.dtype == np.float32 else "FP64"
        )
        tensor.set_data_from_numpy(data)
        return client.infer("batched", [tensor], model_version=str(version)).as_numpy("out")
    except InferenceServerException as error:
        return error
    finally:
        client.close()


def batch_histogram(server: ServerProcess) -> dict[str, float]:
    """``ovserve_batch_size`` count and sum per version."""
    with urllib.request.urlopen(f"{server.rest_url}/metrics", timeout=10) as response:
        text = response.read().decode()
    found = {}
    for kind, version, value in re.findall(
        r'ovserve_batch_size_(count|sum)\{name="batched",version="(\d)"\} (\S+)', text
    ):
        found[f"{kind}{version}"] = float(value)
    return found


def test_concurrent_requests_of_several_kinds_each_get_their_own_answer(
    server: ServerProcess, versions: Path
) -> None:
    rng = np.random.default_rng(11)
    jobs: list[tuple[int, np.ndarray[Any, Any]]] = []
    for version in FACTORS:
        for width in WIDTHS:
            for repeat in range(REPEATS):
                rows = 1 + repeat % 2
                jobs.append((version, rng.standard_normal((rows, width)).astype(np.float32)))
    # One request of a kind is invalid (FP64): it must fail alone, before batching.
    bad = (1, rng.standard_normal((1, 5)))
    jobs.append(bad)
    before = batch_histogram(server)
    with ThreadPoolExecutor(len(jobs)) as pool:
        answers = list(pool.map(lambda job: infer(server, *job), jobs))
    for (version, data), answer in zip(jobs[:-1], answers[:-1], strict=True):
        assert not isinstance(answer, Exception), answer
        model = versions / str(version) / "model.xml"
        np.testing.assert_allclose(answer, reference(model, {"data": data})["out"], rtol=1e-6)
    error = answers[-1]
    assert isinstance(error, InferenceServerException)
    assert error.status() == "StatusCode.INVALID_ARGUMENT"
    assert "Expected: FP32; Actual: FP64" in str(error.message())

    after = batch_histogram(server)
    good = len(jobs) - 1
    for version in FACTORS:
        requests = after[f"sum{version}"] - before.get(f"sum{version}", 0)
        inferences = after[f"count{version}"] - before.get(f"count{version}", 0)
        assert requests == good / len(FACTORS)
        # Six kinds (3 widths x 2 versions), so at least 3 inferences per version; batching
        # must have joined some requests.
        assert len(WIDTHS) <= inferences < requests


def test_a_lone_request_does_not_wait_without_a_delay(
    module_server_factory: ServerPool, versions: Path
) -> None:
    server = module_server_factory.start(
        ["--model_name", "m", "--model_path", str(versions), "--metrics_enable", *F32_FLAGS],
        rest=True,
    )
    data = np.ones((2, 3), np.float32)
    np.testing.assert_allclose(
        infer_named(server, "m", data),
        reference(versions / "2" / "model.xml", {"data": data})["out"],
    )
    assert "dynamic batching of concurrent requests, up to 32 rows" in server.log_text()


def infer_named(server: ServerProcess, name: str, data: np.ndarray[Any, Any]) -> Any:
    with triton.InferenceServerClient(server.grpc_target) as client:
        tensor = triton.InferInput("data", list(data.shape), "FP32")
        tensor.set_data_from_numpy(data)
        return client.infer(name, [tensor]).as_numpy("out")


def test_config_json_turns_batching_off_for_one_model(
    module_server_factory: ServerPool, versions: Path, tmp_path: Path
) -> None:
    config = {
        "model_config_list": [
            {"config": {"name": "on", "base_path": str(versions)}},
            {"config": {"name": "off", "base_path": str(versions), "dynamic_batching": False}},
        ]
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    server = module_server_factory.start(["--config_path", str(path)])
    for name in ("on", "off"):
        assert infer_named(server, name, np.ones((1, 2), np.float32)).shape == (1, 2)
    log = server.log_text()
    assert "Model on version 2: dynamic batching" in log
    assert "Model off version 2: dynamic batching" not in log


def test_a_model_mixing_its_rows_is_not_batched_by_default(
    module_server_factory: ServerPool, tmp_path: Path
) -> None:
    """``out = data - mean(data over the batch)``: its shapes look batchable, its rows are not."""
    data = ops.parameter(ov.PartialShape([-1, 4]), np.float32, name="data")
    data.output(0).get_tensor().set_names({"data"})
    mean = ops.reduce_mean(data, ops.constant(np.array([0], dtype=np.int64)), keep_dims=True)
    out = ops.subtract(data, mean)
    out.output(0).get_tensor().set_names({"out"})
    save_ir(ov.Model([out], [data], "mixing"), tmp_path / "mixing")
    server = module_server_factory.start(
        ["--model_name", "mixing", "--model_path", str(tmp_path / "mixing"), *F32_FLAGS]
    )
    log = server.log_text()
    assert "a probe found rows of one batch affecting each other's outputs" in log
    assert "dynamic batching of concurrent requests" not in log
    rows = np.arange(8, dtype=np.float32).reshape(2, 4)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: infer_named(server, "mixing", rows), range(8)))
    for answer in answers:
        np.testing.assert_allclose(answer, rows - rows.mean(axis=0, keepdims=True))
