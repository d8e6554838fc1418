"""Server memory under large JSON bodies: 8 parallel ~15 MB KServe JSON requests.

Prints the server's idle RSS, its peak above idle while the requests run (sampled every 20 ms)
and its RSS above idle 30 s after they finish, for each ``--rest_memory_quota`` given (0 turns
the budget off: the "before" column). Issue 9's targets: peak < 400 MiB above idle, back within
100 MiB of idle 30 s later.

    .venv/bin/python bench/json_memory.py [--quotas 0 134217728] [--parallel 8] [--rounds 3]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import onnx
import psutil
import requests
from onnx import TensorProto, helper

MIB = 1024 * 1024


def _model(folder: Path, echo: bool) -> None:
    """``echo``: the output is the input (a reply as large as the request); else a sum."""
    node = (
        helper.make_node("Identity", ["a"], ["total"])
        if echo
        else helper.make_node("ReduceSum", ["a"], ["total"], keepdims=0)
    )
    graph = helper.make_graph(
        [node],
        "sum",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("total", TensorProto.FLOAT, ["n", 4] if echo else [])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 8
    (folder / "1").mkdir(parents=True)
    onnx.save(model, folder / "1" / "model.onnx")


def _body(megabytes: float) -> bytes:
    rows = int(megabytes * MIB / 4 / 10)
    values = np.random.default_rng(0).random((rows, 4)).astype(np.float32)
    data = ",".join(f"{v:.7f}" for v in values.ravel())
    head = '{"inputs":[{"name":"a","datatype":"FP32","shape":[' + str(rows) + ',4],"data":['
    return (head + data + "]}]}").encode()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rss(process: psutil.Process) -> int:
    return int(process.memory_info().rss)


def measure(
    quota: int, body: bytes, parallel: int, rounds: int, *, settle: float, echo: bool
) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        _model(Path(folder) / "m", echo)
        port, grpc_port = _free_port(), _free_port()
        command = [
            sys.executable,
            "-m",
            "ovserve",
            "--model_name",
            "m",
            "--model_path",
            f"{folder}/m",
            "--port",
            str(grpc_port),
            "--rest_port",
            str(port),
            "--rest_bind_address",
            "127.0.0.1",
            "--grpc_bind_address",
            "127.0.0.1",
            "--rest_memory_quota",
            str(quota),
        ]
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 120
            while True:
                try:
                    if requests.get(f"{url}/v2/models/m/ready", timeout=1).status_code == 200:
                        break
                except requests.RequestException:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("server did not start")
                time.sleep(0.1)
            process = psutil.Process(server.pid)
            small = _body(0.01)
            requests.post(f"{url}/v2/models/m/infer", data=small, timeout=30).raise_for_status()
            time.sleep(1)
            idle = _rss(process)
            peak = idle
            stop = threading.Event()

            def sample() -> None:
                nonlocal peak
                while not stop.is_set():
                    peak = max(peak, _rss(process))
                    time.sleep(0.02)

            sampler = threading.Thread(target=sample)
            sampler.start()
            statuses: list[int] = []

            def post(_: int) -> int:
                with requests.Session() as session:
                    return session.post(
                        f"{url}/v2/models/m/infer", data=body, timeout=300
                    ).status_code

            started = time.monotonic()
            with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
                for _ in range(rounds):
                    statuses += pool.map(post, range(parallel))
            seconds = time.monotonic() - started
            stop.set()
            sampler.join()
            time.sleep(settle)
            after = _rss(process)
            return {
                "idle_mib": idle / MIB,
                "peak_above_idle_mib": (peak - idle) / MIB,
                "after_above_idle_mib": (after - idle) / MIB,
                "seconds": seconds,
                "ok": statuses.count(200),
                "requests": len(statuses),
            }
        finally:
            server.terminate()
            server.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quotas", type=int, nargs="+", default=[0, 64 * MIB])
    parser.add_argument("--megabytes", type=float, default=15.5)
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--settle", type=float, default=30.0)
    parser.add_argument("--echo", action="store_true", help="reply with the input (large reply)")
    args = parser.parse_args()
    body = _body(args.megabytes)
    print(f"body {len(body) / MIB:.1f} MiB, {args.parallel} parallel x {args.rounds} rounds")
    print(
        f"quota_bytes  idle_MiB  peak_above_idle_MiB  after_{args.settle:g}s_above_idle_MiB"
        "  seconds  ok"
    )
    for quota in args.quotas:
        row = measure(quota, body, args.parallel, args.rounds, settle=args.settle, echo=args.echo)
        print(
            f"{quota:>11}  {row['idle_mib']:8.0f}  {row['peak_above_idle_mib']:19.0f}  "
            f"{row['after_above_idle_mib']:24.0f}  {row['seconds']:7.1f}  "
            f"{row['ok']}/{row['requests']}"
        )


if __name__ == "__main__":
    main()
