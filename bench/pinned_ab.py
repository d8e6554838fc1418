"""Side by side: running ovserve servers loaded in turn with the bench's conv request, the load
pinned to core 1; per server the median req/s, the server's CPU per request and its event-loop
thread's share of it.

usage: .venv/bin/python bench/pinned_ab.py ROUNDS SECONDS h2load|grpcio|rest NAME=PORT[:REST] ...

Start the servers yourself, each on core 0 and from the tree to compare, for example

    taskset -c 0 .venv/bin/ovserve --model_name conv --model_path bench/results/models/conv \
        --port 9411 --rest_port 9412 &
    PYTHONPATH=/tmp/other/src taskset -c 0 .venv/bin/python -m ovserve ... --port 9511 ... &

then ``bench/pinned_ab.py 6 3 h2load new=9411 old=9511``. h2load sends 16 KiB DATA frames; the
grpcio client (a Python channel on two threads) sends large ones; rest is hey with the binary
tensor extension. Rounds interleave the servers, so a machine that slows down slows all of them.
(bench/run-throughput measures the same against in-process OpenVINO; this tool is for quick
comparisons of two trees' request paths.)
"""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bodies import write_grpc_bodies
from models import conv_request
from throughput import write_binary_body

LOAD_CORE = "1"
INFER_PATH = "/inference.GRPCInferenceService/ModelInfer"


def grpcio_client(port: str, conc: int, seconds: float, body: Path) -> None:
    """``conc`` threads calling ModelInfer with the raw message for ``seconds``; prints n=."""
    import threading
    import time

    import grpc

    raw = body.read_bytes()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    call = channel.unary_unary(INFER_PATH)
    call(raw)
    done, stop = [0], time.time() + seconds

    def work() -> None:
        while time.time() < stop:
            call(raw)
            done[0] += 1

    threads = [threading.Thread(target=work) for _ in range(conc)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(f"n={done[0]}")


def _pid(port: str) -> str:
    found = subprocess.run(
        ["pgrep", "-f", f"port {port}"], capture_output=True, text=True, check=False
    )
    pids = found.stdout.split()
    if not pids:
        raise SystemExit(f"no server with --port {port}")
    return pids[0]


def _ticks(stat: Path) -> int:
    fields = stat.read_text().rsplit(") ", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _cpu(pid: str) -> tuple[int, int]:
    """CPU ticks of the whole process and of its main (event-loop) thread."""
    tasks = Path(f"/proc/{pid}/task")
    total = sum(_ticks(task / "stat") for task in tasks.iterdir())
    return total, _ticks(tasks / pid / "stat")


def _load(  # noqa: PLR0917
    kind: str, port: str, rest_port: str, seconds: int, bodies: dict[str, Path], header: int
) -> int:
    """Requests answered in ``seconds`` with 2 in flight."""
    pin = ["taskset", "-c", LOAD_CORE]
    if kind == "h2load":
        out = subprocess.run(
            [*pin, "h2load", "-D", str(seconds), "-c", "2", "-m", "1", "-t", "1",
             "-H", "content-type: application/grpc", "-H", "te: trailers",
             "-d", str(bodies["grpc"]), f"http://127.0.0.1:{port}{INFER_PATH}"],
            capture_output=True, text=True, check=False,
        ).stdout  # fmt: skip
        return int(re.search(r"(\d+) succeeded", out).group(1))  # type: ignore[union-attr]
    if kind == "grpcio":
        out = subprocess.run(
            [*pin, sys.executable, __file__, "grpcio-client", port, str(seconds),
             str(bodies["pb"])],
            capture_output=True, text=True, check=False,
        ).stdout  # fmt: skip
        return int(re.search(r"n=(\d+)", out).group(1))  # type: ignore[union-attr]
    out = subprocess.run(
        [*pin, "hey", "-z", f"{seconds}s", "-c", "2", "-m", "POST", "-T",
         "application/octet-stream", "-H", f"Inference-Header-Content-Length: {header}",
         "-D", str(bodies["rest"]), f"http://127.0.0.1:{rest_port}/v2/models/conv/infer"],
        capture_output=True, text=True, check=False,
    ).stdout  # fmt: skip
    return int(re.search(r"\[200\]\s+(\d+)", out).group(1))  # type: ignore[union-attr]


def main() -> None:
    if sys.argv[1] == "grpcio-client":  # the load itself, run pinned by _load
        grpcio_client(sys.argv[2], 2, float(sys.argv[3]), Path(sys.argv[4]))
        return
    rounds, seconds, kind = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    servers = [arg.split("=", 1) for arg in sys.argv[4:]]
    folder = Path(tempfile.mkdtemp(prefix="pinned-ab-"))
    request = conv_request()
    grpc_bodies = write_grpc_bodies(request, "kserve", folder)
    rest, header = write_binary_body(request, folder)
    bodies = {"grpc": grpc_bodies.grpc_frame, "pb": grpc_bodies.pb, "rest": rest}
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name, _ in servers}
    for _ in range(rounds):
        for name, ports in servers:
            port, _, rest_port = ports.partition(":")
            pid = _pid(port)
            before = _cpu(pid)
            answered = _load(kind, port, rest_port, seconds, bodies, header)
            after = _cpu(pid)
            per = 1e4 / max(answered, 1)  # 100 ticks per second: us per request
            results[name].append(
                (answered / seconds, (after[0] - before[0]) * per, (after[1] - before[1]) * per)
            )
    for name, runs in results.items():
        rate, cpu, loop = (statistics.median(column) for column in zip(*runs, strict=True))
        print(
            f"{kind} {name:12s} req/s {rate:6.1f}  CPU/req {cpu:6.0f} us"
            f"  event-loop thread {loop:5.0f} us  ({len(runs)} rounds)"
        )


if __name__ == "__main__":
    main()
