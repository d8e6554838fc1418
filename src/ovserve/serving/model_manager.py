"""ModelManager: model names to their versions; load, sync with disk, unload."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

from ovserve.config.model_config import ModelConfig
from ovserve.engine.base import InferenceEngine
from ovserve.errors import ConfigError, ModelNotFound, ModelNotReady, ModelRetired, VersionNotFound
from ovserve.repository.versions import find_model_file, list_versions
from ovserve.serving.model_instance import ModelInstance, ModelVersionState

log = logging.getLogger(__name__)


class ServedModel:
    """One model name and all its versions, current and retired."""

    def __init__(self, config: ModelConfig, engine: InferenceEngine) -> None:
        self.config = config
        self._engine = engine
        self.versions: dict[int, ModelInstance] = {}
        self._lock = asyncio.Lock()

    @property
    def name(self) -> str:
        """The served model name."""
        return self.config.name

    def available(self) -> list[ModelInstance]:
        """AVAILABLE versions, ascending."""
        return [instance for _, instance in sorted(self.versions.items()) if instance.is_available]

    def instance(self, version: int | None) -> ModelInstance:
        """The requested version, or the highest AVAILABLE one when ``version`` is None/0."""
        if not version:
            available = self.available()
            if available:
                return available[-1]
            if any(
                instance.state in (ModelVersionState.START, ModelVersionState.LOADING)
                for instance in self.versions.values()
            ):
                raise ModelNotReady()
            raise VersionNotFound()
        try:
            instance = self.versions[version]
        except KeyError:
            raise VersionNotFound() from None
        if instance.state in (ModelVersionState.START, ModelVersionState.LOADING):
            raise ModelNotReady()
        if instance.state is not ModelVersionState.AVAILABLE:
            if instance.error and instance.state is ModelVersionState.END:
                raise ModelNotReady(f"version {version} failed to load")
            raise ModelRetired()
        return instance

    async def sync_versions(self) -> bool:
        """Load versions the policy now selects from disk and unload the others.

        Returns True when anything changed. Raises ConfigError when the base path is unusable.
        """
        async with self._lock:
            on_disk = await asyncio.to_thread(list_versions, self.config.base_path)
            wanted = set(self.config.version_policy.select(on_disk))
            current = {
                version
                for version, instance in self.versions.items()
                if instance.state is not ModelVersionState.END or instance.error
            }
            to_load = sorted(wanted - current)
            to_unload = sorted(
                version
                for version, instance in self.versions.items()
                if version not in wanted and instance.state is not ModelVersionState.END
            )
            loads = [self._load_version(version, on_disk[version]) for version in to_load]
            await asyncio.gather(*loads)
            await asyncio.gather(*(self.versions[version].unload() for version in to_unload))
            if not on_disk:
                log.warning("No version found for model %s in %s", self.name, self.config.base_path)
            return bool(to_load or to_unload)

    async def _load_version(self, version: int, folder: Path) -> None:
        try:
            model_file = await asyncio.to_thread(find_model_file, folder)
        except ConfigError as error:
            instance = ModelInstance(self.config, version, folder, self._engine)
            instance.state = ModelVersionState.END
            instance.error = error.text
            self.versions[version] = instance
            log.error("Model %s version %d: %s", self.name, version, error.text)
            return
        instance = ModelInstance(self.config, version, model_file, self._engine)
        self.versions[version] = instance
        await instance.load()

    async def unload(self) -> None:
        """Unload every version, waiting for in-flight requests."""
        async with self._lock:
            await asyncio.gather(*(instance.unload() for instance in self.versions.values()))

    def close_now(self) -> None:
        """Release every version synchronously."""
        for instance in self.versions.values():
            instance.close_now()


class ModelManager:
    """All served models by name."""

    def __init__(self, engine: InferenceEngine) -> None:
        self._engine = engine
        self._models: dict[str, ServedModel] = {}

    def __iter__(self) -> Iterator[ServedModel]:
        return iter(list(self._models.values()))

    def get(self, name: str) -> ServedModel:
        """The model with this name, or ModelNotFound."""
        try:
            return self._models[name]
        except KeyError:
            raise ModelNotFound() from None

    def instance(self, name: str, version: int | None = None) -> ModelInstance:
        """An AVAILABLE instance for a request, or the error OVMS would give."""
        return self.get(name).instance(version)

    async def add_model(self, config: ModelConfig) -> ServedModel:
        """Register a model and load the versions its policy selects."""
        if config.name in self._models:
            raise ConfigError(f"Duplicate model name {config.name}")
        model = ServedModel(config, self._engine)
        self._models[config.name] = model
        await model.sync_versions()
        return model

    async def remove_model(self, name: str) -> None:
        """Unload all versions of a model (waiting for in-flight requests) and forget it."""
        model = self._models.get(name)
        if model is None:
            return
        await model.unload()
        self._models.pop(name, None)

    async def unload_all(self) -> None:
        """Unload every model, waiting for in-flight requests."""
        await asyncio.gather(*(model.unload() for model in self._models.values()))

    def close_now(self) -> None:
        """Release every compiled model synchronously (last step of shutdown)."""
        for model in self._models.values():
            model.close_now()
        self._engine.close()
