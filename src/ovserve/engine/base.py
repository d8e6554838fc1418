"""The engine seam: what the serving core needs from an inference runtime."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy.typing as npt

from ovserve.config.model_config import ModelConfig
from ovserve.tensors import TensorSpec


@dataclass(frozen=True, slots=True)
class EngineResult:
    """Outputs of one inference and where its time went."""

    outputs: dict[str, npt.NDArray[Any]]
    wait_us: float
    """Time spent waiting for a free infer request."""
    infer_us: float
    """Time spent in the runtime itself."""


LoadStep = Callable[[str], None]
"""Told the name of each load step as it starts (the start-up watchdog shows it)."""


class CompiledModel(Protocol):
    """A model compiled for a device, with its pool of infer requests."""

    @property
    def inputs(self) -> Sequence[TensorSpec]:
        """Inputs in model order."""

    @property
    def outputs(self) -> Sequence[TensorSpec]:
        """Outputs in model order."""

    @property
    def nireq(self) -> int:
        """Size of the infer-request pool."""

    @property
    def streams(self) -> int:
        """Number of execution streams the device runs."""

    async def infer(
        self, inputs: Mapping[str, npt.NDArray[Any]], outputs: Sequence[str] | None = None
    ) -> EngineResult:
        """Run one inference on validated inputs; return the requested (or all) outputs."""

    def close(self) -> None:
        """Release infer requests and the compiled model; idempotent."""


class InferenceEngine(Protocol):
    """Reads, reshapes and compiles model files."""

    def load(
        self, model_file: Path, config: ModelConfig, on_step: LoadStep | None = None
    ) -> CompiledModel:
        """Compile ``model_file`` as ``config`` says; blocking, so call it off the event loop.

        ``on_step`` is told each step's name as it starts (e.g. read, reshape, compile).

        Raises ConfigError (bad shape or layout for this model, unreadable file) or
        ReshapeFailed.
        """

    def close(self) -> None:
        """Release runtime-wide resources."""
