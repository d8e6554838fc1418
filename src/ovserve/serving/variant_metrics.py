"""Shape-variant counts of every loaded version, for ``/metrics`` scrapes."""

from __future__ import annotations

from collections.abc import Iterator

from ovserve.engine.base import variant_stats_of
from ovserve.metrics import Metrics, VariantSample, attach_variant_source
from ovserve.serving.service import ServingService


def variant_samples(service: ServingService) -> Iterator[VariantSample]:
    """One sample per AVAILABLE version whose model is served with shape variants."""
    for model in service.models:
        for instance in model.available():
            stats = variant_stats_of(instance.compiled)  # through wrappers such as batching
            if stats is not None:
                yield VariantSample(
                    model.name,
                    instance.version,
                    stats.compiled,
                    stats.evicted,
                    stats.failed,
                    stats.served,
                    stats.live,
                )


def attach(metrics: Metrics, service: ServingService) -> None:
    """Export the variant counts of ``service``'s models."""
    attach_variant_source(metrics, lambda: variant_samples(service))
