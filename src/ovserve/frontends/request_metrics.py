"""What both front-ends need to count requests the way OVMS does."""

from __future__ import annotations

from collections.abc import Iterator

from ovserve.errors import OvserveError
from ovserve.metrics import Endpoint, Metrics, ModelGauges
from ovserve.serving.service import ServingService


def count_failure(
    metrics: Metrics, service: ServingService, endpoint: Endpoint, name: str, version: int | None
) -> None:
    """Count a failed request, but only when its model (and version) exist, as OVMS does."""
    try:
        if endpoint.versioned:
            label: int | None = service.model_metadata(name, version).version
        else:
            service.model_status(name)
            label = None
    except OvserveError:
        return
    metrics.record_request(endpoint, name, label, ok=False)


def model_gauges(service: ServingService) -> Iterator[ModelGauges]:
    """Streams, nireq and in-flight requests of every AVAILABLE version, for scrapes."""
    for model in service.models:
        for instance in model.available():
            compiled = instance.compiled
            yield ModelGauges(
                model.name, instance.version, compiled.streams, compiled.nireq, instance.in_flight
            )


def attach(metrics: Metrics, service: ServingService) -> None:
    """Feed the metrics from the serving core: engine times and scrape-time gauges."""
    if not metrics.enabled:
        return
    service.on_infer = metrics.record_engine
    metrics.set_gauge_source(lambda: model_gauges(service))
