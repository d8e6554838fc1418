"""Start and stop the servers under test: ovserve (here) and peers (through the team's peer kit).

ovserve runs in its own process group (``start_new_session``) so that stopping it reaches every
thread and child; readiness is polled over KServe gRPC (ModelReady), and the REST port is probed
with ``GET /v2/health/ready``. Peers are started with the kit's ``start`` and stopped with its
``stop``, which only act on process groups the kit recorded.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import grpc
from tritonclient.grpc import service_pb2 as kserve_pb2

from models import ROOT

READY_TIMEOUT_S = 180.0
REST_PROBE_S = 3.0  # REST answers within this long after gRPC is ready, or it is not offered
POLL_S = 0.05


class StartFailed(RuntimeError):
    """A server exited or did not become ready."""


def free_port() -> int:
    """A port the kernel says is free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Running:
    """A started server."""

    name: str
    pid: int
    grpc_port: int
    rest_port: int
    rest: bool  # the REST port answers
    ready_s: float
    log: Path
    proc: subprocess.Popen[bytes] | None = None  # set for servers started here

    @property
    def grpc_target(self) -> str:
        """host:port for gRPC clients."""
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def rest_base(self) -> str:
        """Base URL of the REST port."""
        return f"http://127.0.0.1:{self.rest_port}"

    def rss_mib(self) -> float:
        """Resident memory of the process group, MiB."""
        out = subprocess.run(
            ["ps", "-o", "rss=", "-s", str(self.pid)], check=False, capture_output=True, text=True
        ).stdout
        return sum(int(v) for v in out.split()) / 1024


def start_ovserve(model: str, model_path: Path, log_dir: Path, extra: list[str]) -> Running:
    """Start ``.venv/bin/ovserve`` for one model on free loopback ports and wait until ready."""
    exe = ROOT / ".venv" / "bin" / "ovserve"
    if not exe.exists():
        raise StartFailed(f"no {exe}: run scripts/setup first")
    grpc_port, rest_port = free_port(), free_port()
    cmd = [
        str(exe), "--model_name", model, "--model_path", str(model_path),
        "--port", str(grpc_port), "--rest_port", str(rest_port),
        "--grpc_bind_address", "127.0.0.1", "--rest_bind_address", "127.0.0.1", *extra,
    ]  # fmt: skip
    return _start("ovserve", cmd, model, grpc_port, rest_port, log_dir / f"ovserve-{model}.log")


def start_floor(log_dir: Path) -> Running:
    """Start bench/floor.py (grpc.aio, no inference) on a free port and wait until ready."""
    grpc_port = free_port()
    python = ROOT / ".venv" / "bin" / "python"
    cmd = [str(python), str(Path(__file__).resolve().parent / "floor.py"), str(grpc_port)]
    return _start("grpc.aio-floor", cmd, "tiny", grpc_port, 0, log_dir / "floor.log")


def _start(  # noqa: PLR0917
    name: str, cmd: list[str], model: str, grpc_port: int, rest_port: int, log: Path
) -> Running:
    """Launch ``cmd`` in its own process group, poll gRPC ModelReady, probe REST if any."""
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with log.open("w") as out:
        out.write(" ".join(cmd) + "\n")
        out.flush()
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    try:
        _wait_grpc_ready(proc, name, model, f"127.0.0.1:{grpc_port}", log)
        ready_s = time.perf_counter() - t0
        url = f"http://127.0.0.1:{rest_port}/v2/health/ready"
        rest = rest_port != 0 and _rest_answers(proc, url)
    except BaseException:
        stop_group(proc)
        raise
    return Running(name, proc.pid, grpc_port, rest_port, rest, ready_s, log, proc)


def _wait_grpc_ready(
    proc: subprocess.Popen[bytes], name: str, model: str, target: str, log: Path
) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    request = kserve_pb2.ModelReadyRequest(name=model).SerializeToString()
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary("/inference.GRPCInferenceService/ModelReady")
        while True:
            if proc.poll() is not None:
                raise StartFailed(f"{name} exited ({proc.returncode}); log {log}:\n{_tail(log)}")
            try:
                if kserve_pb2.ModelReadyResponse.FromString(call(request, timeout=2)).ready:
                    return
            except grpc.RpcError:
                pass  # not listening yet, or the model is still loading
            if time.monotonic() > deadline:
                raise StartFailed(f"{name} not ready after {READY_TIMEOUT_S:.0f} s; log {log}")
            time.sleep(POLL_S)


def _rest_answers(proc: subprocess.Popen[bytes], url: str) -> bool:
    deadline = time.monotonic() + REST_PROBE_S
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as reply:
                return bool(reply.status == 200)
        except (urllib.error.URLError, OSError):
            time.sleep(POLL_S)
    return False


def _tail(log: Path, lines: int = 15) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def stop_group(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM the process group we started, then SIGKILL it if it lingers."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout)
            break
        except subprocess.TimeoutExpired:
            continue
    proc.wait()


def stop(running: Running) -> None:
    """Stop a server this module started."""
    if running.proc is not None:
        stop_group(running.proc)


# ---- peers through the kit ---------------------------------------------------------------------
def kit_dir() -> Path:
    """The peer kit: $PEERS_KIT, else ../shared/peers beside the repository."""
    return Path(os.environ.get("PEERS_KIT") or ROOT.parent / "shared" / "peers")


def peers_state_dir() -> Path:
    """The kit's state folder (its own rule): $PEERS_DIR, else ${TMPDIR:-/tmp}/peers."""
    return Path(os.environ.get("PEERS_DIR") or Path(os.environ.get("TMPDIR") or "/tmp") / "peers")


def peer_missing(peer: str) -> str | None:
    """Why ``peer`` cannot run here, or None when the kit and its venv are set up."""
    kit, state = kit_dir(), peers_state_dir()
    if not (kit / "start").exists():
        return f"peer kit not found at {kit} (set PEERS_KIT)"
    if not (state / peer / ".kit-ok").exists() or not (state / "clients" / ".kit-ok").exists():
        return f"{peer} not set up in {state}: run PEERS_DIR={state} {kit}/setup"
    return None


def start_peer(peer: str, model: str) -> Running:
    """``peers/start PEER MODEL GRPC HTTP`` on free ports; the kit polls its readiness."""
    grpc_port, rest_port = free_port(), free_port()
    env = {**os.environ, "PEERS_DIR": str(peers_state_dir())}
    t0 = time.perf_counter()
    proc = subprocess.run(
        [str(kit_dir() / "start"), peer, model, str(grpc_port), str(rest_port)],
        check=False, capture_output=True, text=True, env=env, timeout=READY_TIMEOUT_S + 30,
    )  # fmt: skip
    found = re.search(r"pid=(\d+) ready_s=([\d.]+).* log=(\S+)", proc.stdout)
    if proc.returncode != 0 or not found:
        raise StartFailed(
            f"peers/start {peer} {model} failed:\n{(proc.stdout + proc.stderr)[-1500:]}"
        )
    ready_s = float(found.group(2)) if found.group(2) else time.perf_counter() - t0
    return Running(
        peer, int(found.group(1)), grpc_port, rest_port, True, ready_s, Path(found.group(3))
    )


def stop_peer(running: Running) -> None:
    """``peers/stop PID``."""
    env = {**os.environ, "PEERS_DIR": str(peers_state_dir())}
    subprocess.run(
        [str(kit_dir() / "stop"), str(running.pid)],
        check=False,
        capture_output=True,
        env=env,
        timeout=60,
    )
