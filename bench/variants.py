"""What gets measured: in-process modes and server x API x concurrency, each a ``Variant``.

A variant is checked once (the exact body, the reply's status and shape) and can then be measured
any number of times, which is what lets bench.py interleave variants in rounds.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bodies
import cpuload
import loadgen
import servers
from models import ROOT, Request
from report import INPROCESS

PYTHON = ROOT / ".venv" / "bin" / "python"
BENCH = Path(__file__).resolve().parent


@dataclass
class Variant:
    """One thing to measure repeatedly."""

    server: str
    api: str  # kserve / rest / tfs, or throughput / latency in-process
    conc: int
    req: Request
    section: str
    measure: Callable[[int], loadgen.LoadResult]  # seconds -> result
    note: str = ""
    ticks: Callable[[], int] = lambda: 0  # CPU ticks of the measured side (server or worker)


class InprocessWorker:
    """bench/inprocess.py as a long-lived child: compile once, measure on request."""

    def __init__(self, model_file: Path, which: str, sizes: list[str], latency: bool) -> None:
        cmd = [str(PYTHON), str(BENCH / "inprocess.py"), str(model_file), which]
        cmd += ["--sizes", *sizes] if which == "face" else []
        cmd += ["--latency"] if latency else []
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        hello = self._read()
        self.how: dict[str, str] = {
            mode: f"{how}, OpenVINO {hello['openvino']}" for mode, how in hello["how"].items()
        }

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            raise RuntimeError(f"in-process worker exited ({self.proc.returncode})")
        result: dict[str, Any] = json.loads(line)
        return result

    def measure(self, mode: str, label: str, seconds: int) -> loadgen.LoadResult:
        """Rate of one in-process mode for ``seconds``."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{mode} {label} {seconds}\n")
        reply = self._read()
        rate = float(reply["rate"])
        return loadgen.LoadResult(rate, 1e3 / rate, math.nan, 0, int(reply["n"]))

    def variant(self, section: str, req: Request, mode: str) -> Variant:
        """This worker's ``mode`` on ``req``."""
        return Variant(INPROCESS, mode, 0, req, section,
                       lambda s: self.measure(mode, req.label, s), self.how[mode],
                       lambda: cpuload.pid_ticks(self.proc.pid))  # fmt: skip

    def close(self) -> None:
        """End the worker (closing stdin ends its loop)."""
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Failed(Exception):
    """A variant's check failed; the message is the first line of why."""


def unmeasured(seconds: int) -> loadgen.LoadResult:
    """Placeholder measure of a variant not yet checked."""
    raise RuntimeError("not checked")


def make_variant(v: Variant, srv: servers.Running, work: Path, log: Path) -> Variant:
    """``v`` made measurable against ``srv``: h2load (kserve, tfs) or hey (rest), once checked."""
    req, conc = v.req, v.conc
    try:
        if v.api == "rest":
            if not srv.rest:
                raise Failed("not available")
            url = f"{srv.rest_base}/v2/models/{req.model}/infer"
            body = bodies.write_rest_body(req, work)
            bodies.check_rest(url, req, body)
            v.measure = lambda s: loadgen.hey(url, body, conc, s, log=log)
        else:
            b = bodies.write_grpc_bodies(req, v.api, work)
            bodies.check_grpc(srv.grpc_target, req, b)
            target, api = srv.grpc_target, v.api
            v.measure = lambda s: loadgen.h2load(target, api, b.grpc_frame, conc, s, log=log)
    except bodies.CheckFailed as error:
        raise Failed(f"failed: {error}") from None
    v.ticks = lambda: cpuload.session_ticks(srv.pid)
    return v


def print_now(text: str) -> None:
    """Progress line."""
    print(text, flush=True)
    sys.stdout.flush()
