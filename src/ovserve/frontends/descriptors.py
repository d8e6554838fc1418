"""How the process's open-file limit is shared between REST and gRPC connections.

With the common soft limit of 1,024, 1,100 stalled HTTP connections used to take every
descriptor: then REST, gRPC, model files and the reloader all failed. A quarter of the limit
(at least ``RESERVED``) is kept for everything that is not a client connection; of the rest,
two thirds may be REST connections and one third gRPC connections (REST under 1,024: 512,
gRPC: 256). Either cap can be set by a flag instead.
"""

from __future__ import annotations

import resource
from typing import Final

RESERVED: Final = 256
"""Descriptors always kept for model files, logs, the reloader and OpenVINO (at least)."""
MAX_AUTO: Final = 100_000
"""Upper bound of an automatic cap (Drogon's default connection limit, which OVMS uses)."""
MIN_AUTO: Final = 16


def _usable() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return 3 * MAX_AUTO
    return soft - max(RESERVED, soft // 4)


def rest_connection_cap(requested: int = 0) -> int:
    """``requested`` if positive, else two thirds of the usable descriptors."""
    if requested > 0:
        return requested
    return max(MIN_AUTO, min(MAX_AUTO, _usable() * 2 // 3))


def grpc_connection_cap(requested: int = 0) -> int:
    """``requested`` if positive, else a third of the usable descriptors."""
    if requested > 0:
        return requested
    return max(MIN_AUTO, min(MAX_AUTO, _usable() // 3))
