"""glibc's ``malloc_trim``: the one way every layer gives freed heap pages back to the system.

glibc keeps freed memory in its arenas, so after large requests, rare input shapes or a model
load the process holds memory it no longer uses; ``malloc_trim(0)`` returns it. Where the C
library has no ``malloc_trim`` (musl, macOS) nothing happens. A leaf module, so the engine and
the front-ends share it without importing each other.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable


@functools.cache
def malloc_trim_function() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, loaded once; None where the C library has none."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to trim
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def malloc_trim() -> bool:
    """Return glibc's free heap pages to the system; False where there is no malloc_trim."""
    trim = malloc_trim_function()
    if trim is None:
        return False
    trim(0)
    return True
