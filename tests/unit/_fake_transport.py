"""A transport that collects what a protocol writes (the REST and HTTP/2 unit tests share it)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class FakeTransport:
    """Collects writes; notes closing, aborting and paused reading; no socket behind it."""

    output: bytearray = field(default_factory=bytearray)
    closed: bool = False
    aborted: bool = False
    paused: bool = False
    writes: int = 0
    limits: tuple[int, int] | None = None
    """The write-buffer limits last set."""
    strict: bool = False
    """Fail a write after close (HTTP/2 tests: the connection must never do that)."""

    def write(self, data: bytes) -> None:
        assert not (self.strict and self.closed), "a write after close"
        self.writes += 1
        self.output += data

    def writelines(self, parts: Sequence[bytes]) -> None:
        self.writes += 1
        for part in parts:
            self.output += part

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True
        self.aborted = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def set_write_buffer_limits(self, high: int, low: int) -> None:
        self.limits = (high, low)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40123) if name == "peername" else default
