"""A dynamic compiled model that runs repeated request shapes on static variants of itself.

Real traffic is mostly a few shapes, and a model compiled for one static shape runs it faster
than the dynamic compilation does. :class:`ShapeVariants` wraps the dynamic model: it counts
request shapes (:mod:`variant_policy` decides), builds a static variant of a repeated shape in
a background thread while the dynamic model keeps serving, then sends requests of exactly that
shape to the variant. Clients see nothing else: inputs, outputs and errors are the dynamic
model's (requests were validated against its specs before they get here).

It also gives memory back when the model goes idle (:mod:`memory`): every compiled model
releases its intermediate buffers while holding all of its infer requests, so no inference is
ever running during a release; requests that arrive meanwhile wait for a request as usual.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy.typing as npt

from ovserve import heap
from ovserve.config.variants import VariantConfig
from ovserve.engine import memory
from ovserve.engine.base import CompiledModel, EngineResult, VariantStats
from ovserve.engine.variant_policy import ShapeKey, VariantCounts, VariantPolicy
from ovserve.errors import OvserveError
from ovserve.tensors import TensorSpec

log = logging.getLogger(__name__)

CLOSE_WAIT_SECONDS = 60.0
"""How long closing waits for a build or a memory release under way."""


class ReleasableModel(CompiledModel, Protocol):
    """A compiled model that can give its intermediate buffers back."""

    async def release_memory(self) -> bool:
        """Release buffers while no inference runs; False (nothing done) when busy."""


@dataclass(slots=True)
class _Variant:
    model: ReleasableModel
    users: int = 0
    retired: bool = False


class ShapeVariants:
    """The dynamic model plus static variants for repeated shapes; a CompiledModel itself."""

    def __init__(
        self,
        name: str,
        dynamic: ReleasableModel,
        *,
        build: Callable[[ShapeKey], ReleasableModel],
        config: VariantConfig,
        background: concurrent.futures.Executor,
        trim: Callable[[], bool] = heap.malloc_trim,
    ) -> None:
        self._name = name
        self._dynamic = dynamic
        self._build = build
        self._config = config
        self._background = background
        self._trim = trim
        self._names = tuple(spec.name for spec in dynamic.inputs)
        self._policy: VariantPolicy[_Variant] = VariantPolicy(config)
        self._lock = threading.Lock()
        self._closed = False
        self._pending: concurrent.futures.Future[ReleasableModel] | None = None
        self._in_flight = 0
        self._dynamic_used = False
        self._single_rows_only = False
        self._released = threading.Event()
        self._released.set()
        self._idle = (
            memory.IdleTimer(config.idle_release_seconds, self.release_memory, self._busy)
            if config.idle_release_seconds > 0
            else None
        )

    # --- CompiledModel -------------------------------------------------------------------------

    @property
    def inputs(self) -> Sequence[TensorSpec]:
        """The dynamic model's inputs."""
        return self._dynamic.inputs

    @property
    def outputs(self) -> Sequence[TensorSpec]:
        """The dynamic model's outputs."""
        return self._dynamic.outputs

    @property
    def nireq(self) -> int:
        """The dynamic model's pool size (each variant has one as large)."""
        return self._dynamic.nireq

    @property
    def streams(self) -> int:
        """The dynamic model's streams."""
        return self._dynamic.streams

    @property
    def variant_stats(self) -> VariantStats:
        """Counts for metrics (:class:`~ovserve.engine.base.ReportsVariants`)."""
        counts: VariantCounts = self._policy.counts
        return VariantStats(
            counts.compiled, counts.evicted, counts.failed, counts.served, len(self._policy)
        )

    @property
    def probe_model(self) -> CompiledModel:
        """The dynamic model: probes are not traffic (:class:`~ovserve.engine.base.Probeable`)."""
        return self._dynamic

    def batched_from_above(self) -> None:
        """Only single-row shapes earn variants from now on (batched ones vary with the load)."""
        self._single_rows_only = True

    @property
    def variant_shapes(self) -> list[ShapeKey]:
        """Shapes that have a variant now, least recently served first."""
        return self._policy.keys()

    async def infer(
        self, inputs: Mapping[str, npt.NDArray[Any]], outputs: Sequence[str] | None = None
    ) -> EngineResult:
        """Run on the variant for this exact shape if there is one, else on the dynamic model."""
        key = self._key(inputs)
        variant = self._policy.lookup(key) if key is not None else None
        self._in_flight += 1
        try:
            if variant is not None:
                variant.users += 1
                try:
                    return await variant.model.infer(inputs, outputs)
                finally:
                    variant.users -= 1
                    if variant.retired and variant.users == 0:
                        self._close_later(variant.model)
            self._dynamic_used = True
            result = await self._dynamic.infer(inputs, outputs)
            if key is not None and self._counts(key) and self._policy.observe(key):
                self._start_build(key)
            return result
        finally:
            self._in_flight -= 1
            if self._idle is not None:
                self._idle.touch()

    def _counts(self, key: ShapeKey) -> bool:
        """Whether a request of this shape counts towards a variant."""
        return not self._single_rows_only or all(shape[:1] == (1,) for shape in key)

    def _key(self, inputs: Mapping[str, npt.NDArray[Any]]) -> ShapeKey | None:
        try:
            return tuple(inputs[name].shape for name in self._names)
        except KeyError:
            return None

    # --- building and evicting -----------------------------------------------------------------

    def _start_build(self, key: ShapeKey) -> None:
        with self._lock:
            if self._closed:
                return
            future = self._pending = self._background.submit(self._build, key)
        loop = asyncio.get_running_loop()
        future.add_done_callback(lambda done: _call_soon(loop, self._on_built, key, done))

    def _on_built(self, key: ShapeKey, future: concurrent.futures.Future[ReleasableModel]) -> None:
        with self._lock:
            if self._closed:
                return  # close() owns the result
            self._pending = None
            error = future.exception()
            if error is not None:
                self._policy.failed(key)
                text = error.text if isinstance(error, OvserveError) else repr(error)
                log.warning(
                    "Model %s: no static variant for shape %s (the dynamic model keeps serving "
                    "it): %s",
                    self._name,
                    _shape_text(key),
                    text,
                )
                return
            evicted = self._policy.built(key, _Variant(future.result()))
        log.info(
            "Model %s: compiled a static variant for shape %s; requests of that shape now run "
            "on it (%d of at most %d variants)",
            self._name,
            _shape_text(key),
            len(self._policy),
            self._config.max_variants,
        )
        for old_key, old in evicted:
            log.info(
                "Model %s: evicted the static variant for shape %s (least recently used)",
                self._name,
                _shape_text(old_key),
            )
            old.retired = True
            if old.users == 0:
                self._close_later(old.model)

    def _close_later(self, model: ReleasableModel) -> None:
        with contextlib.suppress(RuntimeError):  # the executor shut down: closing anyway
            self._background.submit(model.close)

    # --- memory --------------------------------------------------------------------------------

    def _busy(self) -> bool:
        return self._in_flight > 0

    async def release_memory(self) -> bool:
        """Give back intermediate buffers of every compiled model, then free heap pages.

        Each model releases only while it holds all of its infer requests; a model that is
        busy is skipped. Returns True when anything was released.
        """
        if self._closed or not self._released.is_set():
            return False
        self._released.clear()
        try:
            # Cleared first: a request that starts during the release marks it again.
            dynamic_used, self._dynamic_used = self._dynamic_used, False
            models = [self._dynamic] if dynamic_used else []
            models += [variant.model for variant in self._policy.values() if not variant.retired]
            released = [await model.release_memory() for model in models]
            if dynamic_used and not released[0]:
                self._dynamic_used = True
            if any(released):
                trimmed = await asyncio.to_thread(self._trim)
                log.debug(
                    "Model %s: idle, released memory of %d compiled model(s)%s",
                    self._name,
                    sum(released),
                    ", trimmed the heap" if trimmed else "",
                )
            return any(released)
        finally:
            self._released.set()

    # --- closing -------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the dynamic model and every variant, waiting for a build under way; idempotent.

        Called off the event loop once no request is in flight (the version unloads).
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pending, self._pending = self._pending, None
            variants = self._policy.clear()
        if self._idle is not None:
            self._idle.cancel()
        self._released.wait(CLOSE_WAIT_SECONDS)
        if pending is not None:
            with contextlib.suppress(Exception):  # a failed build has nothing to close
                pending.result(CLOSE_WAIT_SECONDS).close()
        for variant in variants:
            variant.model.close()
        self._dynamic.close()


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Any, *args: Any) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is gone: close() cleans up
        loop.call_soon_threadsafe(callback, *args)


def _shape_text(key: ShapeKey) -> str:
    return ", ".join("(" + ",".join(str(size) for size in shape) + ")" for shape in key)
