"""``/metrics``: OVMS's names and labels, moving with successes and failures over REST and gRPC."""

from __future__ import annotations

import json
import re

import numpy as np
import numpy.typing as npt
import pytest
import tritonclient.grpc as triton
from ovmsclient import make_grpc_client

from _models import save_ir, scale_model
from _rest import get, post, sample, scrape
from _server import ServerPool, ServerProcess

MODEL = "scale"
X = np.ones((1, 4), np.float32)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    base = tmp_path_factory.mktemp("scale")
    save_ir(scale_model((-1, 4)), base)
    return str(base)


@pytest.fixture(scope="module")
def server(module_server_factory: ServerPool, model_path: str) -> ServerProcess:
    args = ["--model_name", MODEL, "--model_path", model_path, "--metrics_enable"]
    return module_server_factory.start(args, rest=True)


def rest_infer(server: ServerProcess, rows: int = 1, width: int = 4) -> int:
    body = {
        "inputs": [
            {
                "name": "data",
                "shape": [rows, width],
                "datatype": "FP32",
                "data": [1.0] * rows * width,
            }
        ]
    }
    return post(f"{server.rest_url}/v2/models/{MODEL}/infer", json.dumps(body)).status_code


def grpc_infer(server: ServerProcess, array: npt.NDArray[np.float32]) -> bool:
    client = triton.InferenceServerClient(server.grpc_target)
    tensor = triton.InferInput("data", list(array.shape), "FP32")
    tensor.set_data_from_numpy(array)
    try:
        client.infer(MODEL, [tensor])
    except triton.InferenceServerException:
        return False
    return True


Endpoint = tuple[str, str, str]
"""api, interface, method."""


def count(
    server: ServerProcess, family: str, endpoint: Endpoint, version: str | None = "1"
) -> float:
    """``family``'s value for one endpoint of the model (no version label when None)."""
    api, interface, method = endpoint
    labels = {"api": api, "interface": interface, "method": method, "name": MODEL}
    if version is not None:
        labels["version"] = version
    return sample(scrape(server.rest_url), family, **labels)


def test_exposes_ovms_families(server: ServerProcess) -> None:
    text = get(f"{server.rest_url}/metrics").text
    for family, kind in [
        ("ovms_requests_success", "counter"),
        ("ovms_requests_fail", "counter"),
        ("ovms_request_time_us", "histogram"),
        ("ovms_inference_time_us", "histogram"),
        ("ovms_wait_for_infer_req_time_us", "histogram"),
        ("ovms_streams", "gauge"),
        ("ovms_current_requests", "gauge"),
    ]:
        assert f"# TYPE {family} {kind}" in text
    samples = scrape(server.rest_url)
    # The gauge says what the engine reported when it loaded the model (its start-up log line).
    loaded = re.search(rf"Loaded model {MODEL} version 1 .*, streams (\d+);", server.log_text())
    assert loaded is not None, server.log_text()
    assert sample(samples, "ovms_streams", name=MODEL, version="1") == int(loaded.group(1))
    assert sample(samples, "ovms_current_requests", name=MODEL, version="1") == 0


def test_kserve_rest_counters_move(server: ServerProcess) -> None:
    endpoint = ("KServe", "REST", "ModelInfer")
    before_ok = count(server, "ovms_requests_success", endpoint)
    before_fail = count(server, "ovms_requests_fail", endpoint)
    before = scrape(server.rest_url)
    labels = {"name": MODEL, "version": "1"}
    before_time = sample(before, "ovms_request_time_us_count", interface="REST", **labels)
    before_infer = sample(before, "ovms_inference_time_us_count", **labels)
    before_inf = sample(
        before, "ovms_request_time_us_bucket", interface="REST", le="+Inf", **labels
    )
    assert rest_infer(server) == 200
    assert rest_infer(server) == 200
    assert rest_infer(server, width=5) == 400
    assert count(server, "ovms_requests_success", endpoint) == before_ok + 2
    assert count(server, "ovms_requests_fail", endpoint) == before_fail + 1
    after = scrape(server.rest_url)
    assert (
        sample(after, "ovms_request_time_us_count", interface="REST", **labels) == before_time + 2
    )
    # Only the two good requests reached the engine; the refused one is not timed.
    assert sample(after, "ovms_inference_time_us_count", **labels) == before_infer + 2
    assert (
        sample(after, "ovms_request_time_us_bucket", interface="REST", le="+Inf", **labels)
        == before_inf + 2
    )


def test_kserve_grpc_counters_move(server: ServerProcess) -> None:
    endpoint = ("KServe", "gRPC", "ModelInfer")
    before_ok = count(server, "ovms_requests_success", endpoint)
    before_fail = count(server, "ovms_requests_fail", endpoint)
    labels = {"interface": "gRPC", "name": MODEL, "version": "1"}
    before_time = sample(scrape(server.rest_url), "ovms_request_time_us_count", **labels)
    assert grpc_infer(server, X)
    assert not grpc_infer(server, np.ones((1, 5), np.float32))
    assert count(server, "ovms_requests_success", endpoint) == before_ok + 1
    assert count(server, "ovms_requests_fail", endpoint) == before_fail + 1
    after_time = sample(scrape(server.rest_url), "ovms_request_time_us_count", **labels)
    assert after_time == before_time + 1


def test_tfs_counters_move_over_both_interfaces(server: ServerProcess) -> None:
    rest = ("TensorFlowServing", "REST", "Predict")
    grpc = ("TensorFlowServing", "gRPC", "Predict")
    before_rest = count(server, "ovms_requests_success", rest)
    before_grpc = count(server, "ovms_requests_success", grpc)
    response = post(
        f"{server.rest_url}/v1/models/{MODEL}:predict", json.dumps({"instances": X.tolist()})
    )
    assert response.status_code == 200
    client = make_grpc_client(server.grpc_target)
    np.testing.assert_array_equal(client.predict({"data": X}, MODEL), X * 2)
    assert count(server, "ovms_requests_success", rest) == before_rest + 1
    assert count(server, "ovms_requests_success", grpc) == before_grpc + 1
    status = ("TensorFlowServing", "gRPC", "GetModelStatus")
    before_status = count(server, "ovms_requests_success", status, version=None)
    client.get_model_status(MODEL)
    assert count(server, "ovms_requests_success", status, version=None) == before_status + 1


def test_metadata_and_ready_are_counted(server: ServerProcess) -> None:
    ready = ("KServe", "REST", "ModelReady")
    metadata = ("KServe", "REST", "ModelMetadata")
    before_ready = count(server, "ovms_requests_success", ready, version=None)
    before_metadata = count(server, "ovms_requests_success", metadata)
    assert get(f"{server.rest_url}/v2/models/{MODEL}/ready").status_code == 200
    assert get(f"{server.rest_url}/v2/models/{MODEL}").status_code == 200
    assert count(server, "ovms_requests_success", ready, version=None) == before_ready + 1
    assert count(server, "ovms_requests_success", metadata) == before_metadata + 1


def test_unknown_models_are_not_counted(server: ServerProcess) -> None:
    before = scrape(server.rest_url)
    assert post(f"{server.rest_url}/v2/models/nope/infer", "{}").status_code == 400
    response = post(f"{server.rest_url}/v1/models/nope:predict", json.dumps({"instances": [[1]]}))
    assert response.status_code == 404
    after = scrape(server.rest_url)
    assert not [key for key in after if key not in before and ("name", "nope") in key[1]]


def test_metrics_list_limits_the_families(server_factory: ServerPool, model_path: str) -> None:
    args = [
        "--model_name", MODEL, "--model_path", model_path, "--metrics_enable",
        "--metrics_list", "ovms_requests_fail,ovms_infer_req_queue_size",
    ]  # fmt: skip
    limited = server_factory.start(args, rest=True)
    families = {
        line.split()[2]
        for line in get(f"{limited.rest_url}/metrics").text.splitlines()
        if line.startswith("# TYPE")
    }
    assert families == {"ovms_requests_fail", "ovms_infer_req_queue_size"}
