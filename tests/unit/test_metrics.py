"""Prometheus metrics: OVMS's names, labels and buckets, one registry per instance."""

from __future__ import annotations

import math

import pytest

from ovserve.errors import ConfigError
from ovserve.metrics import (
    BUCKETS,
    GRPC,
    KSERVE,
    REST,
    TFS,
    Endpoint,
    Metrics,
    ModelGauges,
)
from ovserve.tensors import InferResult

INFER = Endpoint(KSERVE, REST, "ModelInfer", versioned=True)
READY = Endpoint(KSERVE, GRPC, "ModelReady", versioned=False)
PREDICT = Endpoint(TFS, GRPC, "Predict", versioned=True)


def lines(metrics: Metrics) -> list[str]:
    return metrics.render().decode().splitlines()


def test_buckets_are_ovms() -> None:
    assert len(BUCKETS) == 33
    assert BUCKETS[:6] == (10, 18, 32, 58, 104, 188)
    assert BUCKETS[-1] == math.floor(10 * 1.8**32)


def test_disabled_metrics_render_nothing() -> None:
    metrics = Metrics(enabled=False)
    metrics.record_request(INFER, "m", 1, ok=True)
    assert metrics.render() == b""
    assert metrics.families == frozenset()


def test_unknown_names_in_metrics_list_are_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        Metrics(enabled=True, families=["ovms_requests_success", "ovms_bogus"])
    assert caught.value.text == "Invalid name in metrics_list: ovms_bogus"


def test_counters_keep_ovms_names_and_labels() -> None:
    metrics = Metrics(enabled=True)
    metrics.record_request(INFER, "m", 2, ok=True)
    metrics.record_request(INFER, "m", 2, ok=True)
    metrics.record_request(INFER, "m", 2, ok=False)
    metrics.record_request(READY, "m", 2, ok=True)
    text = lines(metrics)
    assert "# TYPE ovms_requests_success counter" in text
    assert (
        'ovms_requests_success{api="KServe",interface="REST",method="ModelInfer",'
        'name="m",version="2"} 2'
    ) in text
    assert (
        'ovms_requests_fail{api="KServe",interface="REST",method="ModelInfer",'
        'name="m",version="2"} 1'
    ) in text
    assert (
        'ovms_requests_success{api="KServe",interface="gRPC",method="ModelReady",name="m"} 1'
        in (text)
    )
    assert not any("_total" in line for line in text)


def test_histograms_are_cumulative_with_sum_and_count() -> None:
    metrics = Metrics(enabled=True)
    for micros in (5.0, 18.0, 19.0, 10**10):
        metrics.record_request_time(REST, "m", 1, micros)
    labels = {"interface": "REST", "name": "m", "version": "1"}

    def bucket(le: str) -> float | None:
        return metrics.registry.get_sample_value(
            "ovms_request_time_us_bucket", {**labels, "le": le}
        )

    assert (bucket("10"), bucket("18"), bucket("32"), bucket("+Inf")) == (1, 2, 3, 4)
    assert metrics.registry.get_sample_value("ovms_request_time_us_count", labels) == 4
    assert metrics.registry.get_sample_value("ovms_request_time_us_sum", labels) == 42.0 + 10**10


def test_engine_times_carry_no_interface() -> None:
    metrics = Metrics(enabled=True)
    metrics.record_engine(InferResult("m", 3, {}, wait_us=2.0, infer_us=150.0))
    labels = {"name": "m", "version": "3"}
    assert metrics.registry.get_sample_value("ovms_inference_time_us_sum", labels) == 150.0
    assert metrics.registry.get_sample_value("ovms_wait_for_infer_req_time_us_sum", labels) == 2.0


def test_loaded_versions_get_zero_series_and_gauges() -> None:
    metrics = Metrics(
        enabled=True,
        families=[
            "ovms_requests_success",
            "ovms_streams",
            "ovms_current_requests",
            "ovms_infer_req_queue_size",
            "ovms_infer_req_active",
        ],
    )
    metrics.set_gauge_source(lambda: [ModelGauges("m", 1, streams=2, nireq=4, in_flight=6)])
    text = lines(metrics)
    assert (
        'ovms_requests_success{api="TensorFlowServing",interface="REST",method="Predict",'
        'name="m",version="1"} 0'
    ) in text
    assert 'ovms_streams{name="m",version="1"} 2' in text
    assert 'ovms_current_requests{name="m",version="1"} 6' in text
    assert 'ovms_infer_req_queue_size{name="m",version="1"} 4' in text
    assert 'ovms_infer_req_active{name="m",version="1"} 4' in text
    assert not any(line.startswith("# TYPE ovms_requests_fail") for line in text)


def test_default_families_exclude_the_optional_gauges() -> None:
    metrics = Metrics(enabled=True)
    metrics.set_gauge_source(lambda: [ModelGauges("m", 1, streams=2, nireq=4, in_flight=0)])
    names = {line.split()[2] for line in lines(metrics) if line.startswith("# TYPE")}
    assert names == {
        "ovms_streams",
        "ovms_current_requests",
        "ovms_requests_success",
        "ovms_requests_fail",
        "ovms_request_time_us",
        "ovms_inference_time_us",
        "ovms_wait_for_infer_req_time_us",
        "ovms_requests_streams_ratio",
    }


def test_instances_do_not_share_counts() -> None:
    first, second = Metrics(enabled=True), Metrics(enabled=True)
    first.record_request(PREDICT, "m", 1, ok=True)
    labels = {"api": "TensorFlowServing", "interface": "gRPC", "method": "Predict", "name": "m"}
    assert first.registry.get_sample_value("ovms_requests_success", {**labels, "version": "1"}) == 1
    assert (
        second.registry.get_sample_value("ovms_requests_success", {**labels, "version": "1"})
        is None
    )


def test_label_values_are_escaped() -> None:
    metrics = Metrics(enabled=True)
    metrics.record_request(READY, 'we"ird\\name', None, ok=True)
    assert any('name="we\\"ird\\\\name"' in line for line in lines(metrics))


def test_requests_streams_ratio_is_current_requests_per_stream() -> None:
    metrics = Metrics(enabled=True, families=["ovms_requests_streams_ratio"])
    metrics.set_gauge_source(
        lambda: [
            ModelGauges("m", 1, streams=4, nireq=4, in_flight=6),
            ModelGauges("idle", 2, streams=0, nireq=0, in_flight=0),
        ]
    )
    text = lines(metrics)
    assert "# TYPE ovms_requests_streams_ratio gauge" in text
    assert 'ovms_requests_streams_ratio{name="m",version="1"} 1.5' in text
    assert 'ovms_requests_streams_ratio{name="idle",version="2"} 0.0' in text


def test_shape_variant_families_are_shown_by_default_and_when_listed() -> None:
    from ovserve.metrics import VariantSample, attach_variant_source

    sample = VariantSample("face", 1, compiled=3, evicted=1, failed=0, served=42, live=2)
    everything = Metrics(enabled=True)
    attach_variant_source(everything, lambda: [sample])
    text = lines(everything)
    assert 'ovserve_shape_variants_compiled{name="face",version="1"} 3' in text
    assert 'ovserve_shape_variants_evicted{name="face",version="1"} 1' in text
    assert 'ovserve_shape_variant_requests{name="face",version="1"} 42' in text
    assert 'ovserve_shape_variants{name="face",version="1"} 2' in text
    assert "# TYPE ovserve_shape_variants gauge" in text
    listed = Metrics(enabled=True, families=["ovserve_shape_variant_requests"])
    attach_variant_source(listed, lambda: [sample])
    assert [line for line in lines(listed) if not line.startswith("#")] == [
        'ovserve_shape_variant_requests{name="face",version="1"} 42'
    ]
    other = Metrics(enabled=True, families=["ovms_streams"])
    attach_variant_source(other, lambda: [sample])
    assert not any("shape_variant" in line for line in lines(other))
    disabled = Metrics(enabled=False)
    attach_variant_source(disabled, lambda: [sample])
    assert disabled.render() == b""
