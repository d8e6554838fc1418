"""Shape variants and memory release on real OpenVINO: equal results, unload, failures, safety."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import openvino as ov
import openvino.opset13 as ops
import pytest

from ovserve.config.model_config import ModelConfig
from ovserve.config.variants import VariantConfig
from ovserve.engine.openvino_engine import OpenVINOCompiledModel, OpenVINOEngine
from ovserve.engine.shape_variants import ShapeVariants
from ovserve.engine.variant_policy import ShapeKey
from ovserve.errors import ConfigError, ModelNotReady
from ovserve.serving.model_instance import ModelInstance
from ovserve.tensors import DataType, RequestTensor

T = TypeVar("T")
F32 = {"INFERENCE_PRECISION_HINT": "f32"}
VARIANTS = VariantConfig(max_variants=2, threshold=2, window_seconds=60, idle_release_seconds=0)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def conv_model(tmp_path: Path, layers: int = 4) -> Path:
    """x [1,3,?,?] -> convs (3x3, padded) -> y [1,8,?,?]: any size works, outputs vary by pixel."""
    rng = np.random.default_rng(7)
    x = ops.parameter(ov.PartialShape([1, 3, -1, -1]), np.float32, name="x")
    x.output(0).get_tensor().set_names({"x"})
    node: Any = x
    channels = 3
    for _ in range(layers):
        weights = rng.standard_normal((8, channels, 3, 3)).astype(np.float32) * 0.3
        conv = ops.convolution(node, ops.constant(weights), [1, 1], [1, 1], [1, 1], [1, 1])
        node = ops.relu(conv)
        channels = 8
    node.output(0).get_tensor().set_names({"y"})
    path = tmp_path / "1" / "model.xml"
    path.parent.mkdir(parents=True)
    ov.save_model(ov.Model([node], [x]), str(path), compress_to_fp16=False)
    return path


def reference(path: Path, array: npt.NDArray[np.float32]) -> npt.NDArray[Any]:
    """The model run in-process, dynamic, f32."""
    compiled = ov.Core().compile_model(str(path), "CPU", F32)
    result: npt.NDArray[Any] = compiled(array)[0].copy()
    del compiled
    return result


def image(height: int, width: int, seed: int = 0) -> npt.NDArray[np.float32]:
    return np.random.default_rng(seed).random((1, 3, height, width), dtype=np.float32)


async def until(condition: Callable[[], bool], seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


def load(path: Path, variants: VariantConfig = VARIANTS) -> ShapeVariants:
    config = ModelConfig("conv", path.parent.parent, plugin_config=F32, variants=variants)
    engine = OpenVINOEngine()
    compiled = engine.load(path, config)
    assert isinstance(compiled, ShapeVariants)
    return compiled


def test_variant_results_equal_the_dynamic_model_and_in_process_openvino(tmp_path: Path) -> None:
    path = conv_model(tmp_path)
    model = load(path)
    shapes = [(48, 64), (48, 64), (40, 40), (48, 64), (40, 40), (48, 64), (72, 32)]

    async def scenario() -> list[npt.NDArray[Any]]:
        answers = []
        for index, (height, width) in enumerate(shapes):
            if index == 3:
                await until(lambda: len(model.variant_shapes) == 1)
            array = image(height, width, seed=index)
            answers.append((await model.infer({"x": array})).outputs["y"])
        await until(lambda: len(model.variant_shapes) == 2)
        array = image(40, 40, seed=99)
        answers.append((await model.infer({"x": array})).outputs["y"])
        return answers

    try:
        answers = run(scenario())
        assert model.variant_stats.served >= 2  # (48,64) at index 3 and 5, and (40,40) at the end
        for index, (height, width) in enumerate([*shapes, (40, 40)]):
            seed = 99 if index == len(shapes) else index
            expected = reference(path, image(height, width, seed=seed))
            np.testing.assert_allclose(answers[index], expected, rtol=1e-5, atol=1e-5)
    finally:
        model.close()


def test_variants_are_dropped_when_the_version_retires(tmp_path: Path) -> None:
    path = conv_model(tmp_path)
    config = ModelConfig("conv", tmp_path, plugin_config=F32, variants=VARIANTS)
    instance = ModelInstance(config, 1, path, OpenVINOEngine())
    tensor = RequestTensor("x", DataType.FP32, (1, 3, 32, 32), image(32, 32))

    async def scenario() -> ShapeVariants:
        await instance.load()
        compiled = instance.compiled
        assert isinstance(compiled, ShapeVariants)
        await instance.infer([tensor])
        await instance.infer([tensor])
        await until(lambda: len(compiled.variant_shapes) == 1)
        await instance.infer([tensor])
        await instance.retire()
        return compiled

    compiled = run(scenario())
    assert compiled.variant_shapes == []
    assert compiled.variant_stats.served == 1
    with pytest.raises(ModelNotReady):
        _ = instance.compiled


def test_a_failed_variant_compile_leaves_the_dynamic_model_serving(tmp_path: Path) -> None:
    path = conv_model(tmp_path)
    engine = OpenVINOEngine()
    good = ModelConfig("conv", tmp_path, plugin_config=F32)
    dynamic = engine.load(path, replace(good, variants=VariantConfig(0, 2, 60, 0)))
    assert isinstance(dynamic, OpenVINOCompiledModel)
    bad = replace(good, plugin_config={**F32, "INFERENCE_NUM_THREADS": "many"})
    attempts: list[ShapeKey] = []

    def build(key: ShapeKey) -> OpenVINOCompiledModel:
        attempts.append(key)
        compiled = engine.load(path, replace(bad, variants=VariantConfig(0, 2, 60, 0)))
        assert isinstance(compiled, OpenVINOCompiledModel)
        return compiled  # not reached: OpenVINO refuses the property

    with pytest.raises(ConfigError):
        build(((1, 3, 8, 8),))
    attempts.clear()
    background = ThreadPoolExecutor(1)
    model = ShapeVariants("conv", dynamic, build=build, config=VARIANTS, background=background)
    array = image(32, 48)

    async def scenario() -> list[npt.NDArray[Any]]:
        answers = [(await model.infer({"x": array})).outputs["y"] for _ in range(2)]
        await until(lambda: model.variant_stats.failed == 1)
        answers += [(await model.infer({"x": array})).outputs["y"] for _ in range(3)]
        return answers

    try:
        answers = run(scenario())
        expected = reference(path, array)
        for answer in answers:
            np.testing.assert_allclose(answer, expected, rtol=1e-5, atol=1e-5)
        assert attempts == [((1, 3, 32, 48),)]  # tried once, never again
        assert model.variant_shapes == []
    finally:
        model.close()
        background.shutdown()


def test_memory_release_never_breaks_a_request_in_flight(tmp_path: Path) -> None:
    path = conv_model(tmp_path, layers=8)
    model = load(path, VariantConfig(max_variants=0, idle_release_seconds=3600))
    big, small = image(384, 512, seed=1), image(40, 56, seed=2)

    async def scenario() -> tuple[list[npt.NDArray[Any]], list[bool]]:
        await model.infer({"x": small})
        jobs = [asyncio.create_task(model.infer({"x": big})) for _ in range(3)]
        releases = []
        while not all(job.done() for job in jobs):
            releases.append(await model.release_memory())  # busy: skipped, never concurrent
            await asyncio.sleep(0.002)
        releases.append(await model.release_memory())  # idle: really released
        after = (await model.infer({"x": small})).outputs["y"]
        return [job.result().outputs["y"] for job in jobs] + [after], releases

    try:
        answers, releases = run(scenario())
        expected_big = reference(path, big)
        for answer in answers[:3]:
            np.testing.assert_allclose(answer, expected_big, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(answers[3], reference(path, small), rtol=1e-5, atol=1e-5)
        assert releases[-1] is True
        assert False in releases  # some attempts found the model busy and left it alone
    finally:
        model.close()


def test_release_waits_requests_that_arrive_meanwhile(tmp_path: Path) -> None:
    path = conv_model(tmp_path)
    model = load(path, VariantConfig(max_variants=0, idle_release_seconds=3600))
    arrays = [image(24 + 8 * index, 40, seed=index) for index in range(6)]

    async def scenario() -> list[npt.NDArray[Any]]:
        await model.infer({"x": arrays[0]})
        release = asyncio.create_task(model.release_memory())
        await asyncio.sleep(0)  # the release holds every infer request now
        jobs = [asyncio.create_task(model.infer({"x": array})) for array in arrays]
        assert await release is True
        return [(await job).outputs["y"] for job in jobs]

    try:
        answers = run(scenario())
        for answer, array in zip(answers, arrays, strict=True):
            np.testing.assert_allclose(answer, reference(path, array), rtol=1e-5, atol=1e-5)
    finally:
        model.close()


def test_static_models_are_not_wrapped(tmp_path: Path) -> None:
    x = ops.parameter([1, 4], np.float32, name="x")
    path = tmp_path / "1" / "model.xml"
    path.parent.mkdir(parents=True)
    ov.save_model(ov.Model([ops.relu(x)], [x]), str(path))
    compiled = OpenVINOEngine().load(path, ModelConfig("static", tmp_path))
    try:
        assert isinstance(compiled, OpenVINOCompiledModel)
    finally:
        compiled.close()
