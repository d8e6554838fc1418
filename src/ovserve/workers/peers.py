"""How the workers of one server reach each other: a Unix socket each, one JSON line per call.

A scrape of ``/metrics`` lands on one worker (the kernel picks it), so that worker asks every
other worker for a snapshot of its counts and renders the sum. ``POST /v1/config/reload`` also
lands on one worker: it reloads itself, then asks the others to reload, so the answer means
what it says for the whole server. File-system polling needs none of this: every worker polls.

Calls have a short timeout: a worker that is restarting or busy for long is left out of a
scrape (and logged), rather than making the scrape hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Callable
from typing import Any

from ovserve.config.worker_slot import WorkerSlot
from ovserve.errors import ConfigError, OvserveError
from ovserve.metrics import Metrics, merged, snapshot
from ovserve.serving.service import ConfigReloader

log = logging.getLogger(__name__)

CALL_TIMEOUT_SECONDS = 5.0
RELOAD_TIMEOUT_SECONDS = 300.0
"""A reload compiles models: it may take long."""


class PeerLink:
    """This worker's control socket, and calls to the other workers' sockets."""

    def __init__(self, slot: WorkerSlot, metrics: Metrics, reloader: ConfigReloader | None) -> None:
        self.slot = slot
        self._metrics = metrics
        self._reloader = reloader
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        """Listen on this worker's socket."""
        path = self.slot.socket_path(self.slot.index)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        self._server = await asyncio.start_unix_server(self._serve, path=str(path))

    async def mark_ready(self) -> None:
        """Tell the supervisor this worker serves."""
        self.slot.ready_path(self.slot.index).write_text(str(os.getpid()))

    async def wait_all_ready(self, poll_seconds: float = 0.05) -> None:
        """Return once every worker has marked itself ready."""
        marks = [self.slot.ready_path(index) for index in range(self.slot.count)]
        while not all(mark.exists() for mark in marks):
            await asyncio.sleep(poll_seconds)

    async def stop(self) -> None:
        """Stop answering peers."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            call = json.loads(line)
            reply = await self._answer(call)
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        except (OSError, ValueError, asyncio.IncompleteReadError):
            log.debug("A peer call failed", exc_info=True)
        finally:
            writer.close()

    async def _answer(self, call: dict[str, Any]) -> dict[str, Any]:
        if call.get("op") == "metrics":
            return {
                "pid": os.getpid(),
                "index": self.slot.index,
                "metrics": snapshot(self._metrics),
            }
        if call.get("op") == "reload":
            if self._reloader is None:
                return {"error": "no config file"}
            try:
                return {"changed": await self._reloader.reload()}
            except OvserveError as error:
                return {"error": error.text}
        return {"error": f"unknown call {call.get('op')!r}"}

    async def call(self, index: int, op: str, timeout: float) -> dict[str, Any] | None:
        """Ask worker ``index``; None when it does not answer in time."""
        path = self.slot.socket_path(index)
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_unix_connection(str(path))
                try:
                    writer.write(json.dumps({"op": op}).encode() + b"\n")
                    await writer.drain()
                    reply: dict[str, Any] = json.loads(await reader.readline())
                    return reply
                finally:
                    writer.close()
        except (OSError, ValueError, TimeoutError) as error:
            log.warning("Worker %d did not answer %s: %s", index, op, error or type(error).__name__)
            return None

    async def render_metrics(self) -> bytes:
        """Every worker's counts summed, in the usual exposition (plus a per-worker line)."""
        mine = {"pid": os.getpid(), "index": self.slot.index, "metrics": snapshot(self._metrics)}
        replies = await asyncio.gather(
            *(self.call(index, "metrics", CALL_TIMEOUT_SECONDS) for index in self.slot.others())
        )
        answers = [mine, *(reply for reply in replies if reply and "metrics" in reply)]
        total = merged(self._metrics, [answer["metrics"] for answer in answers])
        return total.render() + _worker_lines(answers)


def _worker_lines(answers: list[dict[str, Any]]) -> bytes:
    """Who served how much, and who is busy now, per worker process (not in OVMS)."""
    ordered = sorted(answers, key=lambda answer: int(answer["index"]))
    lines = []
    families: list[tuple[str, str, str, Callable[[dict[str, Any]], int]]] = [
        (
            "ovserve_worker_requests_success",
            "counter",
            "Successful requests served by each worker process.",
            lambda shot: sum(counts[0] for *_, counts in shot["requests"]),
        ),
        (
            "ovserve_worker_current_requests",
            "gauge",
            "Requests being processed by each worker process.",
            lambda shot: sum(gauge[4] for gauge in shot["gauges"]),
        ),
    ]
    for name, kind, text, value in families:
        lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
        for answer in ordered:
            labels = f'pid="{answer["pid"]}",worker="{answer["index"]}"'
            lines.append(f"{name}{{{labels}}} {value(answer['metrics'])}")
    return ("\n".join(lines) + "\n").encode()


class BroadcastReloader:
    """Reloads this worker, then every other worker; what ``POST /v1/config/reload`` calls."""

    def __init__(self, local: ConfigReloader, link: PeerLink) -> None:
        self._local = local
        self._link = link

    async def reload(self) -> bool:
        """True when anything changed in this worker or another one."""
        changed = await self._local.reload()  # an invalid file raises here, for every worker
        replies = await asyncio.gather(
            *(
                self._link.call(index, "reload", RELOAD_TIMEOUT_SECONDS)
                for index in self._link.slot.others()
            )
        )
        for index, reply in zip(self._link.slot.others(), replies, strict=True):
            if reply is None or "error" in reply:
                detail = "no answer" if reply is None else reply["error"]
                log.error("Worker %d did not reload: %s", index, detail)
                raise ConfigError("Reloading config file failed. Check server logs for more info.")
            changed = changed or bool(reply.get("changed"))
        return changed
