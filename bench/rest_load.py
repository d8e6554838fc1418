"""REST load on the tiny model: KServe JSON, KServe binary and TF Serving REST at c=1 and c=8.

usage: .venv/bin/python bench/rest_load.py [--seconds 5] [--concurrency 1 8]
           [--apis kserve-json kserve-binary tfs-row kserve-grpc] [--metrics]
           [-- extra ovserve flags]

Starts ``python -m ovserve`` on free loopback ports with the tiny model ([1,16] FP32 MatMul +
Add + Relu → [1,4], the peers kit's "tiny", seed 0), checks each body once, warms up, then
drives it with ``hey`` (keep-alive workers, closed loop) and prints one markdown table.
``kserve-grpc`` is the same request over gRPC with ``h2load`` (c connections x 1 stream), for
comparison on the same server. The last column is the server's CPU time (all threads, from
/proc) per answered request: on a shared machine it moves far less than req/s does.
Flags after ``--`` go to ovserve, e.g. ``-- --plugin_config '{"PERFORMANCE_HINT":"LATENCY"}'``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from servers import free_port

HOST = "127.0.0.1"
WARMUP = 20


@dataclass(frozen=True)
class Body:
    """One request kind: path, body and extra headers."""

    path: str
    data: bytes
    headers: dict[str, str]


def tiny_model(folder: Path) -> Path:
    """The peers kit's tiny model: x [-1,16] → MatMul(16x4) + Add + Relu → y [-1,4]."""
    rng = np.random.default_rng(0)
    weights = numpy_helper.from_array(rng.standard_normal((16, 4)).astype(np.float32), "W")
    bias = numpy_helper.from_array(rng.standard_normal((4,)).astype(np.float32), "B")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["mm"]),
            helper.make_node("Add", ["mm", "B"], ["add"]),
            helper.make_node("Relu", ["add"], ["y"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        initializer=[weights, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = folder / "tiny" / "1" / "model.onnx"
    path.parent.mkdir(parents=True)
    onnx.save(model, path)
    return path.parent.parent


def bodies() -> dict[str, Body]:
    """The request bodies, all for x = ones([1, 16])."""
    x = np.ones((1, 16), np.float32)
    kserve_json = {"inputs": [{"name": "x", "shape": [1, 16], "datatype": "FP32",
                               "data": x.ravel().tolist()}]}  # fmt: skip
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": [1, 16],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": x.nbytes},
                }
            ],
            "outputs": [{"name": "y", "parameters": {"binary_data": True}}],
        }
    ).encode()
    return {
        "kserve-json": Body("/v2/models/tiny/infer", json.dumps(kserve_json).encode(), {}),
        "kserve-binary": Body(
            "/v2/models/tiny/infer",
            header + x.tobytes(),
            {"Inference-Header-Content-Length": str(len(header))},
        ),
        "tfs-row": Body(
            "/v1/models/tiny:predict", json.dumps({"instances": x.tolist()}).encode(), {}
        ),
    }


def grpc_frame(folder: Path) -> Path:
    """A length-prefixed gRPC frame of ModelInfer(x = ones([1, 16])) for h2load."""
    from tritonclient.grpc import service_pb2

    request = service_pb2.ModelInferRequest(model_name="tiny")
    tensor = request.inputs.add(name="x", datatype="FP32")
    tensor.shape.extend([1, 16])
    request.raw_input_contents.append(np.ones((1, 16), np.float32).tobytes())
    message = request.SerializeToString()
    path = folder / "infer.grpc"
    path.write_bytes(b"\x00" + len(message).to_bytes(4, "big") + message)
    return path


def run_h2load(port: int, frame: Path, concurrency: int, seconds: int) -> dict[str, float]:
    command = [
        "h2load", "-D", str(seconds), "-c", str(concurrency), "-m", "1", "-t", "1",
        "-H", "content-type: application/grpc", "-H", "te: trailers", "-d", str(frame),
        f"http://{HOST}:{port}/inference.GRPCInferenceService/ModelInfer",
    ]  # fmt: skip
    output = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + 60, check=True
    ).stdout
    rate = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", output)
    mean = re.search(r"time for request:\s+\S+\s+\S+\s+([\d.]+)(us|ms)", output)
    failed = re.search(r"(\d+) failed, (\d+) errored", output)
    done = re.search(r"(\d+) succeeded", output)
    if rate is None or failed is None:
        sys.exit(f"h2load output not understood:\n{output}")
    mean_ms = float("nan")
    if mean:
        mean_ms = float(mean.group(1)) / (1000 if mean.group(2) == "us" else 1)
    errors = float(int(failed.group(1)) + int(failed.group(2)))
    return {
        "requests": float(done.group(1)) if done else 0.0,
        "rps": float(rate.group(1)),
        "mean_ms": mean_ms,
        "p99_ms": float("nan"),
        "errors": errors,
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(
    model_path: Path, extra: list[str], log: Path
) -> tuple[subprocess.Popen[bytes], int, int]:
    rest_port, grpc_port = free_port(), free_port()
    command = [
        sys.executable, "-m", "ovserve", "--model_name", "tiny", "--model_path", str(model_path),
        "--port", str(grpc_port), "--rest_port", str(rest_port),
        "--grpc_bind_address", HOST, "--rest_bind_address", HOST, *extra,
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"ovserve exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"http://{HOST}:{rest_port}/v2/health/ready", timeout=2):
                return process, rest_port, grpc_port
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    process.kill()
    sys.exit(f"ovserve was not ready in 120 s:\n{log.read_text()}")


def check(url: str, body: Body) -> None:
    for _ in range(WARMUP + 1):
        request = urllib.request.Request(url, data=body.data, headers=body.headers)
        with urllib.request.urlopen(request, timeout=30) as response:
            if response.status != 200:
                sys.exit(f"check failed: {url} answered {response.status}")
            response.read()


def run_hey(
    url: str, body: Body, concurrency: int, seconds: int, body_file: Path
) -> dict[str, float]:
    body_file.write_bytes(body.data)
    command = [
        "hey",
        "-z",
        f"{seconds}s",
        "-c",
        str(concurrency),
        "-m",
        "POST",
        "-D",
        str(body_file),
    ]
    for key, value in body.headers.items():
        command += ["-H", f"{key}: {value}"]
    output = subprocess.run(
        [*command, url], capture_output=True, text=True, timeout=seconds + 60, check=True
    ).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    mean = re.search(r"Average:\s+([\d.]+) secs", output)
    p99 = re.search(r"99% in ([\d.]+) secs", output)
    codes = {int(c): int(n) for c, n in re.findall(r"\[(\d+)\]\s+(\d+) responses", output)}
    if rate is None:
        sys.exit(f"hey output not understood:\n{output}")
    return {
        "requests": float(sum(codes.values())),
        "rps": float(rate.group(1)),
        "mean_ms": float(mean.group(1)) * 1e3 if mean else float("nan"),
        "p99_ms": float(p99.group(1)) * 1e3 if p99 else float("nan"),
        "errors": float(sum(n for code, n in codes.items() if code != 200)),
    }


def main() -> None:
    argv = sys.argv[1:]
    extra: list[str] = []
    if "--" in argv:
        split = argv.index("--")
        argv, extra = argv[:split], argv[split + 1 :]
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument(
        "--apis", nargs="+", default=list(bodies()), choices=[*bodies(), "kserve-grpc"]
    )
    parser.add_argument("--metrics", action="store_true", help="serve with --metrics_enable")
    args = parser.parse_args(argv)
    if shutil.which("hey") is None:
        sys.exit("hey is not installed (apt-get install -y hey)")
    if args.metrics:
        extra = [*extra, "--metrics_enable"]
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        process, port, grpc_port = start_server(tiny_model(folder), extra, folder / "ovserve.log")
        try:
            flags = " ".join(extra) or "(default flags)"
            print(f"ovserve {flags}; {os.cpu_count()} CPUs; hey {args.seconds} s per row")
            print("| API | c | req/s | mean ms | p99 ms | errors | server CPU µs/req |")
            print("|---|---|---|---|---|---|---|")
            for api in args.apis:
                if api == "kserve-grpc":
                    frame = grpc_frame(folder)
                    run_h2load(grpc_port, frame, 1, 1)
                else:
                    body = bodies()[api]
                    url = f"http://{HOST}:{port}{body.path}"
                    check(url, body)
                for concurrency in args.concurrency:
                    cpu_before = cpu_seconds(process.pid)
                    if api == "kserve-grpc":
                        result = run_h2load(grpc_port, frame, concurrency, args.seconds)
                    else:
                        result = run_hey(url, body, concurrency, args.seconds, folder / "body")
                    spent = cpu_seconds(process.pid) - cpu_before
                    cpu_us = spent * 1e6 / max(result["requests"], 1.0)
                    print(
                        f"| {api} | {concurrency} | {result['rps']:.0f} | {result['mean_ms']:.2f} "
                        f"| {result['p99_ms']:.2f} | {result['errors']:.0f} | {cpu_us:.0f} |",
                        flush=True,
                    )
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


if __name__ == "__main__":
    main()
