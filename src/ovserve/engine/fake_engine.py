"""A deterministic engine for fast front-end and serving tests: no OpenVINO involved.

Each output is the sum of all inputs' elements, broadcast to the output's shape (static sizes
taken as given, dynamic ones taken from the first input), cast to the output's datatype.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ovserve.config.model_config import ModelConfig
from ovserve.engine.base import EngineResult
from ovserve.errors import ConfigError
from ovserve.tensors import TensorSpec


@dataclass
class FakeCompiledModel:
    """A model with fixed specs whose outputs depend on the inputs in a checkable way."""

    input_specs: tuple[TensorSpec, ...]
    output_specs: tuple[TensorSpec, ...]
    calls: list[dict[str, npt.NDArray[Any]]] = field(default_factory=list)
    closed: bool = False

    @property
    def inputs(self) -> Sequence[TensorSpec]:
        """Inputs in model order."""
        return self.input_specs

    @property
    def outputs(self) -> Sequence[TensorSpec]:
        """Outputs in model order."""
        return self.output_specs

    @property
    def nireq(self) -> int:
        """One pretend infer request."""
        return 1

    @property
    def streams(self) -> int:
        """One pretend stream."""
        return 1

    async def infer(
        self, inputs: Mapping[str, npt.NDArray[Any]], outputs: Sequence[str] | None = None
    ) -> EngineResult:
        """Sum the inputs into every requested output."""
        self.calls.append(dict(inputs))
        total = sum(float(np.asarray(array, dtype=np.float64).sum()) for array in inputs.values())
        first = next(iter(inputs.values()))
        names = outputs if outputs is not None else [spec.name for spec in self.output_specs]
        result = {}
        for spec in self.output_specs:
            if spec.name not in names:
                continue
            sizes = [
                dim.lower if dim.is_static else (first.shape[i] if i < first.ndim else 1)
                for i, dim in enumerate(spec.shape.dims)
            ]
            result[spec.name] = np.full(sizes, total, dtype=spec.datatype.numpy_dtype)
        return EngineResult(result, wait_us=0.0, infer_us=1.0)

    def close(self) -> None:
        """Mark closed."""
        self.closed = True


@dataclass
class FakeEngine:
    """Serves ``models[file name]``; any other file fails to load like a corrupt model."""

    models: dict[str, FakeCompiledModel]
    loaded: list[Path] = field(default_factory=list)

    def load(self, model_file: Path, config: ModelConfig) -> FakeCompiledModel:
        """Hand out the prepared fake for this file."""
        self.loaded.append(model_file)
        try:
            return self.models[model_file.name]
        except KeyError:
            raise ConfigError(
                f"Model {config.name}: cannot read model file {model_file.name}"
            ) from None

    def close(self) -> None:
        """Nothing to release."""
