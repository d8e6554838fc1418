"""Workers reaching each other: summed metrics and reloads, over real Unix sockets."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import pytest

from ovserve.config.worker_slot import WorkerSlot
from ovserve.errors import ConfigError
from ovserve.metrics import (
    GRPC,
    KSERVE,
    REST,
    Endpoint,
    Metrics,
    ModelGauges,
    add_batch_sizes,
    merged,
    render_everywhere,
    render_everywhere_with,
    snapshot,
)
from ovserve.serving.batching import BatchStats
from ovserve.tensors import InferResult
from ovserve.workers.peers import BroadcastReloader, PeerLink

INFER = Endpoint(KSERVE, REST, "ModelInfer", versioned=True)
READY = Endpoint(KSERVE, GRPC, "ModelReady", versioned=False)


def worker_metrics(requests: int, in_flight: int, batches: dict[int, int]) -> Metrics:
    metrics = Metrics(enabled=True)
    for _ in range(requests):
        metrics.record_request(INFER, "m", 1, ok=True)
        metrics.record_request_time(REST, "m", 1, 100.0)
        metrics.record_engine(InferResult("m", 1, {}, wait_us=5.0, infer_us=50.0))
    metrics.record_request(READY, "m", None, ok=False)
    metrics.set_gauge_source(lambda: [ModelGauges("m", 1, 2, 2, in_flight)])
    stats = BatchStats()
    for size, count in batches.items():
        for _ in range(count):
            stats.record("m", 1, size)
    add_batch_sizes(metrics, stats)
    return metrics


def sample(text: str, prefix: str) -> str:
    found = [line for line in text.splitlines() if line.startswith(prefix)]
    assert len(found) == 1, (prefix, found)
    return found[0].rsplit(" ", 1)[1]


def test_snapshots_merge_into_sums() -> None:
    one = worker_metrics(3, 1, {1: 2, 4: 1})
    two = worker_metrics(5, 2, {2: 1})
    text = merged(one, [snapshot(one), snapshot(two)]).render().decode()
    assert (
        sample(text, 'ovms_requests_success{api="KServe",interface="REST",method="ModelInfer"')
        == "8"
    )
    assert (
        sample(text, 'ovms_requests_fail{api="KServe",interface="gRPC",method="ModelReady"') == "2"
    )
    assert sample(text, 'ovms_request_time_us_count{interface="REST"') == "8"
    assert sample(text, 'ovms_inference_time_us_sum{name="m"') == "400.0"
    assert sample(text, 'ovms_current_requests{name="m"') == "3"
    assert sample(text, 'ovms_streams{name="m"') == "4"
    assert sample(text, 'ovserve_batch_size_count{name="m"') == "4"
    assert sample(text, 'ovserve_batch_size_sum{name="m"') == "8"
    assert sample(text, 'ovserve_batch_size_bucket{le="2",name="m"') == "3"


def test_batch_sizes_only_when_wanted() -> None:
    listed = Metrics(enabled=True, families=["ovms_requests_success"])
    add_batch_sizes(listed, BatchStats())
    off = Metrics(enabled=False)
    add_batch_sizes(off, BatchStats())
    stats = BatchStats()
    stats.record("m", 1, 3)
    for metrics in (listed, off):
        assert b"ovserve_batch_size" not in metrics.render()
    wanted = Metrics(enabled=True, families=["ovserve_batch_size"])
    add_batch_sizes(wanted, stats)
    assert b'ovserve_batch_size_count{name="m",version="1"} 1' in wanted.render()


def test_render_everywhere_is_the_local_render_with_one_worker() -> None:
    metrics = worker_metrics(1, 0, {})
    assert asyncio.run(render_everywhere(metrics)) == metrics.render()


class Reloads:
    def __init__(self, changed: bool = False, error: str | None = None) -> None:
        self.calls = 0
        self._changed = changed
        self._error = error

    async def reload(self) -> bool:
        self.calls += 1
        if self._error is not None:
            raise ConfigError(self._error)
        return self._changed


def run_pair(test: object) -> None:
    with tempfile.TemporaryDirectory(prefix="ovs-") as folder:  # short: socket path limits
        asyncio.run(test(Path(folder)))  # type: ignore[operator]


def test_a_scrape_sums_every_worker_and_names_each() -> None:
    async def scenario(folder: Path) -> None:
        links = [
            PeerLink(WorkerSlot(index, 2, folder), worker_metrics(2 + index, index, {}), None)
            for index in range(2)
        ]
        for link in links:
            await link.start()
        render_everywhere_with(links[0]._metrics, links[0].render_metrics)
        text = (await render_everywhere(links[0]._metrics)).decode()
        assert (
            sample(text, 'ovms_requests_success{api="KServe",interface="REST",method="ModelInfer"')
            == "5"
        )
        assert text.count("ovserve_worker_requests_success{pid=") == 2
        assert 'worker="1"} 1' in text  # worker 1's busy gauge
        await links[1].stop()
        alone = (await links[0].render_metrics()).decode()  # a gone worker is left out
        assert (
            sample(alone, 'ovms_requests_success{api="KServe",interface="REST",method="ModelInfer"')
            == "2"
        )
        await links[0].stop()

    run_pair(scenario)


def test_reload_runs_here_then_in_every_other_worker() -> None:
    async def scenario(folder: Path) -> None:
        local, remote = Reloads(changed=False), Reloads(changed=True)
        here = PeerLink(WorkerSlot(0, 2, folder), Metrics(), local)
        there = PeerLink(WorkerSlot(1, 2, folder), Metrics(), remote)
        await here.start()
        await there.start()
        assert await BroadcastReloader(local, here).reload() is True
        assert (local.calls, remote.calls) == (1, 1)
        await there.stop()
        with pytest.raises(ConfigError):
            await BroadcastReloader(local, here).reload()
        await here.stop()

    run_pair(scenario)


def test_a_worker_that_fails_to_reload_fails_the_call() -> None:
    async def scenario(folder: Path) -> None:
        local = Reloads()
        here = PeerLink(WorkerSlot(0, 2, folder), Metrics(), local)
        there = PeerLink(WorkerSlot(1, 2, folder), Metrics(), Reloads(error="bad"))
        plain = PeerLink(WorkerSlot(1, 2, folder), Metrics(), None)
        await here.start()
        await there.start()
        with pytest.raises(ConfigError):
            await BroadcastReloader(local, here).reload()
        await there.stop()
        await plain.start()
        with pytest.raises(ConfigError):
            await BroadcastReloader(local, here).reload()  # the other has no config file
        assert await here.call(1, "nonsense", 1.0) == {"error": "unknown call 'nonsense'"}
        await plain.stop()
        await here.stop()

    run_pair(scenario)
