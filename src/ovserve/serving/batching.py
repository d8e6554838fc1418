"""Dynamic batching: concurrent same-shape requests to one version run as one inference.

Why: inside a busy server each OpenVINO call costs far more CPU than the arithmetic (waking its
threads, cold caches), and a model with a dynamic batch dimension computes 8 rows for about what
it computes 1 (measured: 23.8 vs 23.9 us on the tiny model). So requests that are *already
waiting* are concatenated along the batch dimension, run once and split back.

It is opportunistic: a request never waits for company unless ``max_queue_delay_us`` says so.
A request that finds the model idle (no delay configured, nothing queued, a free infer request,
no other request run at once earlier in this turn of the event loop, batches not forming) runs
at once in its own coroutine, as if there were no batcher: one request in flight costs no extra
loop turn and no task. Otherwise it queues: while every infer request of the model is busy, for
the rest of a loop turn in which a request ran at once (the requests a busy loop reads in one
turn arrive together: the first runs at once, the others join the next batch, even when
inferences are short enough to run inline), and while batches keep forming (under load every
request queues, so a turn's requests all go and are answered together; a few batches of one in
a row end that). The next free slot takes all the queued requests of one kind together, up to
``max_batch_size`` rows, in a task of its own (a cancelled request never cancels its batch).
Requests of different kinds are never mixed: the kind is the non-batch shape and datatype of
every input plus the requested outputs, and each version has its own compiled model and so its
own batcher.

Validation happens per request before this (in ModelInstance), so a bad request fails alone.
When a batched inference fails, or its outputs do not have the batch's rows, each request of the
batch is run on its own, so every request gets exactly its own answer or its own error.

It wraps the engine seam (:class:`BatchingEngine` returns a :class:`BatchingModel` around each
compiled model), so the serving core and the front-ends are unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ovserve.config.batching import BatchingConfig
from ovserve.config.model_config import ModelConfig
from ovserve.config.shape import Dimension
from ovserve.engine.base import (
    CompiledModel,
    EngineResult,
    InferenceEngine,
    LoadStep,
    VariantStats,
    probe_model_of,
    tell_batched_from_above,
    variant_stats_of,
)
from ovserve.tensors import DataType, TensorSpec

log = logging.getLogger(__name__)

COMPUTE_BOUND_ROW_US = 3000.0
"""Above this inference time per row, ``auto`` batching steps aside: what a batch saves is the
per-call overhead (~100 us in a busy server), a few percent of such an inference, while joining
the inputs costs a copy (measured on a conv model with a 602 KB input, 1-4 ms per inference, on
one core: 158-168 req/s batched vs 172-177 unbatched). The bar is high so that a short model
on a busy machine (threads preempted mid-inference) is not mistaken for a long one."""

LONE_BATCHES_END_GATHERING = 4
"""Once batches form, requests queue until this many queued requests in a row came alone.
One is not enough: under load (REST, 8 clients) a batch of one now and then is common, and a
request answered at once, ahead of the others of its turn, breaks up the next batches (measured
in 24 paired runs: 3.69 vs 3.85 requests per inference and ~10% more CPU per request than
always queueing)."""

_SMOOTHING = 0.1

Arrays = Mapping[str, npt.NDArray[Any]]
Key = tuple[object, ...]
"""What requests must share to go in one batch (non-batch shapes, dtypes, requested outputs)."""


def batch_rows_limit(
    inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec], config: BatchingConfig
) -> tuple[int, str]:
    """Most rows one batch may hold (below 2: no batching) and a reason for the log.

    Provably safe (the default) means every input and every output has a non-static leading
    dimension; ``enabled=True`` needs it of the inputs only (the outputs are checked on every
    batch). BYTES tensors and scalars never batch.
    """
    if config.enabled is False:
        return 0, "off by configuration"
    if not inputs:
        return 0, "the model has no inputs"
    tensors = [*inputs, *outputs] if config.enabled is None else list(inputs)
    upper = config.max_batch_size
    for spec in tensors:
        if spec.datatype is DataType.BYTES:
            return 0, f"{spec.name} is BYTES"
        if spec.shape.rank == 0 or spec.shape.dims[0].is_static:
            return 0, f"{spec.name} has no dynamic leading batch dimension ({spec.shape})"
        if spec.layout and "N" in spec.layout and not spec.layout.startswith("N"):
            return 0, f"{spec.name}'s batch dimension is not the first ({spec.layout})"
        bound = spec.shape.dims[0].upper
        if bound is not None:
            upper = min(upper, bound)
    if upper < 2:
        return 0, "the batch dimension allows at most 1"
    return upper, f"up to {upper} rows"


class BatchStats:
    """Batch sizes (in requests) per model version, for the metrics' histogram."""

    def __init__(self) -> None:
        self.sizes: dict[tuple[str, int], dict[int, int]] = {}
        """(model, version) → {requests in a batch: inferences of that size}."""

    def record(self, name: str, version: int, requests: int) -> None:
        """Count one inference that ran ``requests`` requests."""
        counts = self.sizes.get((name, version))
        if counts is None:
            counts = self.sizes[(name, version)] = {}
        counts[requests] = counts.get(requests, 0) + 1


@dataclass(slots=True)
class _Item:
    inputs: Arrays
    rows: int
    future: asyncio.Future[EngineResult]
    queued: float
    """perf_counter() when it was queued: its wait is reported with the engine's."""


@dataclass(slots=True)
class _Queue:
    outputs: Sequence[str] | None
    items: deque[_Item] = field(default_factory=deque)
    rows: int = 0


class BatchingModel:
    """A compiled model that runs concurrent same-kind requests as one inference."""

    def __init__(
        self,
        inner: CompiledModel,
        max_rows: int,
        max_delay_us: int,
        require_output_rows: bool,
        record: Callable[[int], None],
        *,
        adaptive: bool = True,
    ) -> None:
        self._inner = inner
        self._max_rows = max_rows
        self._delay = max_delay_us / 1e6
        self._check_outputs = require_output_rows
        self._adaptive = adaptive
        self._row_us = 0.0
        """Moving average of inference time per row (measured on every run)."""
        self._record = record
        self._queues: dict[Key, _Queue] = {}
        self._running = 0
        self._slots = max(inner.nireq, 1)
        self._scheduled: asyncio.Handle | asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._started_this_turn = False
        """A request ran at once in this turn of the event loop (cleared at the next turn)."""
        self._gathering = False
        """Batches are forming (load is on): every request queues, so that the requests a
        loop turn reads run together and are answered together."""
        self._lone = 0
        """Batches of one taken from the queue in a row (enough of them end ``_gathering``)."""

    @property
    def inputs(self) -> Sequence[TensorSpec]:
        """Inputs in model order."""
        return self._inner.inputs

    @property
    def outputs(self) -> Sequence[TensorSpec]:
        """Outputs in model order."""
        return self._inner.outputs

    @property
    def nireq(self) -> int:
        """Size of the infer-request pool."""
        return self._inner.nireq

    @property
    def streams(self) -> int:
        """Execution streams of the compiled model."""
        return self._inner.streams

    @property
    def max_rows(self) -> int:
        """Most rows one batch holds."""
        return self._max_rows

    @property
    def variant_stats(self) -> VariantStats | None:
        """The wrapped model's shape-variant counts, if it has variants."""
        return variant_stats_of(self._inner)

    @property
    def probe_model(self) -> CompiledModel:
        """What the wrapped model runs probes on."""
        return probe_model_of(self._inner)

    async def infer(self, inputs: Arrays, outputs: Sequence[str] | None = None) -> EngineResult:
        """Run at once if the model is idle, else queue with others of its kind; return its own
        slice of the result."""
        rows = _rows(inputs)
        if rows is None or rows >= self._max_rows:
            return await self._inner.infer(inputs, outputs)
        if self._compute_bound():
            result = await self._inner.infer(inputs, outputs)
            self._measured(result, rows)  # keeps measuring: the model may turn out short
            return result
        loop = asyncio.get_running_loop()
        if (
            not self._delay
            and not self._queues
            and not self._gathering
            and not self._started_this_turn
            and self._running < self._slots
        ):
            return await self._run_now(loop, inputs, outputs, rows)
        key = _key(inputs, outputs)
        item = _Item(inputs, rows, loop.create_future(), time.perf_counter())
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = _Queue(outputs)
        queue.items.append(item)
        queue.rows += rows
        self._schedule(loop, full=queue.rows >= self._max_rows)
        return await item.future

    async def _run_now(
        self,
        loop: asyncio.AbstractEventLoop,
        inputs: Arrays,
        outputs: Sequence[str] | None,
        rows: int,
    ) -> EngineResult:
        """Run a request that found the model idle, in the caller's own coroutine."""
        self._running += 1
        self._mark_started(loop)
        try:
            result = await self._inner.infer(inputs, outputs)
        finally:
            self._running -= 1
            if self._queues:  # requests that came while it ran
                self._schedule(loop)
        self._measured(result, rows)
        self._record(1)
        return result

    def _mark_started(self, loop: asyncio.AbstractEventLoop) -> None:
        """Note that a request ran at once in this loop turn: later arrivals of the turn queue."""
        if not self._started_this_turn:
            self._started_this_turn = True
            loop.call_soon(self._next_turn)

    def _next_turn(self) -> None:
        self._started_this_turn = False

    def _compute_bound(self) -> bool:
        """Whether a row takes so long that batching saves nothing worth a copy (auto mode)."""
        return self._adaptive and self._row_us > COMPUTE_BOUND_ROW_US

    def _measured(self, result: EngineResult, rows: int) -> None:
        """Average the runtime's own time per row (a slow first call fades out)."""
        self._row_us += _SMOOTHING * (result.infer_us / rows - self._row_us)

    def _schedule(self, loop: asyncio.AbstractEventLoop, full: bool = False) -> None:
        """Arrange a flush: next loop turn, or after the delay unless a batch is full."""
        if self._running >= self._slots:
            return  # a finishing batch flushes
        if self._scheduled is not None:
            if not (full and isinstance(self._scheduled, asyncio.TimerHandle)):
                return
            self._scheduled.cancel()
        if self._delay and not full:
            self._scheduled = loop.call_later(self._delay, self._flush)
        else:
            self._scheduled = loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = None
        while self._running < self._slots:
            batch, outputs = self._take()
            if not batch:
                return
            if len(batch) > 1:
                self._gathering, self._lone = True, 0
            else:
                self._lone += 1
                self._gathering = self._gathering and self._lone < LONE_BATCHES_END_GATHERING
            self._running += 1
            task = asyncio.get_running_loop().create_task(self._run(batch, outputs))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _take(self) -> tuple[list[_Item], Sequence[str] | None]:
        """The oldest kind's waiting requests, up to the row limit (cancelled ones dropped)."""
        for key, queue in list(self._queues.items()):
            batch: list[_Item] = []
            rows = 0
            while queue.items and rows + queue.items[0].rows <= self._max_rows:
                item = queue.items.popleft()
                queue.rows -= item.rows
                if not item.future.done():
                    batch.append(item)
                    rows += item.rows
            if not queue.items:
                del self._queues[key]
            if batch:
                return batch, queue.outputs
        return [], None

    async def _run(self, batch: list[_Item], outputs: Sequence[str] | None) -> None:
        try:
            if len(batch) == 1:
                await self._run_one(batch[0], outputs)
            else:
                await self._run_batch(batch, outputs)
        finally:
            self._running -= 1
            if self._queues:
                self._schedule(asyncio.get_running_loop())

    async def _run_one(self, item: _Item, outputs: Sequence[str] | None) -> None:
        try:
            result = await self._inner.infer(item.inputs, outputs)
            self._measured(result, item.rows)
        except BaseException as error:  # handed to the request it belongs to
            _fail(item, error)
            if isinstance(error, asyncio.CancelledError):
                raise
            return
        self._record(1)
        if not item.future.done():
            item.future.set_result(_waited(result, item))

    async def _run_batch(self, batch: list[_Item], outputs: Sequence[str] | None) -> None:
        names = list(batch[0].inputs)
        joined = {name: np.concatenate([item.inputs[name] for item in batch]) for name in names}
        total = sum(item.rows for item in batch)
        try:
            result = await self._inner.infer(joined, outputs)
            self._measured(result, total)
        except asyncio.CancelledError:
            for item in batch:
                _fail(item, asyncio.CancelledError())
            raise
        except Exception as error:
            log.debug(
                "A batch of %d requests failed (%s); running them one by one", len(batch), error
            )
            await self._run_each(batch, outputs)
            return
        if self._check_outputs and any(
            array.ndim == 0 or array.shape[0] != total for array in result.outputs.values()
        ):
            log.warning(
                "Outputs of a batch of %d rows do not have %d rows: batching is turned off for "
                "this model version",
                total,
                total,
            )
            self._max_rows = 0
            await self._run_each(batch, outputs)
            return
        self._record(len(batch))
        start = 0
        for item in batch:
            end = start + item.rows
            if not item.future.done():
                part = {name: array[start:end] for name, array in result.outputs.items()}
                item.future.set_result(
                    _waited(EngineResult(part, result.wait_us, result.infer_us), item)
                )
            start = end

    async def _run_each(self, batch: list[_Item], outputs: Sequence[str] | None) -> None:
        for item in batch:
            await self._run_one(item, outputs)

    def close(self) -> None:
        """Release the wrapped model (the instance waits for in-flight requests first)."""
        self._inner.close()


def _waited(result: EngineResult, item: _Item) -> EngineResult:
    """The result with the time the request spent queued added to its wait."""
    started = time.perf_counter() - result.infer_us / 1e6 - result.wait_us / 1e6
    queued_us = max(started - item.queued, 0.0) * 1e6
    return EngineResult(result.outputs, result.wait_us + queued_us, result.infer_us)


def _fail(item: _Item, error: BaseException) -> None:
    if item.future.done():
        return
    if isinstance(error, asyncio.CancelledError):
        item.future.cancel()
    else:
        item.future.set_exception(error)


def _rows(inputs: Arrays) -> int | None:
    """The common leading size of every input, or None when they differ (no batching)."""
    rows: int | None = None
    for array in inputs.values():
        if array.ndim == 0 or array.dtype == np.object_:
            return None
        if rows is None:
            rows = int(array.shape[0])
        elif array.shape[0] != rows:
            return None
    return rows


def _key(inputs: Arrays, outputs: Sequence[str] | None) -> Key:
    parts: list[object] = [
        (name, array.shape[1:], array.dtype.str) for name, array in inputs.items()
    ]
    parts.append(None if outputs is None else tuple(outputs))
    return tuple(parts)


class BatchingEngine:
    """An engine whose compiled models batch concurrent requests where their config allows."""

    def __init__(
        self,
        inner: InferenceEngine,
        default: BatchingConfig | None = None,
        stats: BatchStats | None = None,
    ) -> None:
        self._inner = inner
        self._default = default or BatchingConfig()
        self.stats = stats or BatchStats()

    def load(
        self, model_file: Path, config: ModelConfig, on_step: LoadStep | None = None
    ) -> CompiledModel:
        """Compile with the inner engine; wrap the result when it may batch."""
        compiled = self._inner.load(model_file, config, on_step)
        batching = config.batching if config.batching is not None else self._default
        rows, reason = batch_rows_limit(compiled.inputs, compiled.outputs, batching)
        if rows < 2:
            log.debug("Model %s: no dynamic batching: %s", config.name, reason)
            return compiled
        # The probe runs under the layers that count traffic (shape variants): it is not traffic.
        if batching.enabled is None and not _probe_says_independent(probe_model_of(compiled)):
            log.info(
                "Model %s: no dynamic batching: a probe found rows of one batch affecting each "
                "other's outputs (or it could not run); --dynamic_batching on would force it",
                config.name,
            )
            return compiled
        version = _version_of(model_file)
        log.info(
            "Model %s version %d: dynamic batching of concurrent requests, %s, max queue delay "
            "%d us",
            config.name,
            version,
            reason,
            batching.max_queue_delay_us,
        )
        stats = self.stats
        name = config.name

        def record(requests: int) -> None:
            stats.record(name, version, requests)

        tell_batched_from_above(compiled)
        return BatchingModel(
            compiled,
            rows,
            batching.max_queue_delay_us,
            require_output_rows=True,
            record=record,
            adaptive=batching.enabled is None,
        )

    def close(self) -> None:
        """Release the inner engine."""
        self._inner.close()


PROBE_FREE_SIZE = 32
"""Size tried for a free non-batch dimension in the row-independence probe."""


def rows_independent(compiled: CompiledModel) -> bool:
    """Whether two rows run together give what each gives alone (random inputs, one try).

    Shapes alone cannot prove that a model keeps rows apart (a normalisation over the batch axis
    keeps the dynamic batch dimension), so ``auto`` also asks the model. Differences up to
    1e-3 of the output's scale are rounding (kernels may differ with the batch size); mixing rows
    gives far more. A probe that fails to run counts as "not proven".
    """
    rng = np.random.default_rng(0)
    rows: list[dict[str, npt.NDArray[Any]]] = [{}, {}]
    for spec in compiled.inputs:
        dims = spec.shape.dims[1:]
        sizes = [_probe_size(dim) for dim in dims]
        dtype = spec.datatype.numpy_dtype
        for row in rows:
            if np.issubdtype(dtype, np.floating):
                row[spec.name] = rng.random((1, *sizes)).astype(dtype)
            else:
                row[spec.name] = rng.integers(0, 2, (1, *sizes)).astype(dtype)
    joined = {name: np.concatenate([row[name] for row in rows]) for name in rows[0]}
    try:
        alone = [asyncio.run(compiled.infer(row)) for row in rows]
        together = asyncio.run(compiled.infer(joined))
    except Exception:  # any failure means the probe proves nothing
        log.debug("Row-independence probe failed", exc_info=True)
        return False
    for name, array in together.outputs.items():
        separate = np.concatenate([result.outputs[name] for result in alone])
        if array.shape != separate.shape:
            return False
        if not separate.size:
            continue
        expected, got = separate.astype(np.float64), array.astype(np.float64)  # BOOL too
        if float(np.abs(got - expected).max()) > 1e-3 * float(np.abs(expected).max()) + 1e-6:
            return False
    return True


def _probe_says_independent(compiled: CompiledModel) -> bool:
    """:func:`rows_independent`, never failing a load: anything unexpected means "not proven"."""
    try:
        return rows_independent(compiled)
    except Exception:  # the probe is best effort, the load must go on
        log.warning("Row-independence probe failed; no dynamic batching", exc_info=True)
        return False


def _probe_size(dim: Dimension) -> int:
    """The dimension's size if static, else PROBE_FREE_SIZE brought into its range."""
    if dim.is_static:
        return dim.lower
    size = max(PROBE_FREE_SIZE, dim.lower, 1)
    return size if dim.upper is None else min(size, dim.upper)


def _version_of(model_file: Path) -> int:
    """The version folder's number (model files sit in ``<base>/<version>/``)."""
    try:
        return int(model_file.parent.name)
    except ValueError:
        return 0
