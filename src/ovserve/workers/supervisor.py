"""The parent of the worker processes: start them, watch them, pass signals on, stop them.

The parent loads no model and opens no port (it stays ~30 MiB); each worker is ``python -m
ovserve`` with the same flags plus a hidden ``--worker_slot``. Start-up is all or nothing: if a
worker exits before it is ready (port in use, a model that does not load), the others are
stopped and the parent exits with that worker's status. A worker that dies later is started
again. SIGTERM or SIGINT is passed to every worker; each drains its in-flight requests as a
single server does, and the parent exits when all have (non-zero if any did).
"""

from __future__ import annotations

import logging
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from ovserve.config.worker_slot import WorkerSlot

log = logging.getLogger("ovserve.workers")

POLL_SECONDS = 0.1
RESTART_LIMIT = 5
"""Restarts of one worker within :data:`RESTART_WINDOW_SECONDS` before the server gives up."""
RESTART_WINDOW_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 60.0


class Supervisor:
    """Runs ``count`` workers with the given flags until a signal."""

    def __init__(
        self, argv: Sequence[str], count: int, program: Sequence[str] | None = None
    ) -> None:
        self._program = list(program or (sys.executable, "-m", "ovserve"))
        self._argv = list(argv)
        self._count = count
        self._folder = Path(tempfile.mkdtemp(prefix="ovserve-workers-"))
        self._workers: dict[int, subprocess.Popen[bytes]] = {}
        self._restarts: dict[int, list[float]] = {index: [] for index in range(count)}
        self._stopping = False

    @property
    def folder(self) -> Path:
        """Where the workers' sockets and ready marks are (removed when the run ends)."""
        return self._folder

    def _slot(self, index: int) -> WorkerSlot:
        return WorkerSlot(index, self._count, self._folder)

    def _spawn(self, index: int) -> None:
        slot = self._slot(index)
        slot.ready_path(index).unlink(missing_ok=True)
        command = [
            *self._program,
            *self._argv,
            "--worker_slot",
            slot.flag(),
        ]
        self._workers[index] = subprocess.Popen(command)
        log.info("Started worker %d of %d (pid %d)", index, self._count, self._workers[index].pid)

    def _request_stop(self, signum: int, frame: FrameType | None) -> None:
        self.request_stop()

    def request_stop(self) -> None:
        """Stop the workers and return from :meth:`run` (what SIGTERM and SIGINT do)."""
        self._stopping = True

    def run(self) -> int:
        """Start the workers, wait for a signal or a fatal exit, stop them; the exit status."""
        previous = {
            signum: signal.signal(signum, self._request_stop)
            for signum in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            for index in range(self._count):
                self._spawn(index)
            status = self._watch()
            return max(status, self._stop_all())
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            shutil.rmtree(self._folder, ignore_errors=True)

    def _watch(self) -> int:
        """Until a stop is asked: restart workers that die; a start-up failure is fatal."""
        all_ready_logged = False
        while not self._stopping:
            time.sleep(POLL_SECONDS)
            for index, process in list(self._workers.items()):
                status = process.poll()
                if status is None or self._stopping:
                    continue
                if not self._slot(index).ready_path(index).exists():
                    log.error("Worker %d exited with %d before it was ready", index, status)
                    return status or 1
                if not self._may_restart(index):
                    log.error("Worker %d keeps exiting (last status %d): stopping", index, status)
                    return status or 1
                log.error(
                    "Worker %d (pid %d) exited with %d: restarting it", index, process.pid, status
                )
                self._spawn(index)
            if not all_ready_logged and all(
                self._slot(index).ready_path(index).exists() for index in self._workers
            ):
                log.info("All %d workers are ready", self._count)
                all_ready_logged = True
        return 0

    def _may_restart(self, index: int) -> bool:
        now = time.monotonic()
        recent = [at for at in self._restarts[index] if now - at < RESTART_WINDOW_SECONDS]
        recent.append(now)
        self._restarts[index] = recent
        return len(recent) <= RESTART_LIMIT

    def _stop_all(self) -> int:
        """SIGTERM every live worker, wait for each to drain; the worst exit status."""
        for process in self._workers.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        worst = 0
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        for index, process in self._workers.items():
            try:
                status = process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                log.error("Worker %d did not stop in time: killing it", index)
                process.kill()
                status = process.wait()
            if status not in (0, -signal.SIGTERM):
                worst = max(worst, abs(status) or 1)
        return worst


def run_supervisor(argv: Sequence[str], count: int) -> int:
    """Run ``count`` workers of this command line; return the exit status."""
    return Supervisor(argv, count).run()
