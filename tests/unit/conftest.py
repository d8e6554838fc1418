"""Shared unit-test fixtures: a model repository on disk served by the FakeEngine."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from ovserve.config.model_config import ModelConfig
from ovserve.config.shape import Shape
from ovserve.config.version_policy import DEFAULT_POLICY, VersionPolicy
from ovserve.tensors import DataType, TensorSpec

from _fake_engine import FakeCompiledModel, FakeEngine

RepoFactory = Callable[..., ModelConfig]


def _fake_model(
    inputs: Iterable[TensorSpec] = (), outputs: Iterable[TensorSpec] = ()
) -> FakeCompiledModel:
    """A fake compiled model; by default one FP32 input ``data`` (-1, 3) and output ``out``."""
    ins = tuple(inputs) or (TensorSpec("data", DataType.FP32, Shape.of(-1, 3)),)
    outs = tuple(outputs) or (TensorSpec("out", DataType.FP32, Shape.of(-1, 3)),)
    return FakeCompiledModel(ins, outs)


@pytest.fixture
def engine() -> FakeEngine:
    """A FakeEngine serving ``v<N>.xml`` for versions 1 to 9; other files fail to load."""
    return FakeEngine({f"v{version}.xml": _fake_model() for version in range(1, 10)})


@pytest.fixture
def make_repo(tmp_path: Path) -> RepoFactory:
    """Write ``<tmp>/<name>/<N>/v<N>.xml`` (+ ``.bin``) per version and return a ModelConfig.

    ``broken`` versions get a file the FakeEngine cannot load; ``empty`` ones no model file.
    """

    def make(
        versions: Iterable[int] = (1,),
        *,
        name: str = "m",
        policy: VersionPolicy = DEFAULT_POLICY,
        broken: Iterable[int] = (),
        empty: Iterable[int] = (),
    ) -> ModelConfig:
        base = tmp_path / name
        base.mkdir(exist_ok=True)
        for version in versions:
            add_version(base, version, broken=version in set(broken), empty=version in set(empty))
        return ModelConfig(name=name, base_path=base, version_policy=policy)

    return make


@pytest.fixture(name="add_version")
def add_version_fixture() -> Callable[..., Path]:
    """Create one more version folder (``add_version(base, 4)``), as :func:`add_version`."""
    return add_version


def add_version(base: Path, version: int, *, broken: bool = False, empty: bool = False) -> Path:
    """Create one version folder for the FakeEngine."""
    folder = base / str(version)
    folder.mkdir(parents=True, exist_ok=True)
    if not empty:
        stem = f"corrupt{version}" if broken else f"v{version}"
        (folder / f"{stem}.xml").write_text("<net/>")
        (folder / f"{stem}.bin").write_bytes(b"")
    return folder
