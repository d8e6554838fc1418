"""A worker process's place among the workers of one server (``--grpc_workers`` > 1)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ovserve.errors import ConfigError


@dataclass(frozen=True, slots=True)
class WorkerSlot:
    """Given by the supervisor to each worker in the hidden ``--worker_slot`` flag."""

    index: int
    count: int
    folder: Path
    """Holds every worker's control socket and ready mark."""

    def socket_path(self, index: int) -> Path:
        """Where worker ``index`` listens for its peers."""
        return self.folder / f"worker-{index}.sock"

    def ready_path(self, index: int) -> Path:
        """Exists once worker ``index`` serves."""
        return self.folder / f"worker-{index}.ready"

    def others(self) -> list[int]:
        """Indexes of the other workers."""
        return [index for index in range(self.count) if index != self.index]

    def flag(self) -> str:
        """The ``--worker_slot`` value that means this slot."""
        return f"{self.index}/{self.count}:{self.folder}"

    @classmethod
    def parse(cls, value: str) -> WorkerSlot:
        """``index/count:folder``."""
        numbers, _, folder = value.partition(":")
        index, _, count = numbers.partition("/")
        try:
            slot = cls(int(index), int(count), Path(folder))
        except ValueError:
            raise ConfigError(f"worker_slot: expected index/count:folder, got {value}") from None
        if not 0 <= slot.index < slot.count or not folder:
            raise ConfigError(f"worker_slot: expected index/count:folder, got {value}")
        return slot
