"""The OpenVINO engine: read, lay out, reshape, compile, and run on ``nireq`` infer requests.

Inference runs on one worker thread per infer request (:mod:`.infer_lanes`), so the event loop
never blocks on a long inference. Models whose inferences take only tens of microseconds run
inline on the event loop instead: the hand-off to a worker thread and back costs more CPU than
the inference itself (measured: 38 vs 82 us per request on a tiny model).
"""

from __future__ import annotations

import ctypes
import logging
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import openvino as ov

from ovserve.config.model_config import ModelConfig
from ovserve.engine import code_pages, latency_probe
from ovserve.engine.base import CompiledModel, EngineResult, LoadStep
from ovserve.engine.bindings import prepare_bindings
from ovserve.engine.infer_lanes import InferLanes
from ovserve.engine.memory import (
    bound_onednn_cache,
    lower_thread_priority,
    with_runtime_cache_cap,
)
from ovserve.engine.model_preparation import (
    apply_preprocessing,
    apply_shape,
    compile_properties,
    datatype_of,
    first_error_line,
    from_partial_shape,
    layout_name,
    unknown_device,
)
from ovserve.engine.native_stderr import captured_native_stderr
from ovserve.engine.shape_variants import ShapeVariants
from ovserve.engine.variant_policy import ShapeKey
from ovserve.errors import ConfigError, InferenceFailed
from ovserve.tensors import TensorSpec

log = logging.getLogger(__name__)

ZERO_COPY_MIN_BYTES = 64 * 1024
"""Below this size, copying an immutable request buffer is cheaper than wrapping it."""

INLINE_BELOW_US = 200.0
"""Inferences expected to take less than this run inline on the event loop."""

_SMOOTHING = 0.1
"""Weight of the newest sample in the moving average of inference time."""


class OpenVINOEngine:
    """Compiles models with one shared ``ov.Core``."""

    def __init__(self) -> None:
        bound_onednn_cache()
        # Before any load or inference can run on another thread: see engine/bindings.py.
        prepare_bindings()
        self._core = ov.Core()
        self._background: ThreadPoolExecutor | None = None
        """One thread for variant builds and closes, shared by all models (started lazily)."""

    def load(
        self, model_file: Path, config: ModelConfig, on_step: LoadStep | None = None
    ) -> CompiledModel:
        """Read, apply layout, preprocessing and shape, choose the execution mode, compile,
        build the infer-request pool.

        ``on_step`` hears each step's name as it starts (read, reshape, probe, compile).
        """
        on_step = on_step or _no_steps
        on_step("read")
        model = self._read(model_file, config)
        on_step("reshape")
        if config.mapping:
            # Shape and layout keys may name inputs by their mapping_config.json aliases.
            real = config.mapping.real_input
            config = replace(
                config,
                shape={real(key): value for key, value in config.shape.items()},
                layout={real(key): value for key, value in config.layout.items()},
            )
        model = apply_preprocessing(model, config)
        apply_shape(model, config)
        properties = with_runtime_cache_cap(compile_properties(config), config.target_device)
        if latency_probe.may_tune(config.plugin_config, config.target_device):
            on_step("probe")
            properties = self._choose_mode(model, config, properties)
        on_step("compile")
        compiled = self._compile(model, config, properties)
        served = OpenVINOCompiledModel(compiled, config, model)
        code_pages.release_after_load()
        if not _has_dynamic_input(compiled) or not (
            config.variants.enabled or config.variants.idle_release_seconds > 0
        ):
            return served
        return ShapeVariants(
            config.name,
            served,
            build=partial(self._compile_variant, model, config, properties),
            config=config.variants,
            background=self._background_executor(),
        )

    def _compile_variant(
        self, model: ov.Model, config: ModelConfig, properties: dict[str, Any], key: ShapeKey
    ) -> OpenVINOCompiledModel:
        """The read model compiled for one static shape per input, as the dynamic one was."""
        static = model.clone()
        try:
            static.reshape(
                {
                    static.input(index): ov.PartialShape(list(shape))
                    for index, shape in enumerate(key)
                }
            )
        except RuntimeError as error:
            raise ConfigError(f"cannot reshape: {first_error_line(error)}") from None
        return OpenVINOCompiledModel(self._compile(static, config, properties), config, static)

    def _background_executor(self) -> ThreadPoolExecutor:
        if self._background is None:
            self._background = ThreadPoolExecutor(
                1, thread_name_prefix="shape-variants", initializer=lower_thread_priority
            )
        return self._background

    def _read(self, model_file: Path, config: ModelConfig) -> ov.Model:
        """Read the file; a corrupt one gives one clear error, not the parsers' own output."""
        with captured_native_stderr() as parser_output:
            try:
                model = self._core.read_model(str(model_file))
            except RuntimeError:
                model = None
        if model is None:
            log.debug("Reading %s printed: %s", model_file, parser_output.text.strip())
            raise ConfigError(
                f"Model {config.name}: cannot read model file {model_file.name}: "
                "the file is corrupt or not an OpenVINO IR/ONNX model"
            )
        parser_output.pass_through()
        return model

    def _choose_mode(
        self, model: ov.Model, config: ModelConfig, properties: dict[str, Any]
    ) -> dict[str, Any]:
        """LATENCY on one thread for a small model (decided from the model, never timed)."""
        try:
            decision = latency_probe.decide(model)
        except Exception:  # the estimate is best effort: it must never fail a load
            log.debug("Model %s: cost estimate failed", config.name, exc_info=True)
            decision = latency_probe.Decision(False, "its cost could not be estimated")
        if decision.latency:
            log.info(
                "Model %s: compiled for latency on one thread (PERFORMANCE_HINT=LATENCY, "
                "INFERENCE_NUM_THREADS=1, not pinned to a core): %s; set PERFORMANCE_HINT in "
                "--plugin_config to choose otherwise",
                config.name,
                decision.reason,
            )
            return {**properties, **latency_probe.latency_properties(config.plugin_config)}
        log.info(
            "Model %s: compiled for throughput (OVMS's default): %s", config.name, decision.reason
        )
        return properties

    def _compile(
        self, model: ov.Model, config: ModelConfig, properties: dict[str, Any]
    ) -> ov.CompiledModel:
        try:
            return self._core.compile_model(model, config.target_device, properties)
        except RuntimeError as error:
            missing = unknown_device(self._core.available_devices, config.target_device)
            reason = (
                missing or f"cannot compile for {config.target_device}: {first_error_line(error)}"
            )
            raise ConfigError(f"Model {config.name}: {reason}") from None

    def close(self) -> None:
        """Finish background variant work; compiled models close themselves."""
        if self._background is not None:
            self._background.shutdown(wait=True)
            self._background = None


class OpenVINOCompiledModel:
    """A compiled model with ``nireq`` infer requests served by as many worker threads.

    Tensor names come from ``prepared``, the model as read, laid out and reshaped but not yet
    compiled, as OVMS takes them: compiling merges the names of tensors that an ``Identity``
    joins, so an ONNX output ``scores`` can show up as its producer's name there. Ports are
    matched by index, which compiling keeps.
    """

    def __init__(self, compiled: ov.CompiledModel, config: ModelConfig, prepared: ov.Model) -> None:
        self._compiled: ov.CompiledModel | None = compiled
        # Clients see mapping_config.json aliases; the name-to-index maps below then send
        # each alias to its real tensor.
        mapping = config.mapping
        self._inputs = tuple(
            TensorSpec(
                mapping.input_alias(set(port.get_names())) or port.get_any_name(),
                datatype_of(port.get_element_type()),
                from_partial_shape(port.get_partial_shape()),
                layout_name(port),
            )
            for port in prepared.inputs
        )
        self._outputs = tuple(
            TensorSpec(
                mapping.output_alias(set(port.get_names())) or port.get_any_name(),
                datatype_of(port.get_element_type()),
                from_partial_shape(port.get_partial_shape()),
            )
            for port in prepared.outputs
        )
        if len(self._inputs) != len(compiled.inputs) or len(self._outputs) != len(compiled.outputs):
            raise ConfigError(f"Model {config.name}: compiling changed the number of tensors")
        self._input_index = {spec.name: index for index, spec in enumerate(self._inputs)}
        self._output_index = {spec.name: index for index, spec in enumerate(self._outputs)}
        self._nireq = config.nireq or int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self._streams = _int_property(compiled, "NUM_STREAMS", default=1)
        self._lanes = InferLanes(
            [compiled.create_infer_request() for _ in range(self._nireq)],
            self._run,
            config.name,
            compiled.create_infer_request,
        )
        self._average_run_us = INLINE_BELOW_US * 4
        """Moving average of inference time; starts high, so the first calls use workers."""

    @property
    def inputs(self) -> Sequence[TensorSpec]:
        """Inputs in model order."""
        return self._inputs

    @property
    def outputs(self) -> Sequence[TensorSpec]:
        """Outputs in model order."""
        return self._outputs

    @property
    def nireq(self) -> int:
        """Size of the infer-request pool."""
        return self._nireq

    @property
    def streams(self) -> int:
        """Execution streams of the compiled model."""
        return self._streams

    async def infer(
        self, inputs: Mapping[str, npt.NDArray[Any]], outputs: Sequence[str] | None = None
    ) -> EngineResult:
        """Run on a free infer request: inline when inferences are short, else in a worker."""
        return await self._lanes.run(inputs, outputs, inline=self._average_run_us < INLINE_BELOW_US)

    def _run(
        self,
        request: ov.InferRequest,
        inputs: Mapping[str, npt.NDArray[Any]],
        outputs: Sequence[str] | None,
    ) -> dict[str, npt.NDArray[Any]]:
        for name, array in inputs.items():
            request.set_input_tensor(self._input_index[name], _as_ov_tensor(array))
        started = time.perf_counter()
        try:
            request.infer()
        except RuntimeError as error:
            # As OVMS: OpenVINO's text is for the operator's log; the client gets the code only.
            log.error("OpenVINO failed an inference: %s", first_error_line(error))
            raise InferenceFailed() from None
        elapsed_us = (time.perf_counter() - started) * 1e6
        # Written from worker threads and the loop alike; a lost update only delays a switch.
        self._average_run_us += _SMOOTHING * (elapsed_us - self._average_run_us)
        names = outputs if outputs is not None else [spec.name for spec in self._outputs]
        return {
            name: _output_array(request.get_output_tensor(self._output_index[name]))
            for name in names
        }

    async def release_memory(self) -> bool:
        """Give intermediate buffers back while no inference runs; False when busy.

        Requests that arrive meanwhile wait, as under load.
        """
        compiled = self._compiled
        if compiled is None:
            return False
        return await self._lanes.hold(compiled.release_memory)

    def close(self) -> None:
        """Wait for running inferences, then drop the requests and the compiled model."""
        if self._compiled is None:
            return
        self._lanes.close()
        self._compiled = None


def _no_steps(_: str) -> None:
    """The step listener when nobody is watching."""


def _has_dynamic_input(compiled: ov.CompiledModel) -> bool:
    return any(port.get_partial_shape().is_dynamic for port in compiled.inputs)


def _int_property(compiled: ov.CompiledModel, name: str, default: int) -> int:
    try:
        return int(compiled.get_property(name))
    except (RuntimeError, TypeError, ValueError):
        return default


def _as_ov_tensor(array: npt.NDArray[Any]) -> ov.Tensor:
    """Wrap an array without copying; read-only request buffers are wrapped in place too.

    OpenVINO only reads input tensors, so a large immutable buffer (protobuf bytes, an HTTP
    body) is exposed to it through a writable view of the same memory instead of copied.
    """
    # A shared tensor does not keep its numpy array alive: only arrays the caller holds may be
    # shared; temporaries (contiguous copies, small copies) must be copied into OpenVINO.
    if array.dtype == np.object_:
        # BYTES: OpenVINO string tensors take fixed-width bytes arrays.
        return ov.Tensor(np.array(array.tolist(), dtype=np.bytes_).reshape(array.shape))
    if array.flags.writeable or not array.flags.c_contiguous:
        return ov.Tensor(np.ascontiguousarray(array), shared_memory=array.flags.c_contiguous)
    if array.nbytes < ZERO_COPY_MIN_BYTES:
        return ov.Tensor(array)
    address = array.__array_interface__["data"][0]
    buffer = (ctypes.c_char * array.nbytes).from_address(address)
    view = np.frombuffer(memoryview(buffer).cast("B"), dtype=array.dtype).reshape(array.shape)
    return ov.Tensor(view, shared_memory=True)


def _output_array(tensor: ov.Tensor) -> npt.NDArray[Any]:
    """A copy of an output, owned by the caller (the infer request reuses its buffers)."""
    if tensor.get_element_type() == ov.Type.string:
        values = tensor.bytes_data
        return np.array(list(values.reshape(-1)), dtype=np.object_).reshape(values.shape)
    copied: npt.NDArray[Any] = tensor.data.copy()
    return copied
