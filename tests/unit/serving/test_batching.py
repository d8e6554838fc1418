"""Dynamic batching with a row-wise fake model: who runs with whom, and who gets what back."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from ovserve.config.batching import BatchingConfig
from ovserve.config.model_config import ModelConfig
from ovserve.config.shape import Dimension, Shape
from ovserve.engine.base import (
    EngineResult,
    LoadStep,
    VariantStats,
    probe_model_of,
    variant_stats_of,
)
from ovserve.errors import InferenceFailed
from ovserve.serving.batching import (
    LONE_BATCHES_END_GATHERING,
    BatchingEngine,
    BatchingModel,
    BatchStats,
    batch_rows_limit,
)
from ovserve.tensors import DataType, TensorSpec

POISON = -999.0
"""A value that makes the fake fail its whole call, like a data-dependent runtime error."""


def spec(name: str, *dims: int | Dimension, datatype: DataType = DataType.FP32) -> TensorSpec:
    return TensorSpec(name, datatype, Shape.of(*dims))


class RowModel:
    """y = 2x + 1 row by row, ``rows`` = per-row sum; records every call; may sleep."""

    def __init__(
        self,
        *,
        nireq: int = 1,
        delay: float = 0.0,
        inputs: Sequence[TensorSpec] = (),
        outputs: Sequence[TensorSpec] = (),
        collapse: bool = False,
        mixing: bool = False,
    ) -> None:
        self.calls: list[dict[str, npt.NDArray[Any]]] = []
        self._nireq = nireq
        self.delay = delay
        self._inputs = tuple(inputs) or (spec("x", -1, 2),)
        self._outputs = tuple(outputs) or (spec("y", -1, 2), spec("rows", -1))
        self._collapse = collapse
        self._mixing = mixing
        self.closed = False
        self.gate: asyncio.Event | None = None
        """When set, every call waits for it: a test decides when an inference ends."""

    @property
    def inputs(self) -> Sequence[TensorSpec]:
        return self._inputs

    @property
    def outputs(self) -> Sequence[TensorSpec]:
        return self._outputs

    @property
    def nireq(self) -> int:
        return self._nireq

    @property
    def streams(self) -> int:
        return 1

    async def infer(
        self, inputs: Mapping[str, npt.NDArray[Any]], outputs: Sequence[str] | None = None
    ) -> EngineResult:
        self.calls.append(dict(inputs))
        if self.gate is not None:
            await self.gate.wait()
        if self.delay:
            await asyncio.sleep(self.delay)
        x = inputs["x"]
        if (x == POISON).any():
            raise InferenceFailed("poisoned")
        values = {"y": x * 2 + 1, "rows": x.reshape(x.shape[0], -1).sum(axis=1)}
        if self._mixing:  # like a normalisation over the batch axis
            values["y"] = x - x.mean(axis=0, keepdims=True)
        if self._collapse:
            values = {"y": (x * 2 + 1).sum(axis=0, keepdims=True), "rows": x.sum(keepdims=True)}
        names = outputs if outputs is not None else ["y", "rows"]
        infer_us = self.delay * 1e6 or 5.0
        return EngineResult({name: values[name] for name in names}, wait_us=3.0, infer_us=infer_us)

    def close(self) -> None:
        self.closed = True


def batching(model: RowModel, rows: int = 32, delay_us: int = 0) -> tuple[BatchingModel, list[int]]:
    sizes: list[int] = []
    return BatchingModel(model, rows, delay_us, True, sizes.append), sizes


def x_of(*values: float, width: int = 2) -> npt.NDArray[np.float32]:
    return np.array([[value] * width for value in values], dtype=np.float32)


async def gather(batched: BatchingModel, requests: Sequence[Any]) -> list[Any]:
    return await asyncio.gather(
        *(batched.infer(inputs, outputs) for inputs, outputs in requests),
        return_exceptions=True,
    )


def test_waiting_requests_run_as_one_inference_and_each_gets_its_rows() -> None:
    model = RowModel()
    batched, sizes = batching(model)
    requests = [({"x": x_of(float(i))}, None) for i in range(5)] + [({"x": x_of(7, 8)}, None)]
    results = asyncio.run(gather(batched, requests))
    # The first finds the model idle and runs at once; the others, arriving in the same loop
    # turn, wait for it and run together.
    assert [call["x"].shape for call in model.calls] == [(1, 2), (6, 2)]
    assert sizes == [1, 5]
    for (inputs, _), result in zip(requests, results, strict=True):
        np.testing.assert_array_equal(result.outputs["y"], inputs["x"] * 2 + 1)
        np.testing.assert_array_equal(result.outputs["rows"], inputs["x"].sum(axis=1))


def test_a_lone_request_runs_alone_without_a_copy() -> None:
    model = RowModel()
    batched, sizes = batching(model)
    x = x_of(1)
    result = asyncio.run(batched.infer({"x": x}))
    assert model.calls[0]["x"] is x
    assert sizes == [1]
    np.testing.assert_array_equal(result.outputs["y"], x * 2 + 1)


def test_kinds_never_mix() -> None:
    model = RowModel()
    batched, _ = batching(model)
    requests: list[tuple[dict[str, Any], list[str] | None]] = [
        ({"x": x_of(1)}, None),
        ({"x": x_of(2, width=3)}, None),  # another non-batch shape
        ({"x": x_of(3).astype(np.float64)}, None),  # another datatype
        ({"x": x_of(4)}, ["y"]),  # other outputs
        ({"x": x_of(5)}, None),
        ({"x": x_of(6, width=3)}, None),
        ({"x": x_of(7)}, ["y"]),
    ]
    results = asyncio.run(gather(batched, requests))
    assert len(model.calls) == 5  # the first at once, then one batch per kind
    for (inputs, outputs), result in zip(requests, results, strict=True):
        assert list(result.outputs) == (outputs or ["y", "rows"])
        np.testing.assert_array_equal(result.outputs["y"], inputs["x"] * 2 + 1)
    shapes = sorted((call["x"].shape, call["x"].dtype.str) for call in model.calls)
    expected = [((1, 2), "<f4"), ((1, 2), "<f4"), ((2, 3), "<f4"), ((1, 2), "<f8"), ((2, 2), "<f4")]
    assert shapes == sorted(expected)


def test_a_failure_reaches_only_its_own_request() -> None:
    model = RowModel()
    batched, sizes = batching(model)
    requests = [({"x": x_of(1)}, None), ({"x": x_of(POISON)}, None), ({"x": x_of(3)}, None)]
    results = asyncio.run(gather(batched, requests))
    assert isinstance(results[1], InferenceFailed)
    np.testing.assert_array_equal(results[0].outputs["y"], x_of(3))
    np.testing.assert_array_equal(results[2].outputs["y"], x_of(7))
    assert len(model.calls) == 4  # the batch, then each request on its own
    assert sizes == [1, 1]


def test_outputs_without_the_batch_rows_turn_batching_off() -> None:
    model = RowModel(collapse=True)
    batched, sizes = batching(model)
    requests = [({"x": x_of(float(i))}, None) for i in (1, 2, 3)]
    results = asyncio.run(gather(batched, requests))
    for i, result in zip((1, 2, 3), results, strict=True):
        np.testing.assert_array_equal(result.outputs["y"], x_of(2.0 * i + 1))
    # The first runs at once; the batch of the other two collapses, so they run again alone.
    assert [call["x"].shape[0] for call in model.calls] == [1, 2, 1, 1]
    asyncio.run(gather(batched, requests))
    assert [call["x"].shape[0] for call in model.calls] == [1, 2, 1, 1, 1, 1, 1]
    assert batched.max_rows == 0
    assert sizes == [1, 1, 1]  # unbatched requests are not counted as batches


def test_batches_hold_at_most_max_rows() -> None:
    model = RowModel()
    batched, sizes = batching(model, rows=4)
    requests = [({"x": x_of(*[float(i)] * 3)}, None) for i in range(3)]  # 3 rows each
    requests.append(({"x": x_of(1)}, None))
    requests.append(({"x": x_of(*[2.0] * 5)}, None))  # wider than a batch: runs alone
    results = asyncio.run(gather(batched, requests))
    assert all(call["x"].shape[0] <= 5 for call in model.calls)
    assert sorted(call["x"].shape[0] for call in model.calls) == [3, 3, 4, 5]
    for (inputs, _), result in zip(requests, results, strict=True):
        np.testing.assert_array_equal(result.outputs["y"], inputs["x"] * 2 + 1)
    assert sorted(sizes) == [1, 1, 2]


def test_requests_queue_while_every_slot_is_busy() -> None:
    model = RowModel(nireq=1)
    batched, sizes = batching(model)

    async def run() -> list[Any]:
        model.gate = asyncio.Event()  # the first inference lasts until every later one queued
        first = asyncio.ensure_future(batched.infer({"x": x_of(0)}))
        await asyncio.sleep(0.005)  # the first runs; the next ones arrive one by one meanwhile
        later = []
        for i in range(1, 4):
            later.append(asyncio.ensure_future(batched.infer({"x": x_of(float(i))})))
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.005)
        model.gate.set()
        return await asyncio.gather(first, *later)

    results = asyncio.run(run())
    assert sizes == [1, 3]
    for i, result in enumerate(results):
        np.testing.assert_array_equal(result.outputs["y"], x_of(2.0 * i + 1))
    assert results[1].wait_us > 5000  # the queued time counts as waiting


def test_max_queue_delay_gathers_requests_that_arrive_later() -> None:
    model = RowModel()
    # 0.5 s: 100 times the arrivals' spacing, so a loaded machine cannot stretch them past it.
    batched, sizes = batching(model, delay_us=500_000)

    async def run() -> list[Any]:
        tasks = []
        for i in range(3):
            tasks.append(asyncio.ensure_future(batched.infer({"x": x_of(float(i))})))
            await asyncio.sleep(0.002)
        return await asyncio.gather(*tasks)

    asyncio.run(run())
    assert sizes == [3]


def test_a_full_batch_does_not_wait_for_the_delay() -> None:
    model = RowModel()
    batched, sizes = batching(model, rows=2, delay_us=5_000_000)

    async def run() -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await gather(batched, [({"x": x_of(1)}, None), ({"x": x_of(2)}, None)])
        return loop.time() - started

    assert asyncio.run(run()) < 1.0
    assert sizes == [2]


def test_a_cancelled_request_is_left_out() -> None:
    model = RowModel(nireq=1)
    batched, sizes = batching(model)

    async def run() -> list[Any]:
        model.gate = asyncio.Event()  # the first inference lasts until the cancellation
        first = asyncio.ensure_future(batched.infer({"x": x_of(0)}))
        await asyncio.sleep(0.005)
        gone = asyncio.ensure_future(batched.infer({"x": x_of(1)}))
        kept = asyncio.ensure_future(batched.infer({"x": x_of(2)}))
        await asyncio.sleep(0.001)
        gone.cancel()
        model.gate.set()
        return list(await asyncio.gather(first, kept))

    results = asyncio.run(run())
    assert [call["x"].shape[0] for call in model.calls] == [1, 1]
    np.testing.assert_array_equal(results[1].outputs["y"], x_of(5))
    assert sizes == [1, 1]


@pytest.mark.parametrize(
    ("inputs", "outputs", "config", "rows"),
    [
        ([spec("x", -1, 2)], [spec("y", -1)], BatchingConfig(), 32),
        ([spec("x", -1, 2)], [spec("y", -1)], BatchingConfig(max_batch_size=8), 8),
        ([spec("x", Dimension.range(1, 6), 2)], [spec("y", -1)], BatchingConfig(), 6),
        ([spec("x", 1, 2)], [spec("y", -1)], BatchingConfig(enabled=True), 0),
        ([spec("x", -1, 2)], [spec("y", 1)], BatchingConfig(), 0),
        ([spec("x", -1, 2)], [spec("y", 1)], BatchingConfig(enabled=True), 32),
        ([spec("x", -1, 2)], [spec("y", -1)], BatchingConfig(enabled=False), 0),
        ([spec("x", -1, datatype=DataType.BYTES)], [spec("y", -1)], BatchingConfig(), 0),
        ([spec("x", -1, 2), spec("s")], [spec("y", -1)], BatchingConfig(), 0),
        ([spec("x", Dimension.range(1, 1), 2)], [spec("y", -1)], BatchingConfig(), 0),
        ([], [spec("y", -1)], BatchingConfig(), 0),
    ],
)
def test_which_models_batch(
    inputs: list[TensorSpec], outputs: list[TensorSpec], config: BatchingConfig, rows: int
) -> None:
    assert batch_rows_limit(inputs, outputs, config)[0] == rows


def test_a_batch_dimension_that_is_not_first_does_not_batch() -> None:
    nchw = TensorSpec("x", DataType.FP32, Shape.of(3, -1), layout="CN")
    assert batch_rows_limit([nchw], [spec("y", -1)], BatchingConfig(enabled=True))[0] == 0


class _Engine:
    def __init__(self, model: RowModel) -> None:
        self.model = model
        self.closed = False

    def load(
        self, model_file: Path, config: ModelConfig, on_step: LoadStep | None = None
    ) -> RowModel:
        return self.model

    def close(self) -> None:
        self.closed = True


def test_the_engine_wraps_models_that_may_batch_and_counts_per_version() -> None:
    stats = BatchStats()
    inner = _Engine(RowModel())
    engine = BatchingEngine(inner, BatchingConfig(max_batch_size=4), stats)
    config = ModelConfig("m", Path("/models/m"))
    compiled = engine.load(Path("/models/m/3/model.xml"), config)
    assert isinstance(compiled, BatchingModel)
    assert compiled.max_rows == 4
    assert (compiled.nireq, compiled.streams) == (1, 1)
    assert [s.name for s in compiled.inputs] == ["x"]
    asyncio.run(gather(compiled, [({"x": x_of(float(i))}, None) for i in range(3)]))
    assert stats.sizes == {("m", 3): {1: 1, 2: 1}}  # the first at once, then the other two
    off = ModelConfig("m", Path("/models/m"), batching=BatchingConfig(enabled=False))
    assert isinstance(engine.load(Path("/models/m/3/model.xml"), off), RowModel)
    compiled.close()
    engine.close()
    assert inner.model.closed
    assert inner.closed


def test_auto_batching_steps_aside_for_compute_bound_models() -> None:
    model = RowModel(delay=0.15)  # 50 ms per row: far above the compute-bound threshold
    sizes: list[int] = []
    auto = BatchingModel(model, 32, 0, True, sizes.append)
    slow = RowModel(delay=0.05)
    forced = BatchingModel(slow, 32, 0, True, sizes.append, adaptive=False)
    requests = [({"x": x_of(float(i))}, None) for i in range(3)]
    asyncio.run(gather(auto, requests))  # the first runs measure it; the other two queued
    asyncio.run(gather(auto, requests))
    assert [call["x"].shape[0] for call in model.calls] == [1, 2, 1, 1, 1]
    asyncio.run(gather(forced, requests))
    asyncio.run(gather(forced, requests))  # batches formed: all three queue together now
    assert [call["x"].shape[0] for call in slow.calls] == [1, 2, 3]


def test_a_slow_start_does_not_stop_batching_for_good() -> None:
    model = RowModel(delay=0.05)  # the first call is slow, as a first inference can be
    batched, sizes = batching(model)
    requests = [({"x": x_of(float(i))}, None) for i in range(3)]

    async def run() -> None:
        await batched.infer({"x": x_of(1)})
        model.delay = 0.0
        for _ in range(40):  # short calls pull the average back under the threshold
            await batched.infer({"x": x_of(1)})
        calls = len(model.calls)
        await gather(batched, requests)
        assert len(model.calls) == calls + 2  # the first at once, the other two batched again

    asyncio.run(run())
    assert sizes[-1] == 2


@pytest.mark.parametrize(
    ("model", "config", "wrapped"),
    [
        (RowModel(), BatchingConfig(), True),
        (RowModel(mixing=True), BatchingConfig(), False),
        (RowModel(mixing=True), BatchingConfig(enabled=True), True),
        (RowModel(inputs=[spec("x", -1, 2, datatype=DataType.INT32)]), BatchingConfig(), True),
    ],
)
def test_auto_asks_the_model_whether_rows_stay_apart(
    model: RowModel, config: BatchingConfig, wrapped: bool
) -> None:
    engine = BatchingEngine(_Engine(model), config)
    compiled = engine.load(Path("/m/1/model.xml"), ModelConfig("m", Path("/m")))
    assert isinstance(compiled, BatchingModel) is wrapped


class _Failing(RowModel):
    async def infer(
        self, inputs: Mapping[str, npt.NDArray[Any]], outputs: Sequence[str] | None = None
    ) -> EngineResult:
        raise InferenceFailed("cannot run the probe's sizes")


def test_a_probe_that_cannot_run_proves_nothing() -> None:
    engine = BatchingEngine(_Engine(_Failing()), BatchingConfig())
    compiled = engine.load(Path("/m/1/model.xml"), ModelConfig("m", Path("/m")))
    assert not isinstance(compiled, BatchingModel)


class _Booleans(RowModel):
    async def infer(
        self, inputs: Mapping[str, npt.NDArray[Any]], outputs: Sequence[str] | None = None
    ) -> EngineResult:
        return EngineResult({"y": inputs["x"] > 0.5}, wait_us=0.0, infer_us=1.0)


def test_boolean_outputs_can_be_probed() -> None:
    engine = BatchingEngine(_Engine(_Booleans()), BatchingConfig())
    compiled = engine.load(Path("/m/1/model.xml"), ModelConfig("m", Path("/m")))
    assert isinstance(compiled, BatchingModel)


class _Broken(RowModel):
    async def infer(
        self, inputs: Mapping[str, npt.NDArray[Any]], outputs: Sequence[str] | None = None
    ) -> EngineResult:
        return EngineResult({"y": object()}, wait_us=0.0, infer_us=1.0)  # type: ignore[dict-item]


def test_a_probe_that_breaks_never_fails_the_load() -> None:
    engine = BatchingEngine(_Engine(_Broken()), BatchingConfig())
    compiled = engine.load(Path("/m/1/model.xml"), ModelConfig("m", Path("/m")))
    assert not isinstance(compiled, BatchingModel)


class _Counted(RowModel):
    """Like ShapeVariants: counts its traffic, and offers the model under it for probes."""

    def __init__(self) -> None:
        super().__init__()
        self.under = RowModel()
        self.counted = 0

    async def infer(
        self, inputs: Mapping[str, npt.NDArray[Any]], outputs: Sequence[str] | None = None
    ) -> EngineResult:
        self.counted += 1
        return await self.under.infer(inputs, outputs)

    @property
    def probe_model(self) -> RowModel:
        return self.under

    @property
    def variant_stats(self) -> VariantStats:
        return VariantStats(compiled=self.counted, evicted=0, failed=0, served=0, live=0)


def test_the_probe_is_not_traffic_and_variant_counts_show_through() -> None:
    counted = _Counted()
    compiled = BatchingEngine(_Engine(counted), BatchingConfig()).load(
        Path("/m/1/model.xml"), ModelConfig("m", Path("/m"))
    )
    assert isinstance(compiled, BatchingModel)
    assert counted.counted == 0  # the probe ran on the model under it
    assert len(counted.under.calls) == 3
    asyncio.run(compiled.infer({"x": x_of(1)}))
    assert counted.counted == 1
    assert variant_stats_of(compiled) == VariantStats(1, 0, 0, 0, 0)
    assert probe_model_of(compiled) is counted.under
    assert variant_stats_of(batching(RowModel())[0]) is None


async def at_once(batched: BatchingModel, inputs: dict[str, Any]) -> EngineResult | None:
    """The result if the call ran without waiting for anything (the fake model never waits),
    else None after driving it to its end as a task would."""
    call = batched.infer(inputs)
    suspended = False
    while True:
        try:
            waiting = call.send(None)
        except StopIteration as done:
            result: EngineResult = done.value
            return None if suspended else result
        suspended = True
        if isinstance(waiting, asyncio.Future):
            await asyncio.wait([waiting])
        else:
            await asyncio.sleep(0)


def test_a_request_that_finds_the_model_idle_runs_at_once_in_its_own_coroutine() -> None:
    model = RowModel()
    batched, sizes = batching(model)
    result = asyncio.run(at_once(batched, {"x": x_of(1)}))
    assert result is not None, "an idle model's request waited for a loop turn"
    np.testing.assert_array_equal(result.outputs["y"], x_of(3))
    assert sizes == [1]


def test_once_batches_form_every_request_queues_until_some_come_alone() -> None:
    model = RowModel()
    batched, sizes = batching(model)
    requests = [({"x": x_of(float(i))}, None) for i in range(3)]
    lone = LONE_BATCHES_END_GATHERING

    async def run() -> list[bool]:
        await gather(batched, requests)  # the first at once, the other two together
        await gather(batched, requests)  # load is on: all three together
        ran_at_once = []
        for _ in range(lone + 1):  # they still queue, each alone, until enough came alone
            ran_at_once.append(await at_once(batched, {"x": x_of(1)}) is not None)
        await gather(batched, requests)  # the first at once again
        return ran_at_once

    assert asyncio.run(run()) == [False] * lone + [True]
    assert [call["x"].shape[0] for call in model.calls] == [1, 2, 3, *[1] * (lone + 1), 1, 2]
    assert sizes == [1, 2, 3, *[1] * (lone + 1), 1, 2]


def test_a_request_run_at_once_keeps_its_own_error_and_cancellation() -> None:
    model = RowModel(nireq=1, delay=0.02)
    batched, sizes = batching(model)

    async def run() -> list[Any]:
        poisoned = await gather(batched, [({"x": x_of(POISON)}, None), ({"x": x_of(1)}, None)])
        model.gate = asyncio.Event()  # the next inference lasts until it is cancelled
        gone = asyncio.ensure_future(batched.infer({"x": x_of(2)}))
        await asyncio.sleep(0.005)  # it runs, alone, in its own task
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone
        model.gate.set()
        after = await batched.infer({"x": x_of(3)})  # the slot is free again: runs at once
        return [*poisoned, after]

    poisoned, other, after = asyncio.run(run())
    assert isinstance(poisoned, InferenceFailed)
    np.testing.assert_array_equal(other.outputs["y"], x_of(3))
    np.testing.assert_array_equal(after.outputs["y"], x_of(7))
    assert [call["x"][0, 0] for call in model.calls] == [POISON, 1, 2, 3]
    assert sizes == [1, 1]
