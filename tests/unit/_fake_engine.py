"""A deterministic engine for fast front-end and serving unit tests: no OpenVINO involved.

Each output is the sum of all inputs' elements, broadcast to the output's shape (static sizes
taken as given, dynamic ones taken from the first input), cast to the output's datatype.

Like the real engine, every ``load`` compiles a *fresh* model (so a reload is a new object and a
test can tell versions and reloads apart), and a closed model refuses to infer (so a
use-after-close in the manager or reloader fails loudly instead of answering). ``close`` is
idempotent as the engine protocol says, and counts its calls so tests can check it happened.
It lives in the tests, not in the package: nothing in production uses it.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ovserve.config.model_config import ModelConfig
from ovserve.engine.base import EngineResult, LoadStep
from ovserve.errors import ConfigError
from ovserve.tensors import TensorSpec


class UsedAfterClose(AssertionError):
    """A closed fake model was asked to infer: the code under test kept a stale reference."""


@dataclass
class FakeCompiledModel:
    """A model with fixed specs whose outputs depend on the inputs in a checkable way."""

    input_specs: tuple[TensorSpec, ...]
    output_specs: tuple[TensorSpec, ...]
    calls: list[dict[str, npt.NDArray[Any]]] = field(default_factory=list)
    close_calls: int = 0

    @property
    def closed(self) -> bool:
        """True once ``close`` ran."""
        return self.close_calls > 0

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

    def fresh(self) -> FakeCompiledModel:
        """A new, open model with the same specs (what one ``load`` compiles)."""
        return FakeCompiledModel(self.input_specs, self.output_specs)

    async def infer(
        self, inputs: Mapping[str, npt.NDArray[Any]], outputs: Sequence[str] | None = None
    ) -> EngineResult:
        """Sum the inputs into every requested output; raise if closed."""
        if self.closed:
            raise UsedAfterClose("infer() on a closed compiled model")
        self.calls.append(dict(inputs))
        # Fuzzed inputs may hold NaN/Inf or values no float64 can hold: the fake only needs a
        # deterministic number, so numpy's cast warnings (errors under pytest) are silenced here.
        with np.errstate(all="ignore"):
            total = sum(
                float(np.asarray(array, dtype=np.float64).sum()) for array in inputs.values()
            )
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
            with np.errstate(all="ignore"):
                result[spec.name] = np.full(sizes, total, dtype=spec.datatype.numpy_dtype)
        return EngineResult(result, wait_us=0.0, infer_us=1.0)

    def close(self) -> None:
        """Mark closed (idempotent; every call is counted)."""
        self.close_calls += 1


@dataclass
class FakeEngine:
    """Compiles a fresh copy of ``models[file name]`` per load; other files fail like corrupt ones.

    ``models`` holds templates (never handed out); ``compiled`` every model handed out, in order.
    """

    models: dict[str, FakeCompiledModel]
    loaded: list[Path] = field(default_factory=list)
    compiled: list[FakeCompiledModel] = field(default_factory=list)
    hold: threading.Event | None = None
    """When set, loads wait in their compile step until the event is set (a stuck load)."""

    def load(
        self, model_file: Path, config: ModelConfig, on_step: LoadStep | None = None
    ) -> FakeCompiledModel:
        """Compile a fresh model for this file."""
        if on_step is not None:
            on_step("read")
            on_step("compile")
        if self.hold is not None:
            self.hold.wait()
        self.loaded.append(model_file)
        try:
            template = self.models[model_file.name]
        except KeyError:
            raise ConfigError(
                f"Model {config.name}: cannot read model file {model_file.name}"
            ) from None
        model = template.fresh()
        self.compiled.append(model)
        return model

    def last(self, file_name: str) -> FakeCompiledModel:
        """The most recent model compiled from ``file_name``."""
        for path, model in zip(reversed(self.loaded_ok()), reversed(self.compiled), strict=True):
            if path.name == file_name:
                return model
        raise AssertionError(f"{file_name} was never loaded")

    def all_of(self, file_name: str) -> list[FakeCompiledModel]:
        """Every model compiled from ``file_name``, oldest first."""
        return [
            model
            for path, model in zip(self.loaded_ok(), self.compiled, strict=True)
            if path.name == file_name
        ]

    def loaded_ok(self) -> list[Path]:
        """The files whose load succeeded, in order (parallel to ``compiled``)."""
        return [path for path in self.loaded if path.name in self.models]

    def close(self) -> None:
        """Nothing to release."""
