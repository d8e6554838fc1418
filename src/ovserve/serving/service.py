"""ServingService: the one data plane every front-end calls, whatever the transport.

A request to a model goes through a :class:`Call`: opening it resolves the model (and, for the
methods OVMS counts per version, the version) once, and closing it records the outcome once —
success or failure, the request time, OVMS's labels — for gRPC and REST alike, as MLServer's
and KServe's DataPlane do. Front-ends decode and encode inside the call, so their failures count
too, and never look a model up again for a metric label.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

from ovserve import __version__
from ovserve.errors import ConfigError, ModelNotReady, OvserveError, VersionNotFound
from ovserve.metrics import Endpoint, Metrics, ModelGauges
from ovserve.serving.model_instance import ModelInstance, VersionStatus
from ovserve.serving.model_manager import ModelManager, ServedModel
from ovserve.tensors import InferResult, RequestTensor, TensorSpec

SERVER_NAME = "OpenVINO Model Server"


@dataclass(frozen=True, slots=True)
class ModelMetadata:
    """What metadata endpoints report for one version."""

    name: str
    version: int
    versions: tuple[int, ...]
    """AVAILABLE versions of the model."""
    inputs: Sequence[TensorSpec]
    outputs: Sequence[TensorSpec]


class ConfigReloader(Protocol):
    """Applies config.json changes (set by the server when ``--config_path`` is used)."""

    async def reload(self) -> bool:
        """Re-read the config file and apply it; True when anything changed.

        Raises ConfigError when the file cannot be read or is invalid (nothing is applied).
        """


class Call:
    """One counted request to one model, resolved once; use it as a ``with`` block.

    Leaving the block records the request once: failed when an exception leaves it, else
    succeeded (with the request and engine times when it ran an inference). A call whose model
    (or version) did not resolve is not counted, as in OVMS, whose counters belong to a model.
    """

    __slots__ = (
        "_error",
        "_instance",
        "_metrics",
        "_model",
        "_result",
        "_started",
        "endpoint",
    )

    def __init__(
        self,
        metrics: Metrics,
        endpoint: Endpoint,
        resolved: tuple[ServedModel, ModelInstance | None] | OvserveError,
    ) -> None:
        self._metrics = metrics
        self.endpoint = endpoint
        if isinstance(resolved, OvserveError):
            self._model: ServedModel | None = None
            self._instance: ModelInstance | None = None
            self._error: OvserveError | None = resolved
        else:
            self._model, self._instance = resolved
            self._error = None
        self._result: InferResult | None = None
        self._started = time.perf_counter()

    def __enter__(self) -> Call:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        metrics = self._metrics
        model = self._model
        if not metrics.enabled or model is None:
            return
        instance = self._instance
        version = instance.version if instance is not None else None
        metrics.record_request(self.endpoint, model.name, version, ok=exc_type is None)
        result = self._result
        if exc_type is None and result is not None:
            micros = (time.perf_counter() - self._started) * 1e6
            metrics.record_request_time(
                self.endpoint.interface, result.model_name, result.model_version, micros
            )
            metrics.record_engine(result)

    @property
    def model(self) -> ServedModel:
        """The resolved model; raises the resolution error of a lazy call."""
        if self._model is None:
            assert self._error is not None
            raise self._error
        return self._model

    @property
    def instance(self) -> ModelInstance:
        """The resolved AVAILABLE version (calls of versioned endpoints only)."""
        model = self.model
        assert self._instance is not None, f"{model.name}: an unversioned call has no version"
        return self._instance

    @property
    def inputs(self) -> Sequence[TensorSpec]:
        """The resolved version's inputs (for codecs that decode by the model's inputs)."""
        return self.instance.inputs

    async def infer(
        self, inputs: Sequence[RequestTensor], outputs: Sequence[str] | None = None
    ) -> InferResult:
        """Validate and run one inference on the resolved version."""
        self._result = await self.instance.infer(inputs, outputs)
        return self._result

    def metadata(self) -> ModelMetadata:
        """Inputs, outputs and the AVAILABLE versions."""
        instance = self.instance
        return ModelMetadata(
            name=self.model.name,
            version=instance.version,
            versions=tuple(available.version for available in self.model.available()),
            inputs=instance.inputs,
            outputs=instance.outputs,
        )

    def ready(self, version: int | None) -> bool:
        """Whether ``version`` (None: the default version) is AVAILABLE.

        A version that exists in any other state (loading, failed, retired) is simply not
        ready; one that does not exist, or no version at all when none serves, raises
        VersionNotFound (OVMS's ModelReady).
        """
        if version is None:
            if self.model.available():
                return True
            raise VersionNotFound()
        instance = self.model.versions.get(version)
        if instance is None:
            raise VersionNotFound()
        return instance.is_available

    def statuses(self, version: int | None) -> list[VersionStatus]:
        """Every version's status, or one version's when ``version`` is given."""
        statuses = self.model.statuses()
        if version:
            statuses = [status for status in statuses if status.version == version]
            if not statuses:
                raise VersionNotFound()
        return statuses


class ServingService:
    """Protocol-neutral operations on the served models; counts requests once, here."""

    def __init__(self, models: ModelManager, metrics: Metrics | None = None) -> None:
        self.models = models
        self.metrics = metrics if metrics is not None else Metrics(enabled=False)
        self.ready = False
        """Set once start-up loading is done; cleared when shutdown begins."""
        self.reloader: ConfigReloader | None = None
        """Present when serving from a config file."""
        if self.metrics.enabled:
            self.metrics.set_gauge_source(self.gauges)

    @property
    def server_name(self) -> str:
        """Name reported by server metadata (OVMS's, so clients that check it keep working)."""
        return SERVER_NAME

    @property
    def server_version(self) -> str:
        """Version reported by server metadata."""
        return __version__

    def call(
        self, endpoint: Endpoint, name: str, version: int | None = None, *, lazy: bool = False
    ) -> Call:
        """Open a counted call: resolve the model, and the version for versioned endpoints.

        Raises (uncounted, as OVMS) when the model, or the version of a versioned endpoint,
        cannot serve. A ``lazy`` call raises that error only when the call first needs the
        model, for APIs that, like OVMS's KServe REST, report a malformed body before an
        unknown model (a body error is still counted when the model resolved).
        """
        try:
            model = self.models.get(name)
            resolved = (model, model.instance(version) if endpoint.versioned else None)
        except OvserveError as error:
            if not lazy:
                raise
            return Call(self.metrics, endpoint, error)
        return Call(self.metrics, endpoint, resolved)

    def model_ready(self, endpoint: Endpoint, name: str, version: int | None = None) -> bool:
        """Whether the version (or the default version) serves; see :meth:`Call.ready`."""
        with self.call(endpoint, name) as call:
            return call.ready(version)

    def require_ready(self, endpoint: Endpoint, name: str, version: int | None = None) -> None:
        """Raise ModelNotReady unless the version serves (KServe REST readiness)."""
        if not self.model_ready(endpoint, name, version):
            raise ModelNotReady()

    def model_metadata(
        self, endpoint: Endpoint, name: str, version: int | None = None
    ) -> ModelMetadata:
        """Inputs, outputs and available versions."""
        with self.call(endpoint, name, version) as call:
            return call.metadata()

    def model_status(
        self, endpoint: Endpoint, name: str, version: int | None = None
    ) -> list[VersionStatus]:
        """Every version's status, or one version's when ``version`` is given."""
        with self.call(endpoint, name) as call:
            return call.statuses(version)

    async def infer(
        self,
        endpoint: Endpoint,
        name: str,
        version: int | None,
        inputs: Sequence[RequestTensor],
        outputs: Sequence[str] | None = None,
    ) -> InferResult:
        """Validate and run one inference on the requested (or default) version."""
        with self.call(endpoint, name, version) as call:
            return await call.infer(inputs, outputs)

    def all_statuses(self) -> dict[str, list[VersionStatus]]:
        """Every model's version statuses (``GET /v1/config``; not counted)."""
        return {model.name: model.statuses() for model in self.models}

    async def reload_config(self) -> bool:
        """Re-apply the config file (``POST /v1/config/reload``); True when anything changed."""
        if self.reloader is None:
            raise ConfigError("Config file not found or cannot open.")
        return await self.reloader.reload()

    def gauges(self) -> Iterator[ModelGauges]:
        """Streams, nireq and in-flight requests of every AVAILABLE version, for scrapes."""
        for model in self.models:
            for instance in model.available():
                compiled = instance.compiled
                yield ModelGauges(
                    model.name,
                    instance.version,
                    compiled.streams,
                    compiled.nireq,
                    instance.in_flight,
                )
