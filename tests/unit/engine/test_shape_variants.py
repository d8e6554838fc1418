"""Routing requests to static variants, eviction, failed builds, closing and idle release.

Fake compiled models (tagged, so each answer says which model ran it) stand in for OpenVINO;
builds really run on a background thread, as in the server.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import pytest

from ovserve.config.shape import Dimension, Shape
from ovserve.config.variants import VariantConfig
from ovserve.engine.base import (
    EngineResult,
    probe_model_of,
    tell_batched_from_above,
    variant_stats_of,
)
from ovserve.engine.shape_variants import ShapeVariants
from ovserve.engine.variant_policy import ShapeKey
from ovserve.errors import ConfigError
from ovserve.tensors import DataType, TensorSpec

T = TypeVar("T")
SPEC = TensorSpec("x", DataType.FP32, Shape((Dimension.static(1), Dimension.any())))


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


class Model:
    """Answers with its tag; can hold an inference until released."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.closed = False
        self.released = 0
        self.calls = 0
        self.gate: asyncio.Event | None = None
        self.busy = False

    @property
    def inputs(self) -> Sequence[TensorSpec]:
        return (SPEC,)

    @property
    def outputs(self) -> Sequence[TensorSpec]:
        return (SPEC,)

    @property
    def nireq(self) -> int:
        return 1

    @property
    def streams(self) -> int:
        return 1

    async def infer(
        self, inputs: Mapping[str, npt.NDArray[Any]], outputs: Sequence[str] | None = None
    ) -> EngineResult:
        assert not self.closed, f"{self.tag} used after close"
        self.calls += 1
        self.busy = True
        try:
            if self.gate is not None:
                await self.gate.wait()
        finally:
            self.busy = False
        return EngineResult({"tag": np.array(self.tag)}, 0.0, 0.0)

    async def release_memory(self) -> bool:
        # Counted even when busy: the tests check that the wrapper does not ask then.
        self.released += 1
        return True

    def close(self) -> None:
        self.closed = True


class Builder:
    """Builds tagged variants on the background thread; shapes in ``fail`` raise."""

    def __init__(self, fail: Sequence[ShapeKey] = ()) -> None:
        self.built: dict[ShapeKey, Model] = {}
        self.fail = set(fail)

    def __call__(self, key: ShapeKey) -> Model:
        if key in self.fail:
            raise ConfigError("cannot compile for this shape")
        model = self.built[key] = Model(f"static{key[0]}")
        return model


@pytest.fixture
def background() -> Iterator[ThreadPoolExecutor]:
    executor = ThreadPoolExecutor(1)
    yield executor
    executor.shutdown(wait=True)


def make(
    background: ThreadPoolExecutor,
    builder: Builder,
    *,
    max_variants: int = 2,
    idle: float = 0.0,
    trim: Callable[[], bool] = lambda: True,
) -> tuple[ShapeVariants, Model]:
    dynamic = Model("dynamic")
    config = VariantConfig(
        max_variants=max_variants, threshold=2, window_seconds=60.0, idle_release_seconds=idle
    )
    wrapper = ShapeVariants(
        "m", dynamic, build=builder, config=config, background=background, trim=trim
    )
    return wrapper, dynamic


def x(width: int) -> dict[str, npt.NDArray[Any]]:
    return {"x": np.zeros((1, width), np.float32)}


async def tag(wrapper: ShapeVariants, width: int) -> str:
    return str((await wrapper.infer(x(width))).outputs["tag"])


async def until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


def test_a_repeated_shape_moves_to_its_variant_and_others_stay_dynamic(
    background: ThreadPoolExecutor,
) -> None:
    builder = Builder()
    wrapper, _ = make(background, builder)

    async def scenario() -> list[str]:
        tags = [await tag(wrapper, 8), await tag(wrapper, 8)]  # the 2nd asks for a build
        await until(lambda: len(wrapper.variant_shapes) == 1)
        tags += [await tag(wrapper, 8), await tag(wrapper, 9)]
        return tags

    assert run(scenario()) == ["dynamic", "dynamic", "static(1, 8)", "dynamic"]
    assert wrapper.variant_shapes == [((1, 8),)]
    stats = wrapper.variant_stats
    assert (stats.compiled, stats.served, stats.live) == (1, 1, 1)
    assert wrapper.inputs == (SPEC,)  # clients see the dynamic model's specs
    wrapper.close()


def test_lru_eviction_closes_the_least_recently_served_variant(
    background: ThreadPoolExecutor, caplog: pytest.LogCaptureFixture
) -> None:
    builder = Builder()
    wrapper, _ = make(background, builder, max_variants=1)
    caplog.set_level(logging.INFO)

    async def scenario() -> None:
        for width in (8, 9):
            await tag(wrapper, width)
            await tag(wrapper, width)
            await until(lambda w=width: wrapper.variant_shapes == [((1, w),)])  # type: ignore[misc]
        await until(lambda: builder.built[((1, 8),)].closed)

    run(scenario())
    assert not builder.built[((1, 9),)].closed
    assert wrapper.variant_stats.evicted == 1
    assert "evicted the static variant for shape (1,8)" in caplog.text
    assert "compiled a static variant for shape (1,9)" in caplog.text
    wrapper.close()


def test_an_evicted_variant_closes_only_after_its_request_finishes(
    background: ThreadPoolExecutor,
) -> None:
    builder = Builder()
    wrapper, _ = make(background, builder, max_variants=1)

    async def scenario() -> str:
        await tag(wrapper, 8)
        await tag(wrapper, 8)
        await until(lambda: len(wrapper.variant_shapes) == 1)
        first = builder.built[((1, 8),)]
        first.gate = asyncio.Event()
        slow = asyncio.create_task(tag(wrapper, 8))  # runs on the variant, held
        await until(lambda: first.busy)
        await tag(wrapper, 9)
        await tag(wrapper, 9)
        await until(lambda: wrapper.variant_shapes == [((1, 9),)])
        await asyncio.sleep(0.05)
        assert not first.closed  # its request is still running
        first.gate.set()
        answer = await slow
        await until(lambda: first.closed)
        return answer

    assert run(scenario()) == "static(1, 8)"
    wrapper.close()


def test_a_failed_build_leaves_the_dynamic_model_serving_that_shape(
    background: ThreadPoolExecutor, caplog: pytest.LogCaptureFixture
) -> None:
    builder = Builder(fail=[((1, 8),)])
    wrapper, dynamic = make(background, builder)

    async def scenario() -> list[str]:
        tags = [await tag(wrapper, 8), await tag(wrapper, 8)]
        await until(lambda: wrapper.variant_stats.failed == 1)
        tags += [await tag(wrapper, 8) for _ in range(3)]
        return tags

    assert run(scenario()) == ["dynamic"] * 5
    assert wrapper.variant_stats.compiled == 0
    assert "no static variant for shape (1,8)" in caplog.text
    assert "cannot compile for this shape" in caplog.text
    wrapper.close()
    assert dynamic.closed


def test_close_closes_the_dynamic_model_every_variant_and_a_build_under_way(
    background: ThreadPoolExecutor,
) -> None:
    builder = Builder()
    wrapper, dynamic = make(background, builder)

    async def scenario() -> None:
        await tag(wrapper, 8)
        await tag(wrapper, 8)
        await until(lambda: len(wrapper.variant_shapes) == 1)
        background.submit(time.sleep, 0.2)  # the next build waits behind this
        await tag(wrapper, 9)
        await tag(wrapper, 9)  # build of (1,9) queued, not finished

    run(scenario())
    wrapper.close()
    assert dynamic.closed
    assert all(model.closed for model in builder.built.values())
    assert set(builder.built) == {((1, 8),), ((1, 9),)}
    wrapper.close()  # idempotent


def test_variants_off_serves_everything_dynamic(background: ThreadPoolExecutor) -> None:
    builder = Builder()
    wrapper, _ = make(background, builder, max_variants=0)

    async def scenario() -> list[str]:
        return [await tag(wrapper, 8) for _ in range(5)]

    assert run(scenario()) == ["dynamic"] * 5
    assert builder.built == {}
    wrapper.close()


def test_an_idle_model_releases_memory_and_trims_the_heap(background: ThreadPoolExecutor) -> None:
    trims: list[int] = []

    def trim() -> bool:
        trims.append(1)
        return True

    wrapper, dynamic = make(background, Builder(), max_variants=0, idle=0.05, trim=trim)

    async def scenario() -> None:
        await tag(wrapper, 8)
        await until(lambda: dynamic.released == 1)
        await asyncio.sleep(0.15)  # nothing ran since: no second release
        assert dynamic.released == 1
        await tag(wrapper, 9)
        await until(lambda: dynamic.released == 2)

    run(scenario())
    assert len(trims) == 2
    wrapper.close()


def test_no_release_while_a_request_is_in_flight(background: ThreadPoolExecutor) -> None:
    wrapper, dynamic = make(background, Builder(), max_variants=0, idle=0.05)

    async def scenario() -> None:
        await tag(wrapper, 8)  # arms the idle timer
        dynamic.gate = asyncio.Event()
        slow = asyncio.create_task(tag(wrapper, 8))
        await until(lambda: dynamic.busy)
        await asyncio.sleep(0.2)  # well past the idle delay
        assert dynamic.released == 0
        dynamic.gate.set()
        assert await slow == "dynamic"
        await until(lambda: dynamic.released == 1)

    run(scenario())
    wrapper.close()


def test_probes_run_on_the_dynamic_model_and_count_nothing(background: ThreadPoolExecutor) -> None:
    builder = Builder()
    wrapper, dynamic = make(background, builder, idle=60.0)
    probe = probe_model_of(wrapper)
    assert probe is dynamic

    async def scenario() -> None:
        for _ in range(3):  # as a load-time probe would, more than the threshold
            await probe.infer(x(8))

    run(scenario())  # on a loop of its own, closed at once: nothing may have been armed on it
    assert builder.built == {}
    assert variant_stats_of(wrapper) == wrapper.variant_stats
    assert wrapper.variant_stats.compiled == 0

    async def traffic() -> None:
        await tag(wrapper, 8)
        await tag(wrapper, 8)
        await until(lambda: wrapper.variant_shapes == [((1, 8),)])

    run(traffic())
    wrapper.close()


def test_batched_from_above_only_single_row_shapes_earn_variants(
    background: ThreadPoolExecutor,
) -> None:
    builder = Builder()
    wrapper, _ = make(background, builder)
    tell_batched_from_above(wrapper)

    async def scenario() -> list[str]:
        batch = {"x": np.zeros((3, 8), np.float32)}  # batches vary with the load: never a variant
        tags = [str((await wrapper.infer(batch)).outputs["tag"]) for _ in range(4)]
        tags += [await tag(wrapper, 8), await tag(wrapper, 8)]  # one request's shape: built
        await until(lambda: len(wrapper.variant_shapes) == 1)
        tags += [await tag(wrapper, 8), str((await wrapper.infer(batch)).outputs["tag"])]
        return tags

    assert run(scenario()) == [*["dynamic"] * 6, "static(1, 8)", "dynamic"]
    assert wrapper.variant_shapes == [((1, 8),)]
    assert wrapper.variant_stats.compiled == 1
    wrapper.close()
