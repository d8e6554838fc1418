"""ServingService: the one data plane front-ends call, over the FakeEngine."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np
import pytest

from ovserve import __version__
from ovserve.config.model_config import ModelConfig
from ovserve.config.version_policy import AllVersions
from ovserve.errors import (
    ConfigError,
    ErrorCode,
    InvalidInput,
    ModelNotFound,
    ModelNotReady,
    VersionNotFound,
)
from ovserve.metrics import GRPC, KSERVE, TFS, Endpoint, Metrics
from ovserve.serving.model_instance import ModelVersionState
from ovserve.serving.model_manager import ModelManager
from ovserve.serving.service import ServingService
from ovserve.tensors import DataType, RequestTensor

from _fake_engine import FakeEngine

RepoFactory = Callable[..., ModelConfig]

INFER = Endpoint(KSERVE, GRPC, "ModelInfer", versioned=True)
METADATA = Endpoint(KSERVE, GRPC, "ModelMetadata", versioned=True)
READY = Endpoint(KSERVE, GRPC, "ModelReady", versioned=False)
STATUS = Endpoint(TFS, GRPC, "GetModelStatus", versioned=False)


def service_for(
    engine: FakeEngine, config: ModelConfig, metrics: Metrics | None = None
) -> ServingService:
    async def build() -> ServingService:
        manager = ModelManager(engine)
        await manager.add_model(config)
        return ServingService(manager, metrics)

    return asyncio.run(build())


def tensor(values: list[float], name: str = "data") -> RequestTensor:
    array = np.array(values, np.float32)
    return RequestTensor(name, DataType.FP32, (1, 3), array.tobytes())


def test_server_identity(engine: FakeEngine) -> None:
    service = ServingService(ModelManager(engine))
    assert service.server_name == "OpenVINO Model Server"
    assert service.server_version == __version__
    assert service.ready is False


def test_infer_on_the_default_and_a_given_version(
    engine: FakeEngine, make_repo: RepoFactory
) -> None:
    service = service_for(engine, make_repo([1, 2], policy=AllVersions()))
    result = asyncio.run(service.infer(INFER, "m", None, [tensor([1, 2, 3])]))
    assert (result.model_name, result.model_version) == ("m", 2)
    assert result.outputs["out"].tolist() == [[6, 6, 6]]
    assert asyncio.run(service.infer(INFER, "m", 1, [tensor([1, 1, 1])])).model_version == 1
    assert engine.last("v1.xml").calls[0]["data"].tolist() == [[1, 1, 1]]


def test_infer_validates_before_the_engine_runs(engine: FakeEngine, make_repo: RepoFactory) -> None:
    service = service_for(engine, make_repo([1]))
    with pytest.raises(InvalidInput) as caught:
        asyncio.run(service.infer(INFER, "m", None, [tensor([1, 2, 3], name="image")]))
    assert caught.value.code is ErrorCode.INVALID_MISSING_INPUT
    with pytest.raises(InvalidInput) as unknown_output:
        asyncio.run(service.infer(INFER, "m", None, [tensor([1, 2, 3])], ["nope"]))
    assert unknown_output.value.code is ErrorCode.INVALID_OUTPUT
    assert engine.last("v1.xml").calls == []


def test_infer_unknown_model_and_version(engine: FakeEngine, make_repo: RepoFactory) -> None:
    service = service_for(engine, make_repo([1]))
    with pytest.raises(ModelNotFound):
        asyncio.run(service.infer(INFER, "other", None, [tensor([1, 2, 3])]))
    with pytest.raises(VersionNotFound):
        asyncio.run(service.infer(INFER, "m", 9, [tensor([1, 2, 3])]))


def test_model_ready(engine: FakeEngine, make_repo: RepoFactory) -> None:
    service = service_for(engine, make_repo([1]))
    assert service.model_ready(READY, "m") is True
    assert service.model_ready(READY, "m", 1) is True
    with pytest.raises(VersionNotFound):
        service.model_ready(READY, "m", 2)
    with pytest.raises(ModelNotFound):
        service.model_ready(READY, "x")


def test_model_metadata(engine: FakeEngine, make_repo: RepoFactory) -> None:
    service = service_for(engine, make_repo([1, 2, 3], policy=AllVersions(), broken=[3]))
    metadata = service.model_metadata(METADATA, "m")
    assert (metadata.name, metadata.version, metadata.versions) == ("m", 2, (1, 2))
    assert [spec.name for spec in metadata.inputs] == ["data"]
    assert [spec.name for spec in metadata.outputs] == ["out"]
    assert service.model_metadata(METADATA, "m", 1).version == 1


def test_model_status(engine: FakeEngine, make_repo: RepoFactory) -> None:
    service = service_for(engine, make_repo([1, 2], policy=AllVersions(), broken=[2]))
    statuses = service.model_status(STATUS, "m")
    assert [(s.version, s.state) for s in statuses] == [
        (1, ModelVersionState.AVAILABLE),
        (2, ModelVersionState.END),
    ]
    assert "corrupt2.xml" in statuses[1].error
    assert service.model_status(STATUS, "m", 1) == [statuses[0]]
    with pytest.raises(VersionNotFound):
        service.model_status(STATUS, "m", 5)
    with pytest.raises(ModelNotFound):
        service.model_status(STATUS, "x")
    assert service.all_statuses() == {"m": statuses}


def test_reload_without_a_config_file(engine: FakeEngine) -> None:
    service = ServingService(ModelManager(engine))
    with pytest.raises(ConfigError, match=r"^Config file not found or cannot open\.$"):
        asyncio.run(service.reload_config())


def test_readiness_of_loading_failed_and_retired_versions(
    engine: FakeEngine, make_repo: RepoFactory
) -> None:
    service = service_for(engine, make_repo([1, 2, 3, 4], policy=AllVersions(), broken=[3]))
    model = service.models.get("m")
    model.versions[2].state = ModelVersionState.LOADING
    asyncio.run(model.versions[4].retire())
    assert service.model_ready(READY, "m", 1) is True
    assert service.model_ready(READY, "m") is True
    for version in (2, 3, 4):  # loading, failed, retired: known versions that do not serve
        assert service.model_ready(READY, "m", version) is False
        with pytest.raises(ModelNotReady) as caught:
            service.require_ready(READY, "m", version)
        assert caught.value.text == "Model with requested version is not loaded yet"
    with pytest.raises(VersionNotFound):
        service.model_ready(READY, "m", 5)
    with pytest.raises(VersionNotFound):
        service.model_ready(READY, "m", 0)


def test_no_default_version_is_not_found(engine: FakeEngine, make_repo: RepoFactory) -> None:
    service = service_for(engine, make_repo([1], broken=[1]))
    assert service.model_ready(READY, "m", 1) is False
    with pytest.raises(VersionNotFound):
        service.model_ready(READY, "m")


def counts(metrics: Metrics, family: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(
        family, {"api": "KServe", "interface": "gRPC", "name": "m", **labels}
    )


def test_a_call_is_recorded_once_when_it_closes(engine: FakeEngine, make_repo: RepoFactory) -> None:
    metrics = Metrics(enabled=True)
    service = service_for(engine, make_repo([1, 2], policy=AllVersions()), metrics)

    async def decode_fails() -> None:
        with service.call(INFER, "m", 1):
            raise InvalidInput("the front-end could not decode the body")

    asyncio.run(service.infer(INFER, "m", None, [tensor([1, 2, 3])]))
    with pytest.raises(InvalidInput):
        asyncio.run(decode_fails())
    with pytest.raises(VersionNotFound):  # nothing resolved: not counted, as OVMS
        service.call(INFER, "m", 7)
    assert counts(metrics, "ovms_requests_success", method="ModelInfer", version="2") == 1
    assert counts(metrics, "ovms_requests_fail", method="ModelInfer", version="2") == 0
    assert counts(metrics, "ovms_requests_fail", method="ModelInfer", version="1") == 1
    assert counts(metrics, "ovms_requests_success", method="ModelInfer", version="1") == 0
    assert counts(metrics, "ovms_requests_fail", method="ModelInfer", version="7") is None
    times = {"interface": "gRPC", "name": "m", "version": "2"}
    assert metrics.registry.get_sample_value("ovms_request_time_us_count", times) == 1
    engine_times = {"name": "m", "version": "2"}
    assert metrics.registry.get_sample_value("ovms_inference_time_us_count", engine_times) == 1
    assert metrics.registry.get_sample_value("ovms_streams", engine_times) == 1


def test_unversioned_calls_carry_no_version(engine: FakeEngine, make_repo: RepoFactory) -> None:
    metrics = Metrics(enabled=True)
    service = service_for(engine, make_repo([1]), metrics)
    service.model_ready(READY, "m", 1)
    with pytest.raises(VersionNotFound):
        service.model_ready(READY, "m", 3)
    assert counts(metrics, "ovms_requests_success", method="ModelReady") == 1
    assert counts(metrics, "ovms_requests_fail", method="ModelReady") == 1
