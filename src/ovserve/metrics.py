"""Prometheus metrics with OVMS's names and labels, kept per server instance.

Each :class:`Metrics` owns its own ``CollectorRegistry``, so two servers (or two tests) in one
process never share counts. Recording is plain dict and list arithmetic on the event loop
thread; label sets are turned into Prometheus samples only when ``/metrics`` is scraped.

Names, labels and buckets follow OVMS: counters are exposed without a ``_total`` suffix
(``ovms_requests_success``), histogram buckets are ``floor(10 * 1.8**i)`` for i = 0..32, and
``GetModelStatus``/``ModelReady`` carry no ``version`` label.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric

from ovserve.errors import ConfigError
from ovserve.tensors import InferResult

KSERVE: Final = "KServe"
TFS: Final = "TensorFlowServing"
REST: Final = "REST"
GRPC: Final = "gRPC"

REQUESTS_SUCCESS: Final = "ovms_requests_success"
REQUESTS_FAIL: Final = "ovms_requests_fail"
REQUEST_TIME: Final = "ovms_request_time_us"
INFERENCE_TIME: Final = "ovms_inference_time_us"
WAIT_TIME: Final = "ovms_wait_for_infer_req_time_us"
STREAMS: Final = "ovms_streams"
CURRENT_REQUESTS: Final = "ovms_current_requests"
QUEUE_SIZE: Final = "ovms_infer_req_queue_size"
ACTIVE_REQUESTS: Final = "ovms_infer_req_active"

DEFAULT_FAMILIES: Final = (
    STREAMS,
    CURRENT_REQUESTS,
    REQUESTS_SUCCESS,
    REQUESTS_FAIL,
    REQUEST_TIME,
    INFERENCE_TIME,
    WAIT_TIME,
    "ovms_requests_streams_ratio",  # REQUESTS_STREAMS_RATIO, defined at the end
)
MEDIAPIPE_FAMILIES: Final = (
    "ovms_current_graphs",
    "ovms_requests_accepted",
    "ovms_requests_rejected",
    "ovms_responses",
)
"""Accepted in ``--metrics_list`` for compatibility; ovserve serves no MediaPipe graphs."""
VARIANTS_COMPILED: Final = "ovserve_shape_variants_compiled"
VARIANTS_EVICTED: Final = "ovserve_shape_variants_evicted"
VARIANTS_FAILED: Final = "ovserve_shape_variants_failed"
VARIANT_REQUESTS: Final = "ovserve_shape_variant_requests"
VARIANTS_LIVE: Final = "ovserve_shape_variants"
VARIANT_FAMILIES: Final = (
    VARIANTS_COMPILED,
    VARIANTS_EVICTED,
    VARIANTS_FAILED,
    VARIANT_REQUESTS,
    VARIANTS_LIVE,
)
"""ovserve's own families (OVMS has no shape variants); see the end of this module."""
KNOWN_FAMILIES: Final = frozenset(
    (
        *DEFAULT_FAMILIES,
        QUEUE_SIZE,
        ACTIVE_REQUESTS,
        *MEDIAPIPE_FAMILIES,
        *VARIANT_FAMILIES,
        "ovserve_batch_size",
    )
)

BUCKETS: Final = tuple(math.floor(10 * 1.8**i) for i in range(33))
"""Upper bounds in microseconds, as OVMS; an implicit +Inf bucket follows."""

_HELP: Final = {
    REQUESTS_SUCCESS: "Number of successful requests to a model or a DAG.",
    REQUESTS_FAIL: "Number of failed requests to a model or a DAG.",
    REQUEST_TIME: "Processing time of requests to a model or a DAG.",
    INFERENCE_TIME: "Inference execution time in the OpenVINO backend.",
    WAIT_TIME: "Request waiting time in the scheduling queue.",
    STREAMS: "Number of OpenVINO execution streams.",
    CURRENT_REQUESTS: "Number of requests being currently processed by the model server.",
    QUEUE_SIZE: "Inference request queue size (nireq).",
    ACTIVE_REQUESTS: "Number of currently consumed inference requests from the processing queue.",
    "ovms_requests_streams_ratio": "Requests in process per execution stream (current/streams).",
}

# (api, method, versioned): every series OVMS creates when a model version loads.
_METHODS: Final = (
    (KSERVE, "ModelInfer", True),
    (KSERVE, "ModelMetadata", True),
    (KSERVE, "ModelReady", False),
    (TFS, "Predict", True),
    (TFS, "GetModelMetadata", True),
    (TFS, "GetModelStatus", False),
)

RequestKey = tuple[str, str, str, str, int | None]
"""api, interface, method, model name, version (None: no version label)."""


@dataclass(frozen=True, slots=True, eq=False)
class Endpoint:
    """One counted API method on one interface; compared by identity, so lookups stay cheap."""

    api: str
    interface: str
    method: str
    versioned: bool
    """False for the methods OVMS counts without a ``version`` label."""


TimeKey = tuple[str, str, int]
"""interface (empty for engine times), model name, version."""


@dataclass(frozen=True, slots=True)
class ModelGauges:
    """Gauge values of one loaded model version, read at scrape time."""

    name: str
    version: int
    streams: int
    nireq: int
    in_flight: int
    """Requests between validation and reply (waiting for or holding an infer request)."""


class _Histogram:
    """Bucket counts and sum of one label set."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(BUCKETS, value)] += 1
        self.total += value


class Metrics:
    """Request counters and latency histograms of one server, exported in OVMS's format."""

    def __init__(self, enabled: bool = False, families: Sequence[str] = ()) -> None:
        unknown = sorted(set(families) - KNOWN_FAMILIES)
        if unknown:
            raise ConfigError(f"Invalid name in metrics_list: {', '.join(unknown)}")
        self.enabled = enabled
        self.families = frozenset(families or DEFAULT_FAMILIES) if enabled else frozenset()
        self._requests: dict[tuple[Endpoint, str, int | None], list[int]] = {}
        self._request_time: dict[TimeKey, _Histogram] = {}
        self._inference_time: dict[TimeKey, _Histogram] = {}
        self._wait_time: dict[TimeKey, _Histogram] = {}
        self._gauge_source: Callable[[], Iterable[ModelGauges]] = tuple
        self._batch_source: Callable[[], BatchSizes] | None = None
        self._everywhere: Callable[[], Awaitable[bytes]] | None = None
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))

    def set_gauge_source(self, source: Callable[[], Iterable[ModelGauges]]) -> None:
        """Where scrapes read streams, nireq and in-flight counts of the loaded versions."""
        self._gauge_source = source

    def record_request(self, endpoint: Endpoint, name: str, version: int | None, ok: bool) -> None:
        """Count one request to a model; the version is dropped for unversioned endpoints."""
        key = (endpoint, name, version if endpoint.versioned else None)
        counts = self._requests.get(key)
        if counts is None:
            counts = self._requests[key] = [0, 0]
        counts[0 if ok else 1] += 1

    def record_request_time(self, interface: str, name: str, version: int, micros: float) -> None:
        """Observe the front-end time of one successful inference request."""
        _histogram(self._request_time, (interface, name, version)).observe(micros)

    def record_engine(self, result: InferResult) -> None:
        """Observe the engine and queue-wait times of one inference (any interface)."""
        key = ("", result.model_name, result.model_version)
        _histogram(self._inference_time, key).observe(result.infer_us)
        _histogram(self._wait_time, key).observe(result.wait_us)

    def render(self) -> bytes:
        """The Prometheus text exposition of the enabled families."""
        return render(self.registry)

    # Scrape-time views (used by the collector).

    def _request_series(self, gauges: Sequence[ModelGauges]) -> dict[RequestKey, list[int]]:
        series: dict[RequestKey, list[int]] = {}
        for (endpoint, name, version), counts in self._requests.items():
            key = (endpoint.api, endpoint.interface, endpoint.method, name, version)
            total = series.setdefault(key, [0, 0])
            total[0] += counts[0]
            total[1] += counts[1]
        for model in gauges:
            for interface in (GRPC, REST):
                for api, method, versioned in _METHODS:
                    version = model.version if versioned else None
                    series.setdefault((api, interface, method, model.name, version), [0, 0])
        return series

    def _collect(self) -> Iterator[Metric]:
        if not self.enabled:
            return
        gauges = list(self._gauge_source())
        wanted = self.families
        if REQUESTS_SUCCESS in wanted or REQUESTS_FAIL in wanted:
            series = self._request_series(gauges)
            for family, index in ((REQUESTS_SUCCESS, 0), (REQUESTS_FAIL, 1)):
                if family in wanted:
                    yield _counter(family, series, index)
        for family, source in (
            (REQUEST_TIME, self._request_time),
            (INFERENCE_TIME, self._inference_time),
            (WAIT_TIME, self._wait_time),
        ):
            if family in wanted:
                yield _histogram_family(family, source)
        for family, value in (
            (STREAMS, lambda model: model.streams),
            (CURRENT_REQUESTS, lambda model: model.in_flight),
            (QUEUE_SIZE, lambda model: model.nireq),
            (ACTIVE_REQUESTS, lambda model: min(model.in_flight, model.nireq)),
            (REQUESTS_STREAMS_RATIO, requests_streams_ratio),
        ):
            if family in wanted:
                yield _gauge(family, gauges, value)


class _Collector:
    """Adapts :class:`Metrics` to prometheus_client's collector protocol."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return list(self._metrics._collect())

    def describe(self) -> Iterable[Metric]:
        """Nothing to pre-register: names are fixed by OVMS and never clash in a fresh registry."""
        return ()


def _histogram(cells: dict[TimeKey, _Histogram], key: TimeKey) -> _Histogram:
    cell = cells.get(key)
    if cell is None:
        cell = cells[key] = _Histogram()
    return cell


def _counter(family: str, series: dict[RequestKey, list[int]], index: int) -> Metric:
    metric = Metric(family, _HELP[family], "counter")
    for (api, interface, method, name, version), counts in sorted(
        series.items(), key=lambda item: (*item[0][:4], item[0][4] or 0)
    ):
        labels = {"api": api, "interface": interface, "method": method, "name": name}
        if version is not None:
            labels["version"] = str(version)
        # OVMS names counter samples without the _total suffix.
        metric.add_sample(family, labels, counts[index])
    return metric


def _histogram_family(family: str, cells: dict[TimeKey, _Histogram]) -> Metric:
    metric = Metric(family, _HELP[family], "histogram")
    for (interface, name, version), cell in sorted(cells.items()):
        labels = {"name": name, "version": str(version)}
        if interface:
            labels["interface"] = interface
        cumulative = 0
        for bound, count in zip((*map(str, BUCKETS), "+Inf"), cell.counts, strict=True):
            cumulative += count
            metric.add_sample(f"{family}_bucket", {**labels, "le": bound}, cumulative)
        metric.add_sample(f"{family}_sum", labels, cell.total)
        metric.add_sample(f"{family}_count", labels, cumulative)
    return metric


def _gauge(
    family: str, gauges: Sequence[ModelGauges], value: Callable[[ModelGauges], float]
) -> Metric:
    metric = Metric(family, _HELP[family], "gauge")
    for model in gauges:
        metric.add_sample(family, {"name": model.name, "version": str(model.version)}, value(model))
    return metric


def render(registry: CollectorRegistry) -> bytes:
    """Prometheus text format 0.0.4 with every name exactly as collected.

    prometheus_client's own writer would rename counters to ``*_total``; OVMS's dashboards and
    clients look for the bare names, so this writer keeps them.
    """
    lines: list[str] = []
    for metric in registry.collect():
        lines.append(f"# HELP {metric.name} {_escape_help(metric.documentation)}")
        lines.append(f"# TYPE {metric.name} {metric.type}")
        for sample in metric.samples:
            labels = ",".join(
                f'{key}="{_escape_label(value)}"' for key, value in sorted(sample.labels.items())
            )
            label_text = f"{{{labels}}}" if labels else ""
            lines.append(f"{sample.name}{label_text} {_format_value(sample.value)}")
    return ("\n".join(lines) + "\n").encode() if lines else b""


def _format_value(value: float) -> str:
    # Counts print as integers, as OVMS's exposition does.
    if isinstance(value, int):
        return str(value)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return "NaN" if math.isnan(value) else repr(value)


def _escape_help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


def _escape_label(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


# Scale-out: the metric OVMS's Helm chart autoscaled on (its HPA example), exposed directly so
# an autoscaler needs no recording rule. Above 1, requests queue for a stream: add replicas.
REQUESTS_STREAMS_RATIO: Final = "ovms_requests_streams_ratio"


def requests_streams_ratio(model: ModelGauges) -> float:
    """``ovms_current_requests / ovms_streams`` of one loaded version (0 without streams)."""
    return model.in_flight / model.streams if model.streams else 0.0


# --- shape variants: static compilations for repeated request shapes -------------------------

_VARIANT_HELP: Final = {
    VARIANTS_COMPILED: "Static shape variants compiled for repeated request shapes.",
    VARIANTS_EVICTED: "Static shape variants evicted (least recently used).",
    VARIANTS_FAILED: "Static shape variants that failed to compile (the dynamic model serves).",
    VARIANT_REQUESTS: "Requests answered by a static shape variant.",
    VARIANTS_LIVE: "Static shape variants loaded now.",
}


@dataclass(frozen=True, slots=True)
class VariantSample:
    """Shape-variant counts of one loaded model version, read at scrape time."""

    name: str
    version: int
    compiled: int
    evicted: int
    failed: int
    served: int
    live: int


def attach_variant_source(metrics: Metrics, source: Callable[[], Iterable[VariantSample]]) -> None:
    """Export shape-variant counts from ``source`` (shown by default, or when listed)."""
    if metrics.enabled:
        metrics.registry.register(_VariantCollector(metrics, source))


class _VariantCollector:
    def __init__(self, metrics: Metrics, source: Callable[[], Iterable[VariantSample]]) -> None:
        self._metrics = metrics
        self._source = source

    def collect(self) -> Iterable[Metric]:
        listed = self._metrics.families
        wanted = [
            family
            for family in VARIANT_FAMILIES
            if family in listed or listed == frozenset(DEFAULT_FAMILIES)
        ]
        if not wanted:
            return []
        samples = list(self._source())
        values: dict[str, Callable[[VariantSample], int]] = {
            VARIANTS_COMPILED: lambda sample: sample.compiled,
            VARIANTS_EVICTED: lambda sample: sample.evicted,
            VARIANTS_FAILED: lambda sample: sample.failed,
            VARIANT_REQUESTS: lambda sample: sample.served,
            VARIANTS_LIVE: lambda sample: sample.live,
        }
        families = []
        for family in wanted:
            kind = "gauge" if family == VARIANTS_LIVE else "counter"
            metric = Metric(family, _VARIANT_HELP[family], kind)
            for sample in samples:
                labels = {"name": sample.name, "version": str(sample.version)}
                metric.add_sample(family, labels, values[family](sample))
            families.append(metric)
        return families

    def describe(self) -> Iterable[Metric]:
        return ()


# ---------------------------------------------------------------------------------------------
# ovserve's own additions: batch sizes, and one view over several worker processes
# ---------------------------------------------------------------------------------------------

BATCH_SIZE: Final = "ovserve_batch_size"
"""Requests per inference of models that batch (not an OVMS metric)."""

BATCH_BUCKETS: Final = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

BatchSizes = dict[tuple[str, int], dict[int, int]]
"""(model, version) → {requests in one inference: inferences of that size}."""


class BatchSizeSource(Protocol):
    """Where batch sizes are counted (serving.batching.BatchStats)."""

    @property
    def sizes(self) -> BatchSizes:
        """The counts so far."""


class _BatchCollector:
    """Exports batch sizes as a histogram (read at scrape time)."""

    def __init__(self, source: Callable[[], BatchSizes]) -> None:
        self._source = source

    def collect(self) -> Iterable[Metric]:
        sizes = self._source()
        if not sizes:
            return []
        metric = Metric(BATCH_SIZE, "Requests run together in one inference.", "histogram")
        for (name, version), counts in sorted(sizes.items()):
            labels = {"name": name, "version": str(version)}
            cumulative = 0
            for bound in BATCH_BUCKETS:
                cumulative = sum(count for size, count in counts.items() if size <= bound)
                metric.add_sample(f"{BATCH_SIZE}_bucket", {**labels, "le": str(bound)}, cumulative)
            total = sum(counts.values())
            metric.add_sample(f"{BATCH_SIZE}_bucket", {**labels, "le": "+Inf"}, total)
            metric.add_sample(
                f"{BATCH_SIZE}_sum", labels, sum(size * count for size, count in counts.items())
            )
            metric.add_sample(f"{BATCH_SIZE}_count", labels, total)
        return [metric]

    def describe(self) -> Iterable[Metric]:
        return ()


def add_batch_sizes(metrics: Metrics, source: BatchSizeSource) -> None:
    """Export ``source``'s batch sizes (when metrics are on and the family is wanted)."""
    if not metrics.enabled:
        return
    if BATCH_SIZE not in metrics.families and metrics.families != frozenset(DEFAULT_FAMILIES):
        return
    metrics._batch_source = lambda: source.sizes
    metrics.registry.register(_BatchCollector(metrics._batch_source))


def snapshot(metrics: Metrics) -> dict[str, Any]:
    """This process's counts as plain JSON-able data, to be merged by another worker."""

    def cells(source: dict[TimeKey, _Histogram]) -> list[Any]:
        return [[list(key), cell.counts, cell.total] for key, cell in source.items()]

    return {
        "requests": [
            [[e.api, e.interface, e.method, e.versioned], name, version, counts]
            for (e, name, version), counts in metrics._requests.items()
        ],
        "request_time": cells(metrics._request_time),
        "inference_time": cells(metrics._inference_time),
        "wait_time": cells(metrics._wait_time),
        "gauges": [
            [g.name, g.version, g.streams, g.nireq, g.in_flight] for g in metrics._gauge_source()
        ],
        "batches": [
            [name, version, [[size, count] for size, count in counts.items()]]
            for (name, version), counts in (metrics._batch_source or dict)().items()
        ],
    }


def merged(template: Metrics, snapshots: Sequence[dict[str, Any]]) -> Metrics:
    """A Metrics holding the sum of every worker's snapshot, rendered like ``template``."""
    total = Metrics(template.enabled, sorted(template.families))
    endpoints: dict[tuple[str, str, str, bool], Endpoint] = {}
    gauges: dict[tuple[str, int], list[int]] = {}
    batches: BatchSizes = {}
    for shot in snapshots:
        for (api, interface, method, versioned), name, version, counts in shot["requests"]:
            spec = (api, interface, method, versioned)
            endpoint = endpoints.get(spec)
            if endpoint is None:
                endpoint = endpoints[spec] = Endpoint(api, interface, method, versioned)
            mine = total._requests.setdefault((endpoint, name, version), [0, 0])
            mine[0] += counts[0]
            mine[1] += counts[1]
        for field, target in (
            ("request_time", total._request_time),
            ("inference_time", total._inference_time),
            ("wait_time", total._wait_time),
        ):
            for key, counts, value in shot[field]:
                cell = _histogram(target, (key[0], key[1], key[2]))
                cell.counts = [a + b for a, b in zip(cell.counts, counts, strict=True)]
                cell.total += value
        for name, version, streams, nireq, in_flight in shot["gauges"]:
            sums = gauges.setdefault((name, version), [0, 0, 0])
            sums[0] += streams
            sums[1] += nireq
            sums[2] += in_flight
        for name, version, counts in shot["batches"]:
            mine_sizes = batches.setdefault((name, version), {})
            for size, count in counts:
                mine_sizes[size] = mine_sizes.get(size, 0) + count
    models = [ModelGauges(name, version, *sums) for (name, version), sums in gauges.items()]
    total.set_gauge_source(lambda: models)
    if template._batch_source is not None:
        total._batch_source = lambda: batches
        total.registry.register(_BatchCollector(total._batch_source))
    return total


def render_everywhere_with(metrics: Metrics, render: Callable[[], Awaitable[bytes]]) -> None:
    """Scrapes of ``metrics`` render through ``render`` (all workers' counts)."""
    metrics._everywhere = render


async def render_everywhere(metrics: Metrics) -> bytes:
    """The exposition for ``/metrics``: every worker's counts when there are several."""
    if metrics._everywhere is not None:
        return await metrics._everywhere()
    return metrics.render()
