"""``auto`` shapes and batch sizes: reshape on demand, concurrency, failure, cache policy."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest

from ovserve.config.mapping import TensorMapping
from ovserve.config.model_config import ModelConfig
from ovserve.config.shape import ANONYMOUS_INPUT, AUTO, Dimension, Shape
from ovserve.engine.base import LoadStep
from ovserve.errors import ConfigError, ModelNotReady, ReshapeFailed, ShapeMismatch
from ovserve.serving import model_instance
from ovserve.serving.auto_shape import AutoShape, Reshape
from ovserve.serving.model_instance import ModelInstance
from ovserve.serving.model_manager import ModelManager
from ovserve.tensors import DataType, RequestTensor, TensorSpec

from _fake_engine import FakeCompiledModel

T = TypeVar("T")
FP32 = DataType.FP32


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@dataclass
class ShapeEngine:
    """Compiles a one-input model ``data`` whose shape follows the config, as OpenVINO would."""

    native: Shape = field(default_factory=lambda: Shape.of(1, 3))
    fail: set[tuple[int, ...]] = field(default_factory=set)
    block: threading.Event | None = None
    loads: list[ModelConfig] = field(default_factory=list)
    compiled: list[FakeCompiledModel] = field(default_factory=list)

    def load(
        self, model_file: Path, config: ModelConfig, on_step: LoadStep | None = None
    ) -> FakeCompiledModel:
        self.loads.append(config)
        if self.block is not None:
            self.block.wait(5)
        shape = self.native
        configured = config.shape.get(ANONYMOUS_INPUT, config.shape.get("data"))
        if isinstance(configured, Shape):
            shape = configured
        elif isinstance(config.batch_size, Dimension):
            shape = Shape((config.batch_size, *self.native.dims[1:]))
        sizes = tuple(dim.lower for dim in shape.dims)
        if sizes in self.fail:
            raise ConfigError(f"OV does not support reshaping model: {config.name}")
        compiled = FakeCompiledModel(
            (TensorSpec("data", FP32, shape),), (TensorSpec("out", FP32, shape),)
        )
        self.compiled.append(compiled)
        return compiled

    def close(self) -> None:
        """Nothing to release."""


def tensor(*sizes: int) -> RequestTensor:
    return RequestTensor("data", FP32, sizes, np.ones(sizes, np.float32))


async def loaded(engine: ShapeEngine, tmp_path: Path, **config: Any) -> ModelInstance:
    instance = ModelInstance(
        ModelConfig(name="m", base_path=tmp_path, **config), 1, tmp_path / "m.xml", engine
    )
    await instance.load()
    assert instance.is_available, instance.error
    return instance


def test_reshape_on_a_new_shape(tmp_path: Path) -> None:
    engine = ShapeEngine()

    async def scenario() -> ModelInstance:
        instance = await loaded(engine, tmp_path, shape={ANONYMOUS_INPUT: AUTO})
        first = await instance.infer([tensor(1, 3)])
        second = await instance.infer([tensor(2, 5)])
        assert first.outputs["out"].shape == (1, 3)
        assert second.outputs["out"].shape == (2, 5)
        return instance

    instance = run(scenario())
    assert len(engine.loads) == 2
    assert engine.loads[1].shape == {ANONYMOUS_INPUT: Shape.of(2, 5)}
    assert instance.inputs[0].shape == Shape.of(2, 5)
    assert engine.compiled[0].closed


def test_batch_auto(tmp_path: Path) -> None:
    engine = ShapeEngine()

    async def scenario() -> None:
        instance = await loaded(engine, tmp_path, batch_size=AUTO)
        result = await instance.infer([tensor(4, 3)])
        assert result.outputs["out"].shape == (4, 3)
        with pytest.raises(ShapeMismatch):  # only the batch follows requests
            await instance.infer([tensor(4, 5)])

    run(scenario())
    assert engine.loads[1].batch_size == Dimension.static(4)


def test_no_auto_no_reshape(tmp_path: Path) -> None:
    engine = ShapeEngine()

    async def scenario() -> None:
        instance = await loaded(engine, tmp_path)
        with pytest.raises(ShapeMismatch):
            await instance.infer([tensor(2, 3)])

    run(scenario())
    assert len(engine.loads) == 1


def test_invalid_requests_are_not_reshaped(tmp_path: Path) -> None:
    engine = ShapeEngine()

    async def scenario() -> None:
        instance = await loaded(engine, tmp_path, shape={ANONYMOUS_INPUT: AUTO})
        with pytest.raises(ShapeMismatch, match="Negative or zero dimension"):
            await instance.infer([tensor(0, 3)])

    run(scenario())
    assert len(engine.loads) == 1


def test_failed_reshape_keeps_the_previous_model(tmp_path: Path) -> None:
    engine = ShapeEngine(fail={(2, 3)})

    async def scenario() -> None:
        instance = await loaded(engine, tmp_path, shape={ANONYMOUS_INPUT: AUTO})
        with pytest.raises(ReshapeFailed) as caught:
            await instance.infer([tensor(2, 3)])
        assert caught.value.text == "Model could not be reshaped with requested shape"
        result = await instance.infer([tensor(1, 3)])
        assert result.outputs["out"].shape == (1, 3)
        assert instance.in_flight == 0

    run(scenario())
    assert len(engine.loads) == 2
    assert not engine.compiled[0].closed


def test_concurrent_requests_of_two_shapes_all_succeed(tmp_path: Path) -> None:
    engine = ShapeEngine()

    async def scenario() -> list[tuple[int, ...]]:
        instance = await loaded(engine, tmp_path, shape={ANONYMOUS_INPUT: AUTO})
        shapes = [(1, 3), (2, 3)] * 10
        results = await asyncio.gather(*(instance.infer([tensor(*s)]) for s in shapes))
        return [result.outputs["out"].shape for result in results]

    assert run(scenario()) == [(1, 3), (2, 3)] * 10
    for compiled in engine.compiled:  # every request ran on a model of its own shape
        sizes = tuple(dim.lower for dim in compiled.input_specs[0].shape.dims)
        assert all(call["data"].shape == sizes for call in compiled.calls)


def test_requests_wait_for_a_reshape_then_run(tmp_path: Path) -> None:
    block = threading.Event()
    engine = ShapeEngine()

    async def scenario() -> None:
        instance = await loaded(engine, tmp_path, shape={ANONYMOUS_INPUT: AUTO})
        engine.block = block
        reshaping = asyncio.create_task(instance.infer([tensor(2, 3)]))
        while len(engine.loads) < 2:
            await asyncio.sleep(0.001)
        waiting = asyncio.create_task(instance.infer([tensor(2, 3)]))
        await asyncio.sleep(0.01)
        assert not waiting.done()
        block.set()
        assert (await reshaping).outputs["out"].shape == (2, 3)
        assert (await waiting).outputs["out"].shape == (2, 3)

    run(scenario())
    assert len(engine.loads) == 2  # the waiting request found the shape it needed


def test_waiting_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model_instance, "WAIT_FOR_LOADED_SECONDS", 0.05)
    block = threading.Event()
    engine = ShapeEngine()

    async def scenario() -> None:
        instance = await loaded(engine, tmp_path, shape={ANONYMOUS_INPUT: AUTO})
        engine.block = block
        reshaping = asyncio.create_task(instance.infer([tensor(2, 3)]))
        while len(engine.loads) < 2:
            await asyncio.sleep(0.001)
        with pytest.raises(ModelNotReady):
            await instance.infer([tensor(2, 3)])
        block.set()
        await reshaping

    run(scenario())


def test_retire_waits_for_a_reshape(tmp_path: Path) -> None:
    block = threading.Event()
    engine = ShapeEngine()

    async def scenario() -> None:
        instance = await loaded(engine, tmp_path, shape={ANONYMOUS_INPUT: AUTO})
        engine.block = block
        reshaping = asyncio.create_task(instance.infer([tensor(2, 3)]))
        while len(engine.loads) < 2:
            await asyncio.sleep(0.001)
        unloading = asyncio.create_task(instance.retire())
        await asyncio.sleep(0.01)
        assert not unloading.done()
        block.set()
        assert (await reshaping).outputs["out"].shape == (2, 3)
        await unloading

    run(scenario())
    assert all(compiled.closed for compiled in engine.compiled)


def test_cache_is_off_for_auto_unless_allowed(tmp_path: Path) -> None:
    engine = ShapeEngine()

    async def scenario() -> None:
        await loaded(engine, tmp_path, shape={ANONYMOUS_INPUT: AUTO}, cache_dir=tmp_path)
        await loaded(
            engine, tmp_path, shape={ANONYMOUS_INPUT: AUTO}, cache_dir=tmp_path, allow_cache=True
        )
        await loaded(engine, tmp_path, cache_dir=tmp_path)

    run(scenario())
    assert [config.cache_dir for config in engine.loads] == [None, tmp_path, tmp_path]


def test_deprecation_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        manager = ModelManager(ShapeEngine())
        (tmp_path / "1").mkdir()
        (tmp_path / "1" / "m.xml").write_text("<net/>")
        (tmp_path / "1" / "m.bin").write_bytes(b"")
        await manager.add_model(
            ModelConfig(name="m", base_path=tmp_path, shape={ANONYMOUS_INPUT: AUTO})
        )
        await manager.add_model(ModelConfig(name="n", base_path=tmp_path, batch_size=AUTO))

    with caplog.at_level(logging.WARNING):
        run(scenario())
    assert "Model m: Shape auto is deprecated. Use model dynamic shapes instead" in caplog.text
    assert "Model n: Batch size auto is deprecated" in caplog.text
    assert "-1" in caplog.text


def test_mapping_is_read_from_the_version_folder(tmp_path: Path) -> None:
    (tmp_path / "mapping_config.json").write_text('{"inputs": {"data": "image"}}')
    engine = ShapeEngine()
    run(loaded(engine, tmp_path))
    assert engine.loads[0].mapping == TensorMapping({"data": "image"}, {})


def test_invalid_mapping_fails_the_version(tmp_path: Path) -> None:
    (tmp_path / "mapping_config.json").write_text('{"inputs": []}')
    instance = ModelInstance(
        ModelConfig(name="m", base_path=tmp_path), 1, tmp_path / "m.xml", ShapeEngine()
    )
    run(instance.load())
    assert "inputs must map real names" in instance.error


def test_auto_keys_resolve_through_aliases() -> None:
    config = ModelConfig(
        name="m",
        base_path=Path(),
        shape={"data": AUTO},
        mapping=TensorMapping({"data": "image"}, {}),
    )
    auto = AutoShape.of(config)
    assert auto is not None
    spec = TensorSpec("image", FP32, Shape.of(1, 3))
    request = RequestTensor("image", FP32, (2, 3), np.ones((2, 3), np.float32))
    assert auto.target([spec], [request]) == Reshape({"data": Shape.of(2, 3)})
    assert auto.target([spec], [RequestTensor("image", FP32, (1, 3), b"")]) is None
    assert str(Reshape({"data": Shape.of(2, 3)}, 4)) == "data (2,3), batch size 4"
