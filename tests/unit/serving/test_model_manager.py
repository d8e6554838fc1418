"""ModelManager and ServedModel over a repository on disk, with the FakeEngine."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest

from ovserve.config.model_config import ModelConfig
from ovserve.config.version_policy import AllVersions, LatestVersions, SpecificVersions
from ovserve.errors import (
    ConfigError,
    ModelNotFound,
    ModelNotReady,
    ModelRetired,
    VersionNotFound,
)
from ovserve.serving.model_instance import ModelVersionState
from ovserve.serving.model_manager import ModelManager
from ovserve.tensors import DataType, RequestTensor

from _fake_engine import FakeCompiledModel, FakeEngine

T = TypeVar("T")
RepoFactory = Callable[..., ModelConfig]


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def versions_in(manager: ModelManager, name: str = "m") -> dict[int, ModelVersionState]:
    return {v: instance.state for v, instance in manager.get(name).versions.items()}


async def until(condition: Callable[[], bool]) -> None:
    """Let other tasks run until ``condition`` holds (no wall-clock waiting)."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never became true")


async def started(engine: FakeEngine, config: ModelConfig) -> ModelManager:
    manager = ModelManager(engine)
    await manager.add_model(config)
    return manager


def test_default_policy_loads_the_highest_version(
    engine: FakeEngine, make_repo: RepoFactory
) -> None:
    manager = run(started(engine, make_repo([1, 2, 3])))
    assert versions_in(manager) == {3: ModelVersionState.AVAILABLE}
    assert manager.instance("m").version == 3
    assert [path.name for path in engine.loaded] == ["v3.xml"]


def test_latest_two(engine: FakeEngine, make_repo: RepoFactory) -> None:
    manager = run(started(engine, make_repo([1, 2, 3], policy=LatestVersions(2))))
    assert sorted(versions_in(manager)) == [2, 3]


def test_all_versions(engine: FakeEngine, make_repo: RepoFactory) -> None:
    manager = run(started(engine, make_repo([1, 2, 3], policy=AllVersions())))
    assert sorted(versions_in(manager)) == [1, 2, 3]
    assert [instance.version for instance in manager.get("m").available()] == [1, 2, 3]


def test_specific_versions(engine: FakeEngine, make_repo: RepoFactory) -> None:
    policy = SpecificVersions(frozenset({1, 3, 7}))
    manager = run(started(engine, make_repo([1, 2, 3], policy=policy)))
    assert sorted(versions_in(manager)) == [1, 3]
    assert manager.instance("m", 1).version == 1
    with pytest.raises(VersionNotFound):
        manager.instance("m", 2)


def test_default_version_is_the_highest_available(
    engine: FakeEngine, make_repo: RepoFactory
) -> None:
    config = make_repo([1, 2, 3], policy=AllVersions(), broken=[3])
    manager = run(started(engine, config))
    assert versions_in(manager)[3] is ModelVersionState.END
    assert manager.instance("m").version == 2
    assert manager.instance("m", None).version == 2
    assert manager.instance("m", 0).version == 2


def test_failed_version_reports_its_error(engine: FakeEngine, make_repo: RepoFactory) -> None:
    manager = run(started(engine, make_repo([1, 2], policy=AllVersions(), broken=[2], empty=[1])))
    model = manager.get("m")
    assert "cannot read model file corrupt2.xml" in model.versions[2].error
    assert "No model file in" in model.versions[1].error
    with pytest.raises(ModelNotReady, match="version 2 failed to load"):
        manager.instance("m", 2)
    with pytest.raises(VersionNotFound):
        manager.instance("m")


def test_unknown_model_and_version(engine: FakeEngine, make_repo: RepoFactory) -> None:
    manager = run(started(engine, make_repo([1])))
    with pytest.raises(ModelNotFound) as caught:
        manager.instance("nope")
    assert caught.value.text == "Model with requested name is not found"
    with pytest.raises(VersionNotFound) as missing:
        manager.instance("m", 5)
    assert missing.value.text == "Model with requested version is not found"


def test_folders_that_are_not_versions_are_skipped(
    engine: FakeEngine, make_repo: RepoFactory, add_version: Callable[..., Path]
) -> None:
    config = make_repo([2], policy=AllVersions())
    base = config.base_path
    assert isinstance(base, Path)  # a local repository (base_path may also be a RemotePath)
    (base / "0").mkdir()
    (base / "abc").mkdir()
    (base / "7").write_text("a file, not a folder")
    manager = run(started(engine, config))
    assert sorted(versions_in(manager)) == [2]


def test_no_version_folder_loads_nothing(engine: FakeEngine, make_repo: RepoFactory) -> None:
    manager = run(started(engine, make_repo([])))
    assert versions_in(manager) == {}
    with pytest.raises(VersionNotFound):
        manager.instance("m")


def test_missing_base_path(engine: FakeEngine, tmp_path: Path) -> None:
    config = ModelConfig(name="m", base_path=tmp_path / "missing")
    with pytest.raises(ConfigError, match="does not exist"):
        run(started(engine, config))


def test_duplicate_model_name(engine: FakeEngine, make_repo: RepoFactory) -> None:
    config = make_repo([1])

    async def scenario() -> None:
        manager = await started(engine, config)
        await manager.add_model(config)

    with pytest.raises(ConfigError, match="Duplicate model name m"):
        run(scenario())


def test_sync_loads_new_versions_and_retires_old_ones(
    engine: FakeEngine, make_repo: RepoFactory, add_version: Callable[..., Path]
) -> None:
    config = make_repo([1])

    async def scenario() -> ModelManager:
        manager = await started(engine, config)
        model = manager.get("m")
        assert not await model.sync_versions()
        add_version(config.base_path, 2)
        assert await model.sync_versions()
        return manager

    manager = run(scenario())
    assert versions_in(manager) == {1: ModelVersionState.END, 2: ModelVersionState.AVAILABLE}
    assert manager.instance("m").version == 2
    with pytest.raises(ModelRetired) as caught:
        manager.instance("m", 1)
    assert caught.value.text == "Model with requested version is retired"
    assert engine.last("v1.xml").close_calls == 1
    assert not engine.last("v2.xml").closed


def test_deleted_version_is_unloaded_and_the_default_falls_back(
    engine: FakeEngine, make_repo: RepoFactory
) -> None:
    config = make_repo([1, 2], policy=AllVersions())

    async def scenario() -> ModelManager:
        manager = await started(engine, config)
        assert isinstance(config.base_path, Path)
        shutil.rmtree(config.base_path / "2")
        assert await manager.get("m").sync_versions()
        return manager

    manager = run(scenario())
    assert manager.instance("m").version == 1
    assert versions_in(manager)[2] is ModelVersionState.END


def test_a_failed_version_is_not_retried_every_sync(
    engine: FakeEngine, make_repo: RepoFactory
) -> None:
    config = make_repo([1], broken=[1])

    async def scenario() -> bool:
        manager = await started(engine, config)
        return await manager.get("m").sync_versions()

    assert run(scenario()) is False
    assert len(engine.loaded) == 1


def test_retire_waits_for_in_flight_requests(engine: FakeEngine, make_repo: RepoFactory) -> None:
    config = make_repo([1])
    events: list[str] = []

    async def scenario() -> FakeCompiledModel:
        release = asyncio.Event()
        manager = await started(engine, config)
        fake = engine.last("v1.xml")
        original = fake.infer

        async def slow_infer(inputs: Any, outputs: Any = None) -> Any:
            events.append("infer started")
            await release.wait()
            events.append("infer done")
            return await original(inputs, outputs)

        fake.infer = slow_infer  # type: ignore[method-assign]
        tensor = RequestTensor("data", DataType.FP32, (1, 3), np.ones(3, np.float32))
        instance = manager.instance("m")
        request = asyncio.create_task(instance.infer([tensor]))
        await until(lambda: "infer started" in events)
        retiring = asyncio.create_task(manager.retire_all())
        await until(lambda: instance.state is ModelVersionState.UNLOADING)
        events.append("retire waiting")
        assert not retiring.done()
        release.set()
        result = await request
        await retiring
        events.append("retired")
        assert result.outputs["out"].tolist() == [[3.0, 3.0, 3.0]]
        return fake

    fake = run(scenario())
    assert events == ["infer started", "retire waiting", "infer done", "retired"]
    assert fake.close_calls == 1


def test_close_releases_every_version(engine: FakeEngine, make_repo: RepoFactory) -> None:
    manager = run(started(engine, make_repo([1, 2], policy=AllVersions())))
    manager.close()
    assert [model.close_calls for model in engine.compiled] == [1, 1]
    assert set(versions_in(manager).values()) == {ModelVersionState.END}
