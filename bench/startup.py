"""Start-up time and memory against the number of models (issue 14).

usage: .venv/bin/python bench/startup.py [--counts 1 20 80 200] [--runs 3]

For each count N it writes N copies of a small dynamic ONNX conv model (input [1,3,-1,-1],
3x3 conv to 4 channels + relu, one model folder each) and a config.json listing them, then:
  ovserve      starts ``python -m ovserve --config_path ...`` and measures seconds from process
               start to gRPC ServerReady (every model is loaded before the ports open) and the
               process's RSS then (VmRSS);
  in-process   a fresh Python process that imports OpenVINO and reads + compiles the same N
               files one after another (what any server must at least do), same measures.
It prints the medians over ``--runs`` and the ratios ovserve / in-process, plus the RSS each
added model costs ((RSS_N - RSS_1) / (N - 1)). An empty config.json (0 models) gives the
server's own baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient

from servers import free_port

READY_BOUND_S = 300.0

IN_PROCESS = """
import sys, time
import openvino as ov
from pathlib import Path
core = ov.Core()
compiled = [core.compile_model(core.read_model(str(path)), "CPU") for path in sys.argv[1:]]
with open("/proc/self/status") as status:
    rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
print(rss)
"""


def conv_onnx(path: Path, seed: int) -> None:
    """The small dynamic conv model of issue 14's report."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    weights = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(4).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["data", "w", "b"], ["conv"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["conv"], ["out"]),
        ],
        "conv",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, "h", "w"])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4, "h", "w"])],
        [numpy_helper.from_array(weights, "w"), numpy_helper.from_array(bias, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def repository(root: Path, count: int) -> tuple[Path, list[Path]]:
    """``root/conv<i>/1/model.onnx`` for i < count and a config.json listing them."""
    root.mkdir(parents=True, exist_ok=True)
    files, entries = [], []
    for index in range(count):
        path = root / f"conv{index}" / "1" / "model.onnx"
        conv_onnx(path, index)
        files.append(path)
        entries.append({"config": {"name": f"conv{index}", "base_path": str(path.parent.parent)}})
    config = root / f"config-{count}.json"
    config.write_text(json.dumps({"model_config_list": entries}))
    return config, files


def rss_mib(pid: int) -> float:
    """Resident set size of a process, MiB."""
    with open(f"/proc/{pid}/status") as status:
        kib = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return kib / 1024


def start_server(config: Path, log_path: Path) -> tuple[float, float]:
    """Seconds from process start to gRPC ready, and RSS (MiB) then."""
    port = free_port()
    command = [sys.executable, "-m", "ovserve", "--config_path", str(config)]
    command += ["--port", str(port), "--grpc_bind_address", "127.0.0.1"]
    command += ["--file_system_poll_wait_seconds", "0"]
    started = time.perf_counter()
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{port}")
    try:
        while True:
            if process.poll() is not None:
                raise SystemExit(f"ovserve exited:\n{log_path.read_text()}")
            if time.perf_counter() - started > READY_BOUND_S:
                raise SystemExit(f"ovserve not ready in {READY_BOUND_S} s:\n{log_path.read_text()}")
            try:
                if client.is_server_ready():
                    break
            except Exception:  # not listening yet
                time.sleep(0.01)
        ready = time.perf_counter() - started
        rss = rss_mib(process.pid)
    finally:
        client.close()
        process.send_signal(signal.SIGTERM)
        process.wait(120)
    return ready, rss


def in_process(files: list[Path]) -> tuple[float, float]:
    """Seconds for a fresh process to read and compile ``files``, and its RSS (MiB) then."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", IN_PROCESS, *map(str, files)],
        check=True,
        capture_output=True,
        text=True,
    )
    return time.perf_counter() - started, int(done.stdout.split()[-1]) / 1024


def main() -> int:
    """Run the measurement and print the table."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 20, 80, 200])
    parser.add_argument("--runs", type=int, default=3)
    options = parser.parse_args()
    load = os.getloadavg()
    print(
        f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, load average "
        f"{load[0]:.1f}, {options.runs} runs each, medians"
    )
    print(
        "| models | ovserve ready s (max) | in-process s | ratio | ovserve RSS MiB | "
        "in-process RSS MiB | ovserve MiB per added model |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        empty, _ = repository(root / "empty", 0)
        base = statistics.median(start_server(empty, root / "empty.log")[1] for _ in range(2))
        print(f"| 0 | | | | {base:.0f} | | |", flush=True)
        first_rss: float | None = None
        for count in options.counts:
            config, files = repository(root / str(count), count)
            server = [start_server(config, root / f"{count}.log") for _ in range(options.runs)]
            alone = [in_process(files) for _ in range(options.runs)]
            ready = statistics.median(run[0] for run in server)
            slowest = max(run[0] for run in server)
            rss = statistics.median(run[1] for run in server)
            alone_s = statistics.median(run[0] for run in alone)
            alone_rss = statistics.median(run[1] for run in alone)
            first_rss = rss if first_rss is None else first_rss
            per_model = (rss - first_rss) / (count - 1) if count > 1 else rss - base
            print(
                f"| {count} | {ready:.2f} ({slowest:.2f}) | {alone_s:.2f} | "
                f"{ready / alone_s:.2f} | {rss:.0f} | {alone_rss:.0f} | {per_model:.1f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
