"""One served version of a model: its state machine, validation and inference.

Lifecycle verbs, the same at every level (instance, model, manager, server): ``load`` compiles,
``reload`` replaces with a new compile, ``retire`` stops taking requests and releases once those
in flight are done, ``close`` releases at once (the last step of shutdown).

Requests count themselves in flight while they run, so retiring (and an ``auto`` reshape)
can wait for them. An ``auto`` reshape also closes a gate that makes newly arriving requests
wait (at most :data:`WAIT_FOR_LOADED_SECONDS`) instead of failing.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from ovserve.config.mapping import read_mapping
from ovserve.config.model_config import ModelConfig
from ovserve.engine.base import CompiledModel, InferenceEngine
from ovserve.errors import ConfigError, ModelNotReady, ModelRetired, OvserveError, ReshapeFailed
from ovserve.serving.auto_shape import AutoShape, Reshape, uses_auto
from ovserve.serving.binary_inputs import decode_binary_inputs
from ovserve.serving.load_watchdog import LoadTracker
from ovserve.serving.validation import validate_inputs, validate_outputs
from ovserve.tensors import InferResult, RequestTensor, TensorSpec

log = logging.getLogger(__name__)

WAIT_FOR_LOADED_SECONDS = 10.0
"""How long a request waits for a reshaping version (OVMS's
``DEFAULT_WAIT_FOR_MODEL_LOADED_TIMEOUT_MS``)."""


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
        self,
        config: ModelConfig,
        version: int,
        model_file: Path,
        engine: InferenceEngine,
        tracker: LoadTracker | None = None,
    ) -> None:
        self.config = config
        self.version = version
        self.model_file = model_file
        self._engine = engine
        self._tracker = tracker or LoadTracker()
        self._compiled: CompiledModel | None = None
        self.state = ModelVersionState.START
        self.error = ""
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._auto: AutoShape | None = None
        self._loaded_config = config
        """The config the current compiled model was built from (concrete shapes after a
        reshape, the version folder's mapping)."""
        self._gate = asyncio.Event()
        self._gate.set()
        self._reshape_lock = asyncio.Lock()

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
    def in_flight(self) -> int:
        """Requests running on this version now."""
        return self._in_flight

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
            with self._tracker.track(self.name, self.version) as on_step:
                mapping = await asyncio.to_thread(read_mapping, self.model_file.parent)
                config = replace(self.config, mapping=mapping)
                if uses_auto(config) and not config.allow_cache:
                    # OVMS keeps auto-shaped models out of the cache: each reshape would add one.
                    config = replace(config, cache_dir=None)
                self._compiled = await asyncio.to_thread(
                    self._engine.load, self.model_file, config, on_step
                )
        except Exception as error:  # any failure must end this version only, not the server
            self.state = ModelVersionState.END
            self.error = _public_text(error)
            log.error(
                "Model %s version %d failed to load: %s", self.name, self.version, _log_text(error)
            )
            return
        self._loaded_config = config
        self._auto = AutoShape.of(config)
        self.state = ModelVersionState.AVAILABLE
        self._log_loaded(self._compiled)

    def _log_loaded(self, compiled: CompiledModel) -> None:
        log.info(
            "Loaded model %s version %d from %s on %s: nireq %d, streams %d; inputs: %s; "
            "outputs: %s",
            self.name,
            self.version,
            self.model_file,
            self.config.target_device,
            compiled.nireq,
            compiled.streams,
            _describe(compiled.inputs),
            _describe(compiled.outputs),
        )

    async def infer(
        self, tensors: Sequence[RequestTensor], outputs: Sequence[str] | None = None
    ) -> InferResult:
        """Validate and run one request (reshaping first when an ``auto`` input needs it)."""
        compiled = await self._enter()
        entered = True
        try:
            tensors = await decode_binary_inputs(compiled.inputs, tensors)
            if self._auto is not None and self._auto.target(compiled.inputs, tensors) is not None:
                self._leave()
                entered = False
                compiled = await self._reshape_and_enter(tensors)
                entered = True
            arrays = validate_inputs(compiled.inputs, tensors)
            validate_outputs(compiled.outputs, outputs)
            result = await compiled.infer(arrays, outputs)
        finally:
            if entered:
                self._leave()
        return InferResult(
            self.name,
            self.version,
            result.outputs,
            wait_us=result.wait_us,
            infer_us=result.infer_us,
        )

    async def _enter(self) -> CompiledModel:
        """Count a request in flight; wait (bounded) while a reshape holds the gate."""
        if not self._gate.is_set():
            try:
                await asyncio.wait_for(self._gate.wait(), WAIT_FOR_LOADED_SECONDS)
            except TimeoutError:
                raise ModelNotReady() from None
        compiled = self._require_available()
        self._count_in()
        return compiled

    def _count_in(self) -> None:
        self._in_flight += 1
        self._idle.clear()

    def _leave(self) -> None:
        self._in_flight -= 1
        if self._in_flight == 0:
            self._idle.set()

    def _require_available(self) -> CompiledModel:
        if self.state is ModelVersionState.AVAILABLE and self._compiled is not None:
            return self._compiled
        if self.state in (ModelVersionState.START, ModelVersionState.LOADING):
            raise ModelNotReady()
        raise ModelRetired()

    async def _reshape_and_enter(self, tensors: Sequence[RequestTensor]) -> CompiledModel:
        """Reshape to the request's shapes (unless another request just did) and enter.

        The caller is counted in flight before the gate opens, so it runs on the shape it asked
        for before any other reshape can start.
        """
        try:
            await asyncio.wait_for(self._reshape_lock.acquire(), WAIT_FOR_LOADED_SECONDS)
        except TimeoutError:
            raise ModelNotReady() from None
        try:
            compiled = self._require_available()
            assert self._auto is not None
            target = self._auto.target(compiled.inputs, tensors)
            if target is not None:
                self._gate.clear()
                try:
                    await self._idle.wait()
                    compiled = await self._reshape(target)
                finally:
                    self._gate.set()
            self._count_in()
            return compiled
        finally:
            self._reshape_lock.release()

    async def _reshape(self, reshape: Reshape) -> CompiledModel:
        """Compile for new shapes; on failure the current compiled model stays in service."""
        assert self._auto is not None
        assert self._compiled is not None
        config = self._auto.apply(self._loaded_config, reshape)
        log.info("Model %s version %d: reshaping to %s", self.name, self.version, reshape)
        try:
            compiled = await asyncio.to_thread(self._engine.load, self.model_file, config)
        except Exception as error:  # a failed reshape keeps the previous model serving
            text = error.text if isinstance(error, OvserveError) else repr(error)
            log.error(
                "Model %s version %d could not be reshaped to %s, keeping the previous shape: %s",
                self.name,
                self.version,
                reshape,
                text,
            )
            raise ReshapeFailed() from None
        previous, self._compiled = self._compiled, compiled
        self._loaded_config = config
        await asyncio.to_thread(previous.close)
        self._log_loaded(compiled)
        return compiled

    async def retire(self) -> None:
        """Stop taking requests, wait for in-flight ones, then release the engine's model."""
        if self.state is ModelVersionState.END:
            return
        self.state = ModelVersionState.UNLOADING
        async with self._reshape_lock:  # a reshape under way finishes first
            await self._idle.wait()
            compiled, self._compiled = self._compiled, None
            if compiled is not None:
                await asyncio.to_thread(compiled.close)
        if self.state is ModelVersionState.UNLOADING:
            self.state = ModelVersionState.END
            log.info("Unloaded model %s version %d", self.name, self.version)

    def close(self) -> None:
        """Release synchronously (shutdown path, after servers stopped)."""
        compiled, self._compiled = self._compiled, None
        if compiled is not None:
            compiled.close()
        self.state = ModelVersionState.END


def _public_text(error: Exception) -> str:
    """What status replies may say about a failed load: never a filesystem path."""
    if isinstance(error, OvserveError):
        return error.text
    if isinstance(error, OSError):
        return f"Cannot read the model files: {error.strerror or type(error).__name__}"
    return f"Unexpected {type(error).__name__} while loading (details in the server log)"


def _log_text(error: Exception) -> str:
    if isinstance(error, ConfigError):
        return error.log_text
    return error.text if isinstance(error, OvserveError) else repr(error)


def _describe(specs: Sequence[TensorSpec]) -> str:
    return ", ".join(f"{spec.name} {spec.datatype.value} {spec.shape}" for spec in specs)
