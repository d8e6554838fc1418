"""Request metrics for the gRPC methods, read from each API's request and reply messages."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ovserve.errors import OvserveError
from ovserve.frontends.request_metrics import count_failure
from ovserve.metrics import GRPC, KSERVE, TFS, Endpoint, Metrics
from ovserve.serving.service import ServingService

NameOf = Callable[[Any], str]
VersionOf = Callable[[Any], "int | None"]


@dataclass(frozen=True, slots=True)
class _Method:
    endpoint: Endpoint
    name: NameOf
    requested: VersionOf
    """The version the request asks for (None: default)."""
    served: VersionOf | None
    """The version the reply reports, when the reply carries one."""
    timed: bool = False


def _kserve_version(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() and int(text) else None


def _tfs_version(message: Any) -> int | None:
    spec = message.model_spec
    return spec.version.value or None if spec.HasField("version") else None


_METHODS: dict[str, _Method] = {
    "/inference.GRPCInferenceService/ModelInfer": _Method(
        Endpoint(KSERVE, GRPC, "ModelInfer", versioned=True),
        lambda request: request.model_name,
        lambda request: _kserve_version(request.model_version),
        lambda reply: _kserve_version(reply.model_version),
        timed=True,
    ),
    "/inference.GRPCInferenceService/ModelMetadata": _Method(
        Endpoint(KSERVE, GRPC, "ModelMetadata", versioned=True),
        lambda request: request.name,
        lambda request: _kserve_version(request.version),
        None,
    ),
    "/inference.GRPCInferenceService/ModelReady": _Method(
        Endpoint(KSERVE, GRPC, "ModelReady", versioned=False),
        lambda request: request.name,
        lambda request: None,
        None,
    ),
    "/tensorflow.serving.PredictionService/Predict": _Method(
        Endpoint(TFS, GRPC, "Predict", versioned=True),
        lambda request: request.model_spec.name,
        _tfs_version,
        _tfs_version,
        timed=True,
    ),
    "/tensorflow.serving.PredictionService/GetModelMetadata": _Method(
        Endpoint(TFS, GRPC, "GetModelMetadata", versioned=True),
        lambda request: request.model_spec.name,
        _tfs_version,
        _tfs_version,
    ),
    "/tensorflow.serving.ModelService/GetModelStatus": _Method(
        Endpoint(TFS, GRPC, "GetModelStatus", versioned=False),
        lambda request: request.model_spec.name,
        lambda request: None,
        None,
    ),
}


class GrpcMetrics:
    """Counts the gRPC methods OVMS counts; other methods are not counted."""

    def __init__(self, service: ServingService, metrics: Metrics) -> None:
        self._service = service
        self._metrics = metrics

    def counts(self, method: str) -> bool:
        """Whether this full method name is counted."""
        return method in _METHODS

    def started(self) -> float:
        """A timestamp for :meth:`succeeded`."""
        return time.perf_counter()

    def succeeded(self, method: str, request: Any, reply: Any, started: float) -> None:
        """Count a reply; inference replies also feed the latency histograms."""
        spec = _METHODS[method]
        name = spec.name(request)
        if spec.served is not None:
            version = spec.served(reply)
        elif spec.endpoint.versioned:
            version = self._default_version(name, spec.requested(request))
        else:
            version = None
        self._metrics.record_request(spec.endpoint, name, version, ok=True)
        if spec.timed and version is not None:
            micros = (time.perf_counter() - started) * 1e6
            self._metrics.record_request_time(GRPC, name, version, micros)

    def failed(self, method: str, request: Any) -> None:
        """Count a failed call (when its model exists)."""
        spec = _METHODS[method]
        count_failure(
            self._metrics, self._service, spec.endpoint, spec.name(request), spec.requested(request)
        )

    def _default_version(self, name: str, requested: int | None) -> int | None:
        if requested is not None:
            return requested
        try:
            return self._service.model_metadata(name).version
        except OvserveError:
            return None
