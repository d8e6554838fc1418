"""The REST app end to end over a FakeEngine service (no sockets)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from ovserve.config.model_config import ModelConfig
from ovserve.config.version_policy import AllVersions
from ovserve.frontends.rest.app import RestApp
from ovserve.frontends.rest.http import Request
from ovserve.frontends.rest_api import build_app
from ovserve.metrics import Metrics
from ovserve.serving.model_instance import ModelVersionState
from ovserve.serving.model_manager import ModelManager
from ovserve.serving.service import ServingService

from _fake_engine import FakeEngine

RepoFactory = Callable[..., ModelConfig]


@dataclass
class Reply:
    status: int
    headers: dict[bytes, bytes]
    body: bytes
    content_type: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


def call(
    app: RestApp,
    method: str,
    path: str,
    body: bytes = b"",
    *,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> Reply:
    """One request through the app."""
    response = asyncio.run(app.handle(Request(method, path, headers or [], body)))
    return Reply(response.status, dict(response.headers), response.body, response.content_type)


def build_service(
    engine: FakeEngine, config: ModelConfig, metrics: Metrics | None = None
) -> ServingService:
    async def build() -> ServingService:
        manager = ModelManager(engine)
        await manager.add_model(config)
        built = ServingService(manager, metrics)
        built.ready = True
        return built

    return asyncio.run(build())


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(enabled=True)


@pytest.fixture
def service(engine: FakeEngine, make_repo: RepoFactory, metrics: Metrics) -> ServingService:
    return build_service(engine, make_repo([1, 2], policy=AllVersions()), metrics)


@pytest.fixture
def app(service: ServingService) -> RestApp:
    return build_app(service)


def infer_body(values: list[float] | None = None, **extra: Any) -> bytes:
    tensor = {"name": "data", "shape": [1, 3], "datatype": "FP32", "data": values or [1, 2, 3]}
    return json.dumps({"inputs": [tensor], **extra}).encode()


def sample(metrics: Metrics, family: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(family, {"name": "m", **labels})


# --- routing -------------------------------------------------------------------------------------


def test_kserve_infer_default_and_given_version(app: RestApp) -> None:
    reply = call(app, "POST", "/v2/models/m/infer", infer_body())
    assert reply.status == 200
    assert reply.content_type == b"application/json"
    document = reply.json()
    assert (document["model_name"], document["model_version"]) == ("m", "2")
    assert document["outputs"] == [
        {"name": "out", "shape": [1, 3], "datatype": "FP32", "data": [6.0, 6.0, 6.0]}
    ]
    reply = call(app, "POST", "/v2/models/m/versions/1/infer", infer_body())
    assert reply.json()["model_version"] == "1"


def test_health_metadata_and_readiness(app: RestApp, service: ServingService) -> None:
    assert (
        call(app, "GET", "/v2/health/live").status,
        call(app, "GET", "/v2/health/ready").status,
    ) == (200, 200)
    assert call(app, "GET", "/v2").json()["name"] == "OpenVINO Model Server"
    assert call(app, "GET", "/v2/models/m").json()["versions"] == ["1", "2"]
    assert call(app, "GET", "/v2/models/m/versions/1/").json()["name"] == "m"
    ready = call(app, "GET", "/v2/models/m/versions/2/ready")
    assert (ready.status, ready.body) == (200, b"")
    service.ready = False
    reply = call(app, "GET", "/v2/health/ready")
    assert (reply.status, reply.json()) == (503, {"error": "Server is not ready"})


def test_tfs_predict_status_and_metadata(app: RestApp) -> None:
    reply = call(app, "POST", "/v1/models/m/versions/1:predict", b'{"instances": [[1, 1, 1]]}')
    assert (reply.status, reply.json()) == (200, {"predictions": [[3.0, 3.0, 3.0]]})
    reply = call(app, "POST", "/v1/models/m:predict", b'{"inputs": {"data": [[1, 1, 2]]}}')
    assert reply.json() == {"outputs": [[4.0, 4.0, 4.0]]}
    statuses = call(app, "GET", "/v1/models/m").json()["model_version_status"]
    assert [status["version"] for status in statuses] == ["1", "2"]
    assert len(call(app, "GET", "/v1/models/m/versions/1").json()["model_version_status"]) == 1
    assert call(app, "GET", "/v1/models/m/metadata").json()["modelSpec"]["version"] == "2"
    assert call(app, "GET", "/v1/config").json()["m"]["model_version_status"][0]["state"] == (
        "AVAILABLE"
    )


@pytest.mark.parametrize(
    ("method", "path", "status", "error"),
    [
        ("GET", "/v3/anything", 404, "Requested REST resource not found"),
        ("GET", "/v2/models/m/versions/x", 404, "Requested REST resource not found"),
        ("POST", "/v1/models/m:classify", 404, "Requested REST resource not found"),
        ("GET", "/v2/models/m/infer", 406, "Unsupported method"),
        ("POST", "/v2/models/m", 406, "Unsupported method"),
        ("GET", "/v1/models/m:predict", 406, "Unsupported method"),
        ("POST", "/v1/config", 406, "Unsupported method"),
        ("GET", "/v1/config/reload", 406, "Unsupported method"),
        ("PUT", "/v2/models/m/infer", 406, "Unsupported method"),
        ("DELETE", "/nowhere", 406, "Unsupported method"),
        ("GET", "/v2/models/nope", 404, "Model with requested name is not found"),
        ("GET", "/v2/models/m/versions/9/ready", 404, "Model with requested version is not found"),
        ("GET", "/v2/models/m/versions/0/ready", 404, "Model with requested version is not found"),
        ("GET", "/v1/models", 404, "Model with requested name is not found"),
        ("POST", "/v1/config/reload", 400, "Config file not found or cannot open."),
    ],
)
def test_errors_are_ovms_json(
    app: RestApp, method: str, path: str, status: int, error: str
) -> None:
    reply = call(app, method, path, b"{}")
    assert (reply.status, reply.json()) == (status, {"error": error})
    assert reply.content_type == b"application/json"


def test_validation_errors_keep_ovms_texts(app: RestApp) -> None:
    reply = call(app, "POST", "/v2/models/m/infer", infer_body([1, 2]))
    assert reply.status == 400
    assert reply.json()["error"].startswith("Invalid number of values in tensor proto container")
    reply = call(
        app, "POST", "/v1/models/m:predict", b'{"instances": [{"data": [1, 2, 3]}], "x": 1}'
    )
    assert reply.status == 200
    reply = call(app, "POST", "/v1/models/m:predict", b"{not json")
    assert reply.status == 400
    assert reply.json()["error"].startswith("The file is not valid json")


def test_reload_answers_201_when_something_changed(app: RestApp, service: ServingService) -> None:
    class Reloader:
        def __init__(self) -> None:
            self.answers = [True, False]

        async def reload(self) -> bool:
            return self.answers.pop(0)

    service.reloader = Reloader()
    first = call(app, "POST", "/v1/config/reload")
    second = call(app, "POST", "/v1/config/reload")
    assert (first.status, second.status) == (201, 200)
    assert first.json()["m"]["model_version_status"][0]["version"] == "1"


# --- metrics -------------------------------------------------------------------------------------


def test_requests_are_counted_by_api_interface_method_and_version(
    app: RestApp, metrics: Metrics
) -> None:
    call(app, "POST", "/v2/models/m/infer", infer_body())
    call(app, "POST", "/v2/models/m/infer", infer_body([1]))
    call(app, "POST", "/v2/models/nope/infer", infer_body())
    call(app, "GET", "/v2/models/m/ready")
    call(app, "POST", "/v1/models/m/versions/1:predict", b'{"instances": [[1, 1, 1]]}')
    call(app, "GET", "/v1/models/m")
    kserve = {"api": "KServe", "interface": "REST"}
    assert sample(metrics, "ovms_requests_success", **kserve, method="ModelInfer", version="2") == 1
    assert sample(metrics, "ovms_requests_fail", **kserve, method="ModelInfer", version="2") == 1
    assert sample(metrics, "ovms_requests_success", **kserve, method="ModelReady") == 1
    tfs = {"api": "TensorFlowServing", "interface": "REST"}
    assert sample(metrics, "ovms_requests_success", **tfs, method="Predict", version="1") == 1
    assert sample(metrics, "ovms_requests_success", **tfs, method="GetModelStatus") == 1
    assert sample(metrics, "ovms_request_time_us_count", interface="REST", version="2") == 1
    assert sample(metrics, "ovms_inference_time_us_count", version="2") == 1
    assert sample(metrics, "ovms_inference_time_us_count", version="1") == 1
    assert sample(metrics, "ovms_streams", version="2") == 1


def test_metrics_endpoint_serves_prometheus_text(app: RestApp) -> None:
    call(app, "POST", "/v2/models/m/infer", infer_body())
    reply = call(app, "GET", "/metrics")
    assert reply.status == 200
    assert reply.content_type.startswith(b"text/plain; version=0.0.4")
    text = reply.body.decode()
    assert "# TYPE ovms_requests_success counter" in text
    assert (
        'ovms_requests_success{api="KServe",interface="REST",method="ModelInfer",'
        'name="m",version="2"} 1'
    ) in text
    assert call(app, "POST", "/metrics").status == 406


def test_no_metrics_endpoint_when_disabled(engine: FakeEngine, make_repo: RepoFactory) -> None:
    disabled = build_app(build_service(engine, make_repo([1, 2], policy=AllVersions())))
    assert call(disabled, "GET", "/metrics").status == 404
    assert call(disabled, "POST", "/v2/models/m/infer", infer_body()).status == 200


def test_rest_requests_are_counted_once(app: RestApp, metrics: Metrics) -> None:
    assert call(app, "POST", "/v2/models/m/infer", infer_body()).status == 200
    # Refused while decoding the body, inside the call: one failure for the resolved version.
    assert call(app, "POST", "/v2/models/m/versions/1/infer", b"{not json").status == 400
    assert call(app, "POST", "/v1/models/m:predict", b'{"instances": [[1, 1, 1]]}').status == 200
    assert call(app, "POST", "/v1/models/m/versions/1:predict", b'{"instances": 3}').status == 400
    # A bad body for an unknown model: the body's error (as OVMS), counted nowhere.
    reply = call(app, "POST", "/v2/models/nope/infer", b"{not json")
    assert (reply.status, reply.json()["error"][:26]) == (400, "The file is not valid json")
    assert b'name="nope"' not in metrics.render()
    kserve = {"api": "KServe", "interface": "REST", "method": "ModelInfer"}
    tfs = {"api": "TensorFlowServing", "interface": "REST", "method": "Predict"}
    for labels, version, ok, failed in (
        (kserve, "2", 1, 0),
        (kserve, "1", 0, 1),
        (tfs, "2", 1, 0),
        (tfs, "1", 0, 1),
    ):
        assert sample(metrics, "ovms_requests_success", **labels, version=version) == ok
        assert sample(metrics, "ovms_requests_fail", **labels, version=version) == failed
    assert sample(metrics, "ovms_request_time_us_count", interface="REST", version="2") == 2
    assert sample(metrics, "ovms_request_time_us_count", interface="REST", version="1") is None
    assert sample(metrics, "ovms_inference_time_us_count", version="2") == 2


@pytest.mark.parametrize("state", ["loading", "failed", "retired"])
def test_readiness_of_a_version_that_does_not_serve(
    engine: FakeEngine, make_repo: RepoFactory, state: str
) -> None:
    service = build_service(engine, make_repo([1, 2], policy=AllVersions(), broken=[2]))
    model = service.models.get("m")
    if state == "loading":
        model.versions[2].state = ModelVersionState.LOADING
    elif state == "retired":
        asyncio.run(model.versions[1].retire())
    version = 1 if state == "retired" else 2
    reply = call(build_app(service), "GET", f"/v2/models/m/versions/{version}/ready")
    assert (reply.status, reply.json()) == (
        404,
        {"error": "Model with requested version is not loaded yet"},
    )
