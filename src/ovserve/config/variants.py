"""Shape-specialised variants and idle memory release: one model's settings.

A model with dynamic dimensions serves every shape from one dynamic compilation, which runs
slower than a compilation for one static shape (measured: 0.82-0.91x served, up to 0.58x
in-process) and keeps per-shape memory. These settings say when a repeated request shape gets
its own static compilation and when an idle model gives memory back. Names follow OVMS's
snake_case; the same keys are flags (single-model mode) and config.json model keys.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from ovserve.errors import ConfigError

DEFAULT_MAX_SHAPE_VARIANTS: Final = 4
"""Static variants kept per model version (LRU). Measured (bench/variants.md): a variant adds
16 MiB (MobileNetV2 at 224x224) to 28 / 46 / 82 MiB (face model at 300x300 / 480x640 /
1280x720) and compiles in 1-3 s on a busy 2-core machine. Four cover the few resolutions real
traffic repeats (cameras, clients resizing to one size) without rebuild churn when a client
alternates two or three, and keep the worst case near 330 MiB for HD inputs; idle release
gives their buffers back."""

DEFAULT_SHAPE_VARIANT_THRESHOLD: Final = 3
"""Requests of one shape within the window that earn it a variant."""

DEFAULT_SHAPE_VARIANT_WINDOW_SECONDS: Final = 10.0

DEFAULT_IDLE_MEMORY_RELEASE_SECONDS: Final = 10.0
"""A dynamic model idle this long gives its intermediate buffers back (0: never)."""

KEYS: Final = (
    "max_shape_variants",
    "shape_variant_threshold",
    "shape_variant_window_seconds",
    "idle_memory_release_seconds",
)
"""The config.json model keys (and flag names) these settings are read from."""


@dataclass(frozen=True, slots=True)
class VariantConfig:
    """When repeated shapes get static variants and when idle memory is released."""

    max_variants: int = DEFAULT_MAX_SHAPE_VARIANTS
    """0 turns variants off."""
    threshold: int = DEFAULT_SHAPE_VARIANT_THRESHOLD
    window_seconds: float = DEFAULT_SHAPE_VARIANT_WINDOW_SECONDS
    idle_release_seconds: float = DEFAULT_IDLE_MEMORY_RELEASE_SECONDS
    """0 turns idle memory release off."""

    @property
    def enabled(self) -> bool:
        """True when repeated shapes get variants."""
        return self.max_variants > 0


def parse_variant_config(values: Mapping[str, Any]) -> VariantConfig:
    """Settings from flag or config.json values (missing or None keys keep their defaults)."""
    defaults = VariantConfig()

    def number(key: str, default: float, *, integer: bool, minimum: float) -> Any:
        value = values.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: must be a number, got {value!r}")
        if integer and not float(value).is_integer():
            raise ConfigError(f"{key}: must be an integer, got {value!r}")
        if not math.isfinite(value) or value < minimum:
            raise ConfigError(f"{key}: must be at least {minimum:g}, got {value!r}")
        return int(value) if integer else float(value)

    return VariantConfig(
        max_variants=number("max_shape_variants", defaults.max_variants, integer=True, minimum=0),
        threshold=number("shape_variant_threshold", defaults.threshold, integer=True, minimum=1),
        window_seconds=number(
            "shape_variant_window_seconds", defaults.window_seconds, integer=False, minimum=0.001
        ),
        idle_release_seconds=number(
            "idle_memory_release_seconds",
            defaults.idle_release_seconds,
            integer=False,
            minimum=0,
        ),
    )
