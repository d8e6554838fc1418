"""Dynamic batching settings: parsed once from the flags or a config.json model entry.

Batching is ovserve's own (OVMS has none for models); the names follow Triton's
``dynamic_batching`` block so its users recognise them. ``enabled`` is three-valued: None means
"where provably safe" (every input and output has a dynamic leading batch dimension), True
forces it for models whose inputs batch but whose outputs cannot be proven to, False turns it
off.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from ovserve.errors import ConfigError

DEFAULT_MAX_BATCH_SIZE: Final = 32
"""Largest batch formed, in rows of the batch dimension (also bounded by the model's range)."""

MODES: Final = {"auto": None, "on": True, "off": False}
"""Flag values and what they mean for :attr:`BatchingConfig.enabled`."""

_KEYS: Final = ("enabled", "max_batch_size", "max_queue_delay_microseconds")


@dataclass(frozen=True, slots=True)
class BatchingConfig:
    """How concurrent requests to one model version may be run as one inference."""

    enabled: bool | None = None
    """None: only where provably safe; True: whenever the inputs batch; False: never."""
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    max_queue_delay_us: int = 0
    """How long the first request of a batch may wait for more (0: take only those waiting)."""


def check_limits(max_batch_size: int, max_queue_delay_us: int, where: str = "") -> None:
    """Both limits in range, or ConfigError naming the setting."""
    prefix = f"{where}." if where else ""
    if not 1 <= max_batch_size <= 65536:
        raise ConfigError(f"{prefix}max_batch_size should be from 1 to 65536, got {max_batch_size}")
    if not 0 <= max_queue_delay_us <= 10_000_000:
        raise ConfigError(
            f"{prefix}max_queue_delay_microseconds should be from 0 to 10000000, "
            f"got {max_queue_delay_us}"
        )


def parse_batching_entry(value: Any, default: BatchingConfig) -> BatchingConfig:
    """A config.json ``dynamic_batching`` value: true, false, or an object of the three keys."""
    if isinstance(value, bool):
        return BatchingConfig(value, default.max_batch_size, default.max_queue_delay_us)
    if not isinstance(value, dict):
        raise ConfigError("should be true, false or an object")
    unknown = sorted(set(value) - set(_KEYS))
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]}; allowed: {', '.join(_KEYS)}")
    enabled = value.get("enabled")
    size = value.get("max_batch_size", default.max_batch_size)
    delay = value.get("max_queue_delay_microseconds", default.max_queue_delay_us)
    if enabled is not None and not isinstance(enabled, bool):
        raise ConfigError("enabled should be true, false or null (null: where provably safe)")
    for name, number in (("max_batch_size", size), ("max_queue_delay_microseconds", delay)):
        if not isinstance(number, int) or isinstance(number, bool):
            raise ConfigError(f"{name} should be an integer")
    check_limits(size, delay)
    return BatchingConfig(enabled, size, delay)
