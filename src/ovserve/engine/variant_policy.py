"""Which request shapes earn a static variant, and which variants stay (pure, no OpenVINO).

Each request shape served by the dynamic model is counted; a shape seen ``threshold`` times
within ``window_seconds`` asks for a build (one build at a time per model). Built variants sit
in an LRU of at most ``max_variants``; adding one past the bound evicts the least recently
served. A shape whose build failed is not tried again. The counting itself is bounded too: at
most :data:`MAX_TRACKED_SHAPES` shapes are remembered, oldest first out, so a stream of
distinct shapes costs a fixed amount of memory.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from ovserve.config.variants import VariantConfig

ShapeKey = tuple[tuple[int, ...], ...]
"""The shapes of a request's inputs, in model input order."""

MAX_TRACKED_SHAPES: Final = 1024
MAX_FAILED_SHAPES: Final = 256

V = TypeVar("V")


@dataclass(slots=True)
class VariantCounts:
    """Running totals for metrics."""

    compiled: int = 0
    evicted: int = 0
    failed: int = 0
    served: int = 0
    """Requests answered by a variant."""


class VariantPolicy(Generic[V]):
    """Counts shapes, decides builds, keeps the LRU of built variants."""

    def __init__(self, config: VariantConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self._config = config
        self._clock = clock
        self._seen: OrderedDict[ShapeKey, deque[float]] = OrderedDict()
        self._variants: OrderedDict[ShapeKey, V] = OrderedDict()
        self._failed: OrderedDict[ShapeKey, None] = OrderedDict()
        self.building: ShapeKey | None = None
        """The shape being built now, if any."""
        self.counts = VariantCounts()

    def __len__(self) -> int:
        return len(self._variants)

    def keys(self) -> list[ShapeKey]:
        """Shapes with a variant, least recently served first."""
        return list(self._variants)

    def values(self) -> list[V]:
        """The variants, least recently served first (the LRU order is not touched)."""
        return list(self._variants.values())

    def lookup(self, key: ShapeKey) -> V | None:
        """The variant for ``key`` (marked most recently served), or None."""
        variant = self._variants.get(key)
        if variant is not None:
            self._variants.move_to_end(key)
            self.counts.served += 1
        return variant

    def observe(self, key: ShapeKey) -> bool:
        """Count a request the dynamic model served; True when ``key`` should be built now."""
        if not self._config.enabled or key in self._failed or key in self._variants:
            return False
        now = self._clock()
        times = self._seen.get(key)
        if times is None:
            if len(self._seen) >= MAX_TRACKED_SHAPES:
                self._seen.popitem(last=False)
            times = self._seen[key] = deque(maxlen=self._config.threshold)
        else:
            self._seen.move_to_end(key)
        times.append(now)
        due = len(times) == self._config.threshold and now - times[0] <= self._config.window_seconds
        if not due or self.building is not None:
            return False
        self.building = key
        del self._seen[key]
        return True

    def built(self, key: ShapeKey, variant: V) -> list[tuple[ShapeKey, V]]:
        """Keep a finished build; return what it evicted (oldest first)."""
        if self.building == key:
            self.building = None
        self.counts.compiled += 1
        self._variants[key] = variant
        self._variants.move_to_end(key)
        evicted = []
        while len(self._variants) > self._config.max_variants:
            evicted.append(self._variants.popitem(last=False))
        self.counts.evicted += len(evicted)
        return evicted

    def failed(self, key: ShapeKey) -> None:
        """Remember that ``key`` cannot be built; it is not tried again."""
        if self.building == key:
            self.building = None
        self.counts.failed += 1
        self._failed[key] = None
        if len(self._failed) > MAX_FAILED_SHAPES:
            self._failed.popitem(last=False)

    def clear(self) -> list[V]:
        """Forget everything; return the variants, which the caller now owns."""
        variants = list(self._variants.values())
        self._variants.clear()
        self._seen.clear()
        return variants
