"""CPU accounting from /proc: what a measured side spent per request, and what others took.

The machine is shared, so requests/s moves with other people's load. CPU time per request moves
much less: it is the cost of a request wherever the cycles came from. Ticks are clock ticks
(usually 10 ms); every function here returns ticks.

Others' share: user + system ticks of the whole machine (/proc/stat) minus the ticks of our own
processes (this process, its live children, the sessions of the servers we started, children
reaped meanwhile such as h2load and hey). Steal that the hypervisor does not report is not seen.
"""

from __future__ import annotations

import os
from pathlib import Path

CPUS = os.cpu_count() or 1
TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def _processes() -> list[tuple[int, int, int, int]]:
    """(pid, ppid, session, utime + stime) of every process."""
    out = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue  # exited meanwhile
        f = stat.rsplit(")", 1)[1].split()  # state ppid pgrp session ... utime(11) stime(12)
        out.append((int(entry.name), int(f[1]), int(f[3]), int(f[11]) + int(f[12])))
    return out


def session_ticks(session: int) -> int:
    """CPU ticks of every process in a session (a server started with setsid and its children)."""
    return sum(ticks for _, _, sid, ticks in _processes() if sid == session)


def pid_ticks(pid: int) -> int:
    """CPU ticks of one process (all its threads)."""
    return sum(ticks for p, _, _, ticks in _processes() if p == pid)


def reaped_ticks() -> int:
    """CPU ticks of this process's children that have exited and been waited for."""
    t = os.times()
    return round((t.children_user + t.children_system) * TICKS_PER_S)


def to_us(ticks: int) -> float:
    """Ticks as microseconds."""
    return ticks * 1e6 / TICKS_PER_S


def _machine_busy() -> int:
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    # user nice system idle iowait irq softirq steal: irq and softirq are left out because
    # per-process times do not include them, and during a load run most of them are ours
    return fields[0] + fields[1] + fields[2] + fields[7]


def _ours(sessions: set[int]) -> int:
    me = os.getpid()
    live = sum(t for pid, ppid, sid, t in _processes() if me in (pid, ppid) or sid in sessions)
    return live + reaped_ticks()


class Meter:
    """Snapshot at start; ``foreign()`` gives others' share of all CPUs since then."""

    def __init__(self, sessions: set[int], wall_start: float) -> None:
        self.sessions = sessions
        self.wall_start = wall_start
        self.busy = _machine_busy()
        self.ours = _ours(sessions)

    def foreign(self, wall_end: float) -> float:
        """Fraction (0..1) of the machine's CPU time used by processes that are not ours."""
        busy = _machine_busy() - self.busy
        ours = _ours(self.sessions) - self.ours
        capacity = (wall_end - self.wall_start) * TICKS_PER_S * CPUS
        return max(0.0, min(1.0, (busy - ours) / capacity)) if capacity > 0 else 0.0
