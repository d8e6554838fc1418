"""heap.keep_request_buffers: request-sized buffers are reused, not faulted in every time."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ovserve import heap

_CYCLES = """
import resource, sys
from ovserve import heap
if sys.argv[1] == "keep":
    assert heap.keep_request_buffers()
def cycle():
    buffers = [bytearray(600 * 1024) for _ in range(4)]  # four requests' worth in flight
    del buffers
cycle()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):
    cycle()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _page_faults(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", _CYCLES, mode], capture_output=True, text=True, check=True
    )
    return int(done.stdout)


def test_request_sized_buffers_are_not_faulted_in_again() -> None:
    if heap.malloc_trim_function() is None:
        pytest.fail("not glibc: keep_request_buffers does nothing here (no opt-out defined)")
    # glibc's defaults map (or trim and re-grow) such buffers on every cycle: ~150 faults each.
    assert _page_faults("default") > 50 * 4 * 100
    assert _page_faults("keep") < 50 * 4 * 10
