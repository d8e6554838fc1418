"""gRPC stacks answering without inference, side by side: what each costs per request.

usage: .venv/bin/python bench/grpc_floors.py [--grpclib DIR] [--rounds 3] [--seconds 3]
                                              [--concs 1 8 32]

Servers (each answers KServe ModelInfer on the tiny model's request with a [1,4] reply):
  grpc.aio-floor    bench/floor.py: grpc.aio on uvloop, parse and reply, nothing else
  grpclib-floor     bench/grpclib_floor.py, the same on grpclib (with --grpclib: a folder
                    holding grpclib, e.g. from ``pip install --target DIR grpclib``)
  ovserve-native    ovserve's whole gRPC path (registration, error guard, request parser) on
                    the native transport, ModelInfer replaced by a fixed reply
                    (``OVSERVE_STAGES=fixed`` bench/grpc_stages.py)
  ovserve-grpcio    the same with --grpc_stack grpcio
Load: h2load, C connections x 1 stream, rounds interleaved; server CPU from /proc.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

import bodies
import cpuload
import loadgen
import servers
from models import ROOT, make_onnx_models, tiny_request

BENCH = Path(__file__).resolve().parent
PYTHON = str(ROOT / ".venv" / "bin" / "python")


def _start_all(args: argparse.Namespace, logs: Path, models: Path) -> list[servers.Running]:
    started = [servers.start_floor(logs)]
    if args.grpclib is not None:
        port = servers.free_port()
        cmd = [PYTHON, str(BENCH / "grpclib_floor.py"), str(port)]
        os.environ["PYTHONPATH"] = str(args.grpclib)
        try:
            started.append(servers._start("grpclib-floor", cmd, "tiny", port, 0, logs / "gl.log"))
        finally:
            os.environ.pop("PYTHONPATH", None)
    os.environ["OVSERVE_STAGES"] = "fixed"
    try:
        for name, extra in (("ovserve-native", []), ("ovserve-grpcio", ["--grpc_stack", "grpcio"])):
            port = servers.free_port()
            cmd = [
                PYTHON, str(BENCH / "grpc_stages.py"), "--model_name", "tiny",
                "--model_path", str(models / "tiny"), "--port", str(port),
                "--grpc_bind_address", "127.0.0.1", *extra,
            ]  # fmt: skip
            started.append(servers._start(name, cmd, "tiny", port, 0, logs / f"{name}.log"))
    finally:
        os.environ.pop("OVSERVE_STAGES", None)
    return started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--grpclib", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--concs", type=int, nargs="+", default=[1, 8, 32])
    args = parser.parse_args()
    out = BENCH / "results"
    models = out / "models"
    make_onnx_models(models)
    with tempfile.TemporaryDirectory() as work:
        frame = bodies.write_grpc_bodies(tiny_request(), "kserve", Path(work)).grpc_frame
        running = _start_all(args, out / "logs", models)
        table: dict[tuple[str, int], list[tuple[float, float]]] = {}
        try:
            for rnd in range(args.rounds):
                for conc in args.concs:
                    for srv in running[rnd % len(running) :] + running[: rnd % len(running)]:
                        before = cpuload.session_ticks(srv.pid)
                        load = loadgen.h2load(
                            f"127.0.0.1:{srv.grpc_port}", "kserve", frame, conc, args.seconds,
                            log=out / "logs" / "floors-load.txt",
                        )  # fmt: skip
                        cpu = cpuload.to_us(cpuload.session_ticks(srv.pid) - before)
                        table.setdefault((srv.name, conc), []).append(
                            (load.rps, cpu / max(load.n, 1))
                        )
                        print(f"r{rnd} {srv.name:15s} c={conc:<3d} {load.rps:9,.0f}/s "
                              f"{cpu / max(load.n, 1):6.0f} us CPU/req", flush=True)  # fmt: skip
        finally:
            for srv in running:
                servers.stop(srv)
    print("\n| server | c | req/s (median) | CPU/req (median) |\n| --- | --- | --- | --- |")
    for (name, conc), runs in table.items():
        rps = statistics.median(r for r, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        print(f"| {name} | {conc} | {rps:,.0f} | {cpu:,.0f} µs |")
    print(f"\ncommand: bench/grpc_floors.py {' '.join(sys.argv[1:])}")


if __name__ == "__main__":
    main()
