"""Paired before/after of the batching path on the tiny model: this tree against another src/.

usage: .venv/bin/python bench/batching_paired.py --baseline_src PATH [--pairs N] [--seconds N]
                                                 [--cases kserve:1 rest:1 rest:8]
                                                 [--baseline_flags="--dynamic_batching off"]

On a shared, noisy machine one long run per server says little, so both servers (default
flags, ``--metrics_enable``) stay up and are loaded in turns: per pair and case, one short run
each, the order alternating. Each pair gives a ratio (baseline / this tree) of req/s and of
server CPU per request (/proc utime+stime of the server's session over the run), so slow
moments hit both sides of a pair. Printed per case: the medians of the cells, the median
ratio with its interquartile range, how many pairs had this tree cheaper, and the mean batch
(requests per inference, from ``ovserve_batch_size``).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import shlex
import statistics
import sys
import time
from pathlib import Path

import servers
import throughput
from bench import machine, uptime
from models import make_onnx_models, tiny_request

BENCH = Path(__file__).resolve().parent


def quartiles(values: list[float]) -> str:
    values = sorted(values)
    if len(values) < 4:
        return f"{statistics.median(values):.3f}"
    q1, q2, q3 = statistics.quantiles(values, n=4)
    return f"{q2:.3f} ({q1:.3f}..{q3:.3f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline_src", type=Path, required=True)
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--seconds", type=int, default=2)
    parser.add_argument("--cases", nargs="+", default=["kserve:1", "rest:1", "rest:8"])
    parser.add_argument("--baseline_flags", default="", help="more flags for the baseline server")
    parser.add_argument("--out", type=Path, default=BENCH / "results")
    args = parser.parse_args()
    cases = [(api, int(conc)) for api, conc in (case.split(":") for case in args.cases)]
    logs, work = args.out / "logs", args.out / "bodies"
    logs.mkdir(parents=True, exist_ok=True)
    models = args.out / "models"
    make_onnx_models(models)
    before = uptime()
    started = time.strftime("%Y-%m-%d %H:%M %Z")
    req = tiny_request()
    runs: dict[tuple[str, int, str], list[throughput.Run]] = {}
    with contextlib.ExitStack() as stack:
        targets = []
        for name, src in (("this tree", None), ("baseline", args.baseline_src)):
            flags = ["--metrics_enable"]
            if name == "baseline":
                flags += shlex.split(args.baseline_flags)
            t = throughput.start(name.replace(" ", "-"), "tiny", models / "tiny", logs, flags,
                                 env_src=src)  # fmt: skip
            stack.callback(servers.stop, t.srv)
            targets.append((name, t))
        measures = {
            (api, conc, name): throughput.measure_server(
                t, req, api, conc, args.seconds, work, logs / "load-last.txt"
            )
            for api, conc in cases
            for name, t in targets
        }
        for api, conc in cases:  # warm-up
            for name, _ in targets:
                measures[(api, conc, name)]()
        for pair in range(args.pairs):
            for api, conc in cases:
                order = [name for name, _ in targets]
                if pair % 2:
                    order.reverse()
                for name in order:
                    run = measures[(api, conc, name)]()
                    runs.setdefault((api, conc, name), []).append(run)
            print(f"pair {pair + 1}/{args.pairs} done", flush=True)
    print(f"\n{started}; {machine()}; uptime before: {before}; after: {uptime()}")
    print(f"command: bench/batching_paired.py {shlex.join(sys.argv[1:])}\n")
    head = ["API", "c", "this tree req/s, CPU µs/req, b", "baseline req/s, CPU µs/req, b",
            "req/s baseline / this", "CPU/req baseline / this",
            "pairs this tree cheaper"]  # fmt: skip
    print("| " + " | ".join(head) + " |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for api, conc in cases:
        mine, base = runs[(api, conc, "this tree")], runs[(api, conc, "baseline")]

        def cell(rs: list[throughput.Run]) -> str:
            batches = [r.batch for r in rs if not math.isnan(r.batch)]
            b = statistics.median(batches) if batches else math.nan
            return (f"{statistics.median(r.rps for r in rs):,.0f}, "
                    f"{statistics.median(r.cpu_us for r in rs):.0f}, b={b:.2f}")  # fmt: skip

        rps = [b.rps / m.rps for m, b in zip(mine, base, strict=True) if m.rps]
        cpu = [b.cpu_us / m.cpu_us for m, b in zip(mine, base, strict=True) if m.cpu_us]
        cheaper = sum(1 for m, b in zip(mine, base, strict=True) if m.cpu_us < b.cpu_us)
        print(f"| {api} | {conc} | {cell(mine)} | {cell(base)} | {quartiles(rps)} |"
              f" {quartiles(cpu)} | {cheaper} of {len(mine)} |")  # fmt: skip
    print(
        "\nCells: medians over the pairs; ratios: median (interquartile range) of per-pair ratios."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
