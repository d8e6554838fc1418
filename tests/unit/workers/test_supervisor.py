"""The supervisor with stand-in workers: all-or-nothing start, restarts, signals passed on."""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path

from ovserve.workers.supervisor import Supervisor

WORKER = r"""
import os, pathlib, signal, sys, time
numbers, _, folder = sys.argv[sys.argv.index("--worker_slot") + 1].partition(":")
index = numbers.split("/")[0]
mode = sys.argv[1]
if mode == "fail":
    sys.exit(3)
ready = pathlib.Path(folder, f"worker-{index}.ready")
died = pathlib.Path(folder, f"died-{index}")
if mode == "die-once" and not died.exists():
    ready.write_text("first")
    died.touch()
    sys.exit(1)
ready.write_text("serving")
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0 if mode != "bad-exit" else 5))
while True:
    time.sleep(0.02)
"""


def supervisor(tmp_path: Path, mode: str, count: int = 2) -> Supervisor:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    return Supervisor([mode], count, program=[sys.executable, str(script)])


def stop_when(runner: Supervisor, condition: object, timeout: float = 30.0) -> threading.Thread:
    """Ask ``runner`` to stop (as its SIGTERM handler does) once ``condition()`` holds."""

    def run() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not condition():  # type: ignore[operator]
            time.sleep(0.02)
        runner.request_stop()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def ready(folder: Path, count: int) -> bool:
    return all((folder / f"worker-{index}.ready").exists() for index in range(count))


def test_a_signal_stops_every_worker_and_the_status_is_0(tmp_path: Path) -> None:
    runner = supervisor(tmp_path, "serve")
    before = signal.getsignal(signal.SIGTERM)
    thread = stop_when(runner, lambda: ready(runner.folder, 2))
    assert runner.run() == 0
    thread.join()
    assert not runner.folder.exists()
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_worker_failing_at_start_up_stops_the_server_with_its_status(tmp_path: Path) -> None:
    assert supervisor(tmp_path, "fail").run() == 3


def test_a_worker_that_dies_later_is_restarted(tmp_path: Path) -> None:
    runner = supervisor(tmp_path, "die-once", count=1)
    mark = runner.folder / "worker-0.ready"
    thread = stop_when(runner, lambda: mark.exists() and mark.read_text() == "serving")
    assert runner.run() == 0
    thread.join()


def test_a_worker_exiting_badly_on_stop_makes_the_status_non_zero(tmp_path: Path) -> None:
    runner = supervisor(tmp_path, "bad-exit", count=1)
    thread = stop_when(runner, lambda: ready(runner.folder, 1))
    assert runner.run() == 5
    thread.join()
