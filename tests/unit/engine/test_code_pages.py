"""Handing OpenVINO's code pages back after a load."""

from __future__ import annotations

from pathlib import Path

import openvino as ov

from ovserve.engine import code_pages as memory


def resident_kib(name: str) -> int:
    total, current = 0, ""
    for line in Path("/proc/self/smaps").read_text().splitlines():
        parts = line.split()
        if "-" in parts[0] and len(parts) >= 5 and ":" in parts[3]:
            current = parts[5] if len(parts) > 5 else ""
        elif line.startswith("Rss:") and name in current:
            total += int(parts[1])
    return total


def test_openvinos_code_pages_leave_memory_and_come_back_on_use() -> None:
    ov.Core().get_versions("CPU")  # maps the CPU plugin
    before = resident_kib("libopenvino.so")
    assert before > 0
    assert memory.release_after_load() > 0
    assert resident_kib("libopenvino.so") < before
    assert ov.Core().get_available_devices()  # the library still works


def test_only_the_named_libraries_are_touched(tmp_path: Path) -> None:
    maps = tmp_path / "maps"
    maps.write_text(
        "7f0000000000-7f0000001000 r-xp 00000000 08:01 1 /opt/x/libopenvino.so.2641\n"
        "7f0000002000-7f0000003000 r-xp 00000000 08:01 2 /usr/lib/libc.so.6\n"
        "7f0000004000-7f0000005000 rw-p 00000000 00:00 0\n"
    )
    assert memory.mappings(memory.LIBRARIES, maps) == [(0x7F0000000000, 0x7F0000001000)]
    # Not mapped in this process: madvise refuses, nothing counts as released.
    assert memory.release_after_load(maps) == 0
    assert memory.release_after_load(tmp_path / "missing") == 0
