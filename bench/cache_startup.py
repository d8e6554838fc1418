"""Start-up time with and without ``--cache_dir``: does the model cache make restarts faster?

usage: .venv/bin/python bench/cache_startup.py [--model_path DIR ...] [--runs N]

For each model folder (default: the bench's conv model and, when prepared, the face model)
it starts ``ovserve`` N times in each mode and prints the median seconds from process start to
gRPC ready, and the median seconds of the engine's load (read + compile or cache import) in a
fresh process, timed around ``OpenVINOEngine.load``:
  no cache    no --cache_dir
  cold cache  --cache_dir pointing at an empty folder (compiles and writes the cache)
  warm cache  the same folder again (imports the compiled blob)
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import tritonclient.grpc as grpcclient

from servers import free_port

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "bench" / "results" / "models"


LOAD_SNIPPET = """
import sys, time
from pathlib import Path
from ovserve.config.model_config import ModelConfig
from ovserve.engine.openvino_engine import OpenVINOEngine
from ovserve.repository.versions import find_model_file, list_versions
base, cache = Path(sys.argv[1]), (Path(sys.argv[2]) if sys.argv[2] else None)
model_file = find_model_file(list_versions(base)[max(list_versions(base))])
engine = OpenVINOEngine()
started = time.perf_counter()
compiled = engine.load(model_file, ModelConfig(name="m", base_path=base, cache_dir=cache))
print(time.perf_counter() - started)
compiled.close()
"""


def load_once(model_path: Path, cache: Path | None) -> float:
    """Seconds ``OpenVINOEngine.load`` takes in a fresh process."""
    out = subprocess.run(
        [sys.executable, "-c", LOAD_SNIPPET, str(model_path), str(cache or "")],
        check=True,
        capture_output=True,
        text=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def start_once(model_path: Path, cache: Path | None, log_path: Path) -> float:
    """Seconds from process start to gRPC ready."""
    port = free_port()
    args = [sys.executable, "-m", "ovserve", "--model_name", "m", "--model_path", str(model_path)]
    args += ["--port", str(port), "--file_system_poll_wait_seconds", "0"]
    if cache is not None:
        args += ["--cache_dir", str(cache)]
    started = time.perf_counter()
    with log_path.open("wb") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{port}")
    try:
        while True:
            if process.poll() is not None:
                raise SystemExit(f"ovserve exited:\n{log_path.read_text()}")
            try:
                if client.is_server_ready():
                    break
            except Exception:  # not listening yet
                time.sleep(0.01)
        ready = time.perf_counter() - started
    finally:
        client.close()
        process.send_signal(signal.SIGTERM)
        process.wait(60)
    return ready


def default_models() -> list[Path]:
    """The conv model (built if missing) and the face model when prepared."""
    sys.path.insert(0, str(ROOT / "bench"))
    from models import make_onnx_models

    make_onnx_models(MODELS)
    found = [MODELS / "conv"]
    if (MODELS / "face" / "1").is_dir():
        found.append(MODELS / "face")
    return found


def main() -> int:
    """Run the measurement and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_path", type=Path, action="append", default=None)
    parser.add_argument("--runs", type=int, default=3)
    options = parser.parse_args()
    models = options.model_path or default_models()
    print(f"# {datetime.now():%Y-%m-%d %H:%M}, {os.cpu_count()} CPUs, {options.runs} runs each")
    print(f"{'model':<8} {'mode':<11} {'ready s':>8} {'load s':>8}")
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        for model in models:
            cache = work / f"cache-{model.name}"
            modes: dict[str, list[tuple[float, float]]] = {"no cache": [], "cold cache": []}
            modes["warm cache"] = []
            for run in range(options.runs):
                log = work / f"{model.name}-{run}.log"
                modes["no cache"].append((start_once(model, None, log), load_once(model, None)))
                shutil.rmtree(cache, ignore_errors=True)
                cold = start_once(model, cache, log)
                shutil.rmtree(cache, ignore_errors=True)
                modes["cold cache"].append((cold, load_once(model, cache)))
                modes["warm cache"].append((start_once(model, cache, log), load_once(model, cache)))
            for mode, times in modes.items():
                ready = statistics.median(t[0] for t in times)
                load = statistics.median(t[1] for t in times)
                print(f"{model.name:<8} {mode:<11} {ready:8.2f} {load:8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
