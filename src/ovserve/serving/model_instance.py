"""One served version of a model: its state machine, validation and inference."""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ovserve.config.model_config import ModelConfig
from ovserve.engine.base import CompiledModel, InferenceEngine, TensorSpec
from ovserve.errors import ModelNotReady, ModelRetired, OvserveError
from ovserve.serving.binary_inputs import decode_binary_inputs
from ovserve.serving.validation import validate_inputs, validate_outputs
from ovserve.tensors import InferResult, RequestTensor

log = logging.getLogger(__name__)


class ModelVersionState(enum.Enum):
    """OVMS's version states, with TF Serving's numeric values."""

    START = 10
    LOADING = 20
    AVAILABLE = 30
    UNLOADING = 40
    END = 50


@dataclass(frozen=True, slots=True)
class VersionStatus:
    """A version's state and the error that put it there, if any."""

    version: int
    state: ModelVersionState
    error: str = ""


class ModelInstance:
    """One version: START → LOADING → AVAILABLE → UNLOADING → END."""

    def __init__(
        self, config: ModelConfig, version: int, model_file: Path, engine: InferenceEngine
    ) -> None:
        self.config = config
        self.version = version
        self.model_file = model_file
        self._engine = engine
        self._compiled: CompiledModel | None = None
        self.state = ModelVersionState.START
        self.error = ""
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def name(self) -> str:
        """The served model name."""
        return self.config.name

    @property
    def status(self) -> VersionStatus:
        """State and error for status APIs."""
        return VersionStatus(self.version, self.state, self.error)

    @property
    def is_available(self) -> bool:
        """True when requests can run."""
        return self.state is ModelVersionState.AVAILABLE

    @property
    def compiled(self) -> CompiledModel:
        """The compiled model; only valid while AVAILABLE."""
        if self._compiled is None:
            raise ModelNotReady()
        return self._compiled

    @property
    def inputs(self) -> Sequence[TensorSpec]:
        """Model inputs as clients see them."""
        return self.compiled.inputs

    @property
    def outputs(self) -> Sequence[TensorSpec]:
        """Model outputs as clients see them."""
        return self.compiled.outputs

    async def load(self) -> None:
        """Compile off the event loop; on failure the version ends with its error recorded."""
        self.state = ModelVersionState.LOADING
        try:
            self._compiled = await asyncio.to_thread(
                self._engine.load, self.model_file, self.config
            )
        except OvserveError as error:
            self.state = ModelVersionState.END
            self.error = error.text
            log.error("Model %s version %d failed to load: %s", self.name, self.version, error.text)
            return
        self.state = ModelVersionState.AVAILABLE
        self._log_loaded(self._compiled)

    def _log_loaded(self, compiled: CompiledModel) -> None:
        def describe(specs: Sequence[TensorSpec]) -> str:
            return ", ".join(f"{spec.name} {spec.datatype.value} {spec.shape}" for spec in specs)

        log.info(
            "Loaded model %s version %d from %s on %s: nireq %d, streams %d; inputs: %s; "
            "outputs: %s",
            self.name,
            self.version,
            self.model_file,
            self.config.target_device,
            compiled.nireq,
            compiled.streams,
            describe(compiled.inputs),
            describe(compiled.outputs),
        )

    async def infer(
        self, tensors: Sequence[RequestTensor], outputs: Sequence[str] | None = None
    ) -> InferResult:
        """Validate and run one request."""
        compiled = self._require_available()
        tensors = decode_binary_inputs(compiled.inputs, tensors)
        arrays = validate_inputs(compiled.inputs, tensors)
        validate_outputs(compiled.outputs, outputs)
        self._in_flight += 1
        self._idle.clear()
        try:
            result = await compiled.infer(arrays, outputs)
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()
        return InferResult(
            self.name,
            self.version,
            result.outputs,
            wait_us=result.wait_us,
            infer_us=result.infer_us,
        )

    def _require_available(self) -> CompiledModel:
        if self.state is ModelVersionState.AVAILABLE and self._compiled is not None:
            return self._compiled
        if self.state in (ModelVersionState.START, ModelVersionState.LOADING):
            raise ModelNotReady()
        raise ModelRetired()

    async def unload(self) -> None:
        """Stop taking requests, wait for in-flight ones, then release the engine's model."""
        if self.state is ModelVersionState.END:
            return
        self.state = ModelVersionState.UNLOADING
        await self._idle.wait()
        compiled, self._compiled = self._compiled, None
        if compiled is not None:
            await asyncio.to_thread(compiled.close)
        self.state = ModelVersionState.END
        log.info("Unloaded model %s version %d", self.name, self.version)

    def close_now(self) -> None:
        """Release synchronously (shutdown path, after servers stopped)."""
        compiled, self._compiled = self._compiled, None
        if compiled is not None:
            compiled.close()
        self.state = ModelVersionState.END
