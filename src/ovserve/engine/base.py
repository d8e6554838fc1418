"""The engine seam: what the serving core needs from an inference runtime."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

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


@dataclass(frozen=True, slots=True)
class VariantStats:
    """Shape-variant counts of one model version, for metrics."""

    compiled: int
    evicted: int
    failed: int
    served: int
    live: int


@runtime_checkable
class ReportsVariants(Protocol):
    """A compiled model that may run on static shape variants (or wraps one that does).

    Wrappers (dynamic batching) forward it, so serving code asks the model it holds instead of
    looking through layers for a particular class.
    """

    @property
    def variant_stats(self) -> VariantStats | None:
        """Counts of the variants; None when the model has none."""


@runtime_checkable
class Probeable(Protocol):
    """A compiled model that keeps books on its traffic (shape counts, idle timers).

    A load-time probe is not traffic: it runs on ``probe_model``, the same computation without
    that bookkeeping, so it cannot ask for a shape variant nobody sends nor arm timers on the
    short-lived event loop the probe runs in.
    """

    @property
    def probe_model(self) -> CompiledModel:
        """The model to run probes on."""


@runtime_checkable
class BatchedFromAbove(Protocol):
    """A compiled model that can be told requests reach it batched (dynamic batching wraps it).

    Batched shapes vary with the load (a batch of 3, then 6, then 2), so a model keeping static
    shape variants would compile, evict and compile again; told this, only single-row shapes
    (what one request sends) earn variants and batches run on the dynamic model.
    """

    def batched_from_above(self) -> None:
        """Requests may arrive batched from now on."""


def tell_batched_from_above(model: CompiledModel) -> None:
    """Tell ``model`` (if it cares) that a batching layer now sits above it."""
    if isinstance(model, BatchedFromAbove):
        model.batched_from_above()


def variant_stats_of(model: CompiledModel) -> VariantStats | None:
    """``model``'s shape-variant counts, or None when it has no variants."""
    return model.variant_stats if isinstance(model, ReportsVariants) else None


def probe_model_of(model: CompiledModel) -> CompiledModel:
    """The model a load-time probe should run on (``model`` itself unless it keeps books)."""
    return model.probe_model if isinstance(model, Probeable) else model
