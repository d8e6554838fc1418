"""A version that fails to load never takes a serving one down (issue 9 item 4).

Serving v1, a corrupt v2 appears: v1 keeps serving and v2 shows its error; v2 is tried again
only once its folder changes; a good v2 then serves and v1 retires as the policy says.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from pathlib import Path

from ovserve.config.model_config import ModelConfig
from ovserve.config.shape import Shape
from ovserve.config.version_policy import LatestVersions
from ovserve.serving.model_instance import ModelVersionState
from ovserve.serving.model_manager import ModelManager
from ovserve.tensors import DataType, TensorSpec

from _fake_engine import FakeCompiledModel, FakeEngine

RepoFactory = Callable[..., ModelConfig]
AVAILABLE, END = ModelVersionState.AVAILABLE, ModelVersionState.END


def _fake_model() -> FakeCompiledModel:
    spec = TensorSpec("data", DataType.FP32, Shape.of(-1, 3))
    return FakeCompiledModel((spec,), (spec,))


def local(config: ModelConfig) -> Path:
    """The repository folder (base_path may also be a RemotePath)."""
    assert isinstance(config.base_path, Path)
    return config.base_path


def states(manager: ModelManager) -> dict[int, ModelVersionState]:
    return {v: instance.state for v, instance in sorted(manager.get("m").versions.items())}


def test_a_corrupt_new_version_leaves_the_old_one_serving_until_a_good_one_comes(
    engine: FakeEngine, make_repo: RepoFactory, add_version: Callable[..., Path]
) -> None:
    config = make_repo([1])

    async def scenario() -> None:
        manager = ModelManager(engine)
        await manager.add_model(config)
        model = manager.get("m")
        add_version(local(config), 2, broken=True)
        assert await model.sync_versions() is True
        assert states(manager) == {1: AVAILABLE, 2: END}
        assert manager.instance("m").version == 1
        assert "cannot read model file corrupt2.xml" in model.versions[2].error
        assert [status.version for status in model.statuses() if status.error] == [2]

        attempts = len(engine.loaded)
        assert await model.sync_versions() is False  # unchanged folder: not tried again
        assert len(engine.loaded) == attempts

        shutil.rmtree(local(config) / "2")
        add_version(local(config), 2)
        assert await model.sync_versions() is True
        assert states(manager) == {1: END, 2: AVAILABLE}
        assert manager.instance("m").version == 2
        assert model.versions[2].error == ""

    asyncio.run(scenario())


def test_at_start_the_policy_falls_back_to_a_version_that_loads(
    engine: FakeEngine, make_repo: RepoFactory
) -> None:
    async def scenario() -> ModelManager:
        manager = ModelManager(engine)
        await manager.add_model(make_repo([1, 2, 3], policy=LatestVersions(2), broken=[3]))
        return manager

    manager = asyncio.run(scenario())
    assert states(manager) == {1: AVAILABLE, 2: AVAILABLE, 3: END}
    assert manager.instance("m").version == 2


def test_a_failed_version_removed_from_disk_is_forgotten(
    engine: FakeEngine, make_repo: RepoFactory, add_version: Callable[..., Path]
) -> None:
    config = make_repo([1])

    async def scenario() -> None:
        manager = ModelManager(engine)
        await manager.add_model(config)
        add_version(local(config), 2, broken=True)
        await manager.get("m").sync_versions()
        shutil.rmtree(local(config) / "2")
        await manager.get("m").sync_versions()
        assert states(manager) == {1: AVAILABLE}

    asyncio.run(scenario())


def test_versions_are_ordered_as_numbers(make_repo: RepoFactory) -> None:
    engine = FakeEngine({"v9.xml": _fake_model(), "v10.xml": _fake_model()})
    config = make_repo([])
    for version in (9, 10):
        folder = local(config) / str(version)
        folder.mkdir()
        (folder / f"v{version}.xml").write_text("<net/>")
        (folder / f"v{version}.bin").write_bytes(b"")

    async def scenario() -> ModelManager:
        manager = ModelManager(engine)
        await manager.add_model(config)
        return manager

    manager = asyncio.run(scenario())
    assert states(manager) == {10: AVAILABLE}
