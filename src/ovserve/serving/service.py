"""ServingService: the one API every front-end calls."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ovserve import __version__
from ovserve.engine.base import TensorSpec
from ovserve.errors import VersionNotFound
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


class ServingService:
    """Protocol-neutral operations on the served models."""

    def __init__(self, models: ModelManager) -> None:
        self.models = models
        self.ready = False
        """Set once start-up loading is done; cleared when shutdown begins."""

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
        model = self.models.get(name)
        if version:
            if version not in model.versions:
                raise VersionNotFound()
            return [model.versions[version].status]
        return [instance.status for _, instance in sorted(model.versions.items())]

    async def infer(
        self,
        name: str,
        version: int | None,
        inputs: Sequence[RequestTensor],
        outputs: Sequence[str] | None = None,
    ) -> InferResult:
        """Validate and run one inference on the requested (or default) version."""
        instance = self.models.instance(name, version)
        return await instance.infer(inputs, outputs)
