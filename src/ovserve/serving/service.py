"""ServingService: the one API every front-end calls."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ovserve import __version__
from ovserve.engine.base import TensorSpec
from ovserve.errors import ConfigError, VersionNotFound
from ovserve.serving.model_instance import VersionStatus
from ovserve.serving.model_manager import ModelManager
from ovserve.tensors import InferResult, RequestTensor

SERVER_NAME = "OpenVINO Model Server"


@dataclass(frozen=True, slots=True)
class ModelMetadata:
    """What metadata endpoints report for one version."""

    name: str
    version: int
    versions: tuple[int, ...]
    """AVAILABLE versions of the model."""
    inputs: Sequence[TensorSpec]
    outputs: Sequence[TensorSpec]


class ConfigReloader(Protocol):
    """Applies config.json changes (set by the server when ``--config_path`` is used)."""

    async def reload(self) -> bool:
        """Re-read the config file and apply it; True when anything changed.

        Raises ConfigError when the file cannot be read or is invalid (nothing is applied).
        """


class ServingService:
    """Protocol-neutral operations on the served models."""

    def __init__(self, models: ModelManager) -> None:
        self.models = models
        self.ready = False
        """Set once start-up loading is done; cleared when shutdown begins."""
        self.reloader: ConfigReloader | None = None
        """Present when serving from a config file."""
        self.on_infer: Callable[[InferResult], None] | None = None
        """Called with every successful inference (the metrics' engine times)."""

    @property
    def server_name(self) -> str:
        """Name reported by server metadata (OVMS's, so clients that check it keep working)."""
        return SERVER_NAME

    @property
    def server_version(self) -> str:
        """Version reported by server metadata."""
        return __version__

    def model_ready(self, name: str, version: int | None = None) -> bool:
        """True when the version (or the default version) can serve; raises for unknown names."""
        return self.models.instance(name, version).is_available

    def model_metadata(self, name: str, version: int | None = None) -> ModelMetadata:
        """Inputs, outputs and available versions."""
        model = self.models.get(name)
        instance = model.instance(version)
        return ModelMetadata(
            name=name,
            version=instance.version,
            versions=tuple(available.version for available in model.available()),
            inputs=instance.inputs,
            outputs=instance.outputs,
        )

    def model_status(self, name: str, version: int | None = None) -> list[VersionStatus]:
        """Every version's status, or one version's when ``version`` is given."""
        statuses = self.models.get(name).statuses()
        if version:
            statuses = [status for status in statuses if status.version == version]
            if not statuses:
                raise VersionNotFound()
        return statuses

    def all_statuses(self) -> dict[str, list[VersionStatus]]:
        """Every model's version statuses (``GET /v1/config``)."""
        return {model.name: self.model_status(model.name) for model in self.models}

    async def reload_config(self) -> bool:
        """Re-apply the config file (``POST /v1/config/reload``); True when anything changed."""
        if self.reloader is None:
            raise ConfigError("Config file not found or cannot open.")
        return await self.reloader.reload()

    async def infer(
        self,
        name: str,
        version: int | None,
        inputs: Sequence[RequestTensor],
        outputs: Sequence[str] | None = None,
    ) -> InferResult:
        """Validate and run one inference on the requested (or default) version."""
        instance = self.models.instance(name, version)
        result = await instance.infer(inputs, outputs)
        if self.on_infer is not None:
            self.on_infer(result)
        return result
