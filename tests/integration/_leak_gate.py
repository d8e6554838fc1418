"""Memory-growth gate: a process's RSS over many requests, after a warm-up.

RSS is read from ``/proc/<pid>/status`` after each chunk of requests; the growth is the
median of the last three samples minus the median of the first three (both after the
warm-up), so a single allocator burst does not decide the verdict.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path

MIB = 1024 * 1024
SAMPLES = 12


def rss(pid: int) -> int:
    """Resident set size in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def growth(pid: int, send: Callable[[int], None], total: int, warmup: int) -> float:
    """Send ``warmup`` then ``total`` requests (``send(i)`` sends the i-th); RSS growth in MiB."""
    for index in range(warmup):
        send(index)
    chunk = max(1, total // SAMPLES)
    samples = []
    for start in range(0, chunk * SAMPLES, chunk):
        for index in range(start, start + chunk):
            send(index)
        samples.append(rss(pid))
    return (statistics.median(samples[-3:]) - statistics.median(samples[:3])) / MIB
