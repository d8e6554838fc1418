"""Handing back the code pages that compiling a model needed and serving it does not.

Compiling touches ~60 MiB of OpenVINO's code (graph transformations in ``libopenvino`` and
the CPU plugin); inference then uses about a third of it (measured on the face model: 43 →
18 MiB of the CPU plugin, 16.5 → 2 MiB of libopenvino after 25 inferences at two sizes).
Those are clean, file-backed pages: the kernel would drop them only under memory pressure, so
until then they count in every worker's resident memory. After a load, ovserve tells the
kernel it no longer needs them (``madvise(MADV_PAGEOUT)``, Linux 5.4+); what inference uses
comes back on first use from the page cache (minor faults, no disk read). The heap's free pages
go back with ``malloc_trim`` (glibc). Both are best effort: elsewhere they do nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
from pathlib import Path
from typing import Final

from ovserve.heap import malloc_trim

log = logging.getLogger(__name__)

MADV_PAGEOUT: Final = 21
LIBRARIES: Final = ("libopenvino.so", "libopenvino_intel_cpu_plugin.so")
"""Mapped files whose pages are handed back (matched as substrings of the mapped path)."""


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    except (OSError, AttributeError):
        return None
    return libc


def mappings(names: tuple[str, ...], maps: Path) -> list[tuple[int, int]]:
    """Address ranges of the mapped files whose path contains one of ``names``."""
    ranges = []
    with contextlib.suppress(OSError):
        for line in maps.read_text().splitlines():
            parts = line.split()
            if len(parts) > 5 and any(name in parts[5] for name in names):
                start, end = (int(value, 16) for value in parts[0].split("-"))
                ranges.append((start, end))
    return ranges


def release_after_load(maps: Path = Path("/proc/self/maps")) -> int:
    """Page out OpenVINO's code pages and trim the heap; the number of ranges paged out."""
    libc = _libc()
    if libc is None:
        return 0
    released = 0
    for start, end in mappings(LIBRARIES, maps):
        if libc.madvise(start, end - start, MADV_PAGEOUT) == 0:
            released += 1
    malloc_trim()
    log.debug("Paged out %d ranges of OpenVINO's code after a load", released)
    return released
