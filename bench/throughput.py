"""Throughput bench: batching, workers, one core per side, memory. Tables for bench/throughput.md.

usage: bench/run-throughput [--seconds N] [--rounds N] [--sections tiny pinned memory]
                            [--peers auto|none] [--baseline_src PATH] [--concs N ...]
                            [--tiny_servers ovserve ovserve-nobatch ovserve-2workers]

Sections (every ratio is taken within one run, variants interleaved in rounds):
  tiny    the tiny model over KServe gRPC (h2load) and REST JSON (hey) at c = 1, 8, 32:
          ovserve with default flags, with --dynamic_batching off, with --grpc_workers 2, and
          Triton from the peer kit (and ovserve-baseline: --baseline_src's tree). Per run:
          req/s, latency, server CPU per request, and for ovserve the mean batch (requests per
          inference, from ovserve_batch_size in /metrics).
  pinned  conv (602 KB) and face (300x300, 600x400): the server pinned to core 0, the load
          generator to core 1 (sched affinity, inherited by h2load/hey), against in-process
          OpenVINO pinned to core 0; KServe gRPC raw and KServe REST with the binary extension.
          With --baseline_src, a second server from that tree is measured in the same rounds.
  memory  idle RSS (and PSS) of a server, before and after traffic, for the face and tiny
          models, 1 and 2 workers; with --baseline_src, the same for another source tree
          (e.g. the main branch's src/) run with this venv.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import shlex
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import bodies
import cpuload
import loadgen
import servers
from bench import choose_peers, machine, prepare_face_model, uptime
from models import ROOT, Request, conv_request, face_request, make_onnx_models, tiny_request
from variants import InprocessWorker

BENCH = Path(__file__).resolve().parent
OVSERVE = ROOT / ".venv" / "bin" / "ovserve"
SERVER_CORE, LOAD_CORE = 0, 1


@dataclass
class Run:
    """One load run (or in-process measurement)."""

    section: str
    server: str
    model: str
    input: str
    api: str
    conc: int
    round: int
    rps: float
    mean_ms: float = math.nan
    p99_ms: float = math.nan
    errors: int = 0
    cpu_us: float = math.nan
    batch: float = math.nan  # mean requests per inference (ovserve)


@dataclass
class Target:
    """A started server and how to measure it."""

    name: str
    srv: servers.Running
    metrics: bool = False


@dataclass
class Results:
    """Everything measured, printed as markdown at the end."""

    runs: list[Run] = field(default_factory=list)
    memory: list[tuple[str, str, float, float, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def batch_counts(srv: servers.Running) -> tuple[float, float]:
    """(requests, inferences) so far from ovserve_batch_size; (0, 0) when absent."""
    try:
        with urllib.request.urlopen(f"{srv.rest_base}/metrics", timeout=10) as reply:
            text = reply.read().decode()
    except OSError:
        return 0.0, 0.0
    total = sum(float(v) for v in re.findall(r"^ovserve_batch_size_sum\{.*\} (\S+)$", text, re.M))
    count = sum(float(v) for v in re.findall(r"^ovserve_batch_size_count\{.*\} (\S+)$", text, re.M))
    return total, count


def start(  # noqa: PLR0917
    name: str,
    model: str,
    model_dir: Path,
    logs: Path,
    flags: list[str],
    prefix: list[str] | None = None,
    env_src: Path | None = None,
) -> Target:
    """ovserve on free ports (optionally under ``prefix``, e.g. taskset), ready."""
    grpc_port, rest_port = servers.free_port(), servers.free_port()
    python = ROOT / ".venv" / "bin" / "python"
    cmd = [
        *(prefix or []), str(python), "-m", "ovserve", "--model_name", model,
        "--model_path", str(model_dir), "--port", str(grpc_port), "--rest_port", str(rest_port),
        "--grpc_bind_address", "127.0.0.1", "--rest_bind_address", "127.0.0.1", *flags,
    ]  # fmt: skip
    log = logs / f"{name}-{model}.log"
    old = os.environ.get("PYTHONPATH")
    if env_src is not None:
        os.environ["PYTHONPATH"] = str(env_src)
    try:
        srv = servers._start(name, cmd, model, grpc_port, rest_port, log)
    finally:
        if env_src is not None:
            if old is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = old
    return Target(name, srv, "--metrics_enable" in flags)


def measure_server(  # noqa: PLR0917
    t: Target,
    req: Request,
    api: str,
    conc: int,
    seconds: int,
    work: Path,
    log: Path,
    binary: bool = False,
) -> Callable[[], Run]:
    """A checked, repeatable load run against ``t``."""
    srv = t.srv
    if api == "rest":
        url = f"{srv.rest_base}/v2/models/{req.model}/infer"
        if binary:
            body, header_len = write_binary_body(req, work)
            check_binary(url, body, header_len)
            headers = [f"Inference-Header-Content-Length: {header_len}"]

            def load() -> loadgen.LoadResult:
                return loadgen.hey(url, body, conc, seconds, log=log, headers=headers,
                                   content_type="application/octet-stream")  # fmt: skip
        else:
            body = bodies.write_rest_body(req, work)
            bodies.check_rest(url, req, body)

            def load() -> loadgen.LoadResult:
                return loadgen.hey(url, body, conc, seconds, log=log)
    else:
        b = bodies.write_grpc_bodies(req, "kserve", work)
        bodies.check_grpc(srv.grpc_target, req, b)

        def load() -> loadgen.LoadResult:
            return loadgen.h2load(srv.grpc_target, "kserve", b.grpc_frame, conc, seconds, log=log)

    def run() -> Run:
        before = batch_counts(srv) if t.metrics else (0.0, 0.0)
        ticks = cpuload.session_ticks(srv.pid)
        res = load()
        cpu = cpuload.to_us(cpuload.session_ticks(srv.pid) - ticks) / max(res.n, 1)
        after = batch_counts(srv) if t.metrics else (0.0, 0.0)
        inferences = after[1] - before[1]
        batch = (after[0] - before[0]) / inferences if inferences > 0 else math.nan
        label = api + ("-binary" if binary else "")
        return Run("", t.name, req.model, req.label, label, conc, 0, res.rps, res.mean_ms,
                   res.p99_ms, res.errors, cpu, batch)  # fmt: skip

    return run


def write_binary_body(req: Request, folder: Path) -> tuple[Path, int]:
    """A KServe v2 binary-extension body: JSON header, then the raw tensor."""
    raw = req.array().tobytes()
    spec = {
        "name": req.input,
        "shape": list(req.shape),
        "datatype": "FP32",
        "parameters": {"binary_data_size": len(raw)},
    }
    header = json.dumps({"inputs": [spec]}).encode()
    path = folder / f"rest-binary-{req.model}-{req.label}.bin"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + raw)
    return path, len(header)


def check_binary(url: str, body: Path, header_len: int) -> None:
    """POST the binary body once; HTTP 200 with outputs."""
    headers = {"Inference-Header-Content-Length": str(header_len),
               "Content-Type": "application/octet-stream"}  # fmt: skip
    request = urllib.request.Request(url, body.read_bytes(), headers)
    with urllib.request.urlopen(request, timeout=60) as reply:
        if reply.status != 200 or b"outputs" not in reply.read():
            raise RuntimeError(f"binary REST check failed at {url}")


def rounds(results: Results, section: str, variants: list[Callable[[], Run]], n: int) -> None:
    """Every variant once per round, the order rotating."""
    for r in range(n):
        shift = r % len(variants)
        for v in variants[shift:] + variants[:shift]:
            try:
                run = v()
            except (RuntimeError, OSError, subprocess.SubprocessError) as error:
                print(f"  failed: {str(error).splitlines()[0] if str(error) else error!r}")
                continue
            run.section, run.round = section, r
            results.runs.append(run)
            batch = "" if math.isnan(run.batch) else f" batch {run.batch:.2f}"
            errors = f" ERRORS {run.errors}" if run.errors else ""
            print(f"  r{r} {run.server:16} {run.model:5} {run.input:9} {run.api:12} c={run.conc:<3}"
                  f" {run.rps:8,.0f}/s mean {run.mean_ms:.2f} p99 {run.p99_ms:.2f} ms"
                  f" cpu {run.cpu_us:,.0f} us{batch}{errors}", flush=True)  # fmt: skip


def section_tiny(
    args: argparse.Namespace, results: Results, models: Path, peers: list[str]
) -> None:
    """ovserve default / no batching / 2 workers / Triton, gRPC and REST, c = 1, 8, 32; the
    grpc.aio floor (no inference) on gRPC."""
    print("== tiny", flush=True)
    req = tiny_request()
    logs, work = args.out / "logs", args.out / "bodies"
    variants: list[Callable[[], Run]] = []
    with contextlib.ExitStack() as stack:
        targets = []
        chosen: list[tuple[str, list[str], Path | None]] = [
            (name, flags, None) for name, flags in TINY_SERVERS.items() if name in args.tiny_servers
        ]
        if args.baseline_src is not None:  # the same default flags on another tree's src/
            chosen.insert(1, ("ovserve-baseline", [], args.baseline_src))
        for name, flags, src in chosen:
            t = start(
                name, "tiny", models / "tiny", logs, [*flags, "--metrics_enable"], env_src=src
            )
            stack.callback(servers.stop, t.srv)
            targets.append(t)
        floor = Target("grpc.aio-floor", servers.start_floor(logs))  # no inference, gRPC only
        stack.callback(servers.stop, floor.srv)
        targets.append(floor)
        for peer in peers:
            try:
                srv = servers.start_peer(peer, "tiny")
            except servers.StartFailed as error:
                print(f"  {peer}: {error}")
                continue
            stack.callback(servers.stop_peer, srv)
            targets.append(Target(peer, srv))
        for t in targets:
            rss = t.srv.rss_mib()
            results.memory.append(
                (t.name, "tiny idle (in the tiny section)", rss, math.nan, math.nan)
            )
            print(f"  {t.name} ready in {t.srv.ready_s:.1f} s, idle RSS {rss:.0f} MiB", flush=True)
        for api in args.tiny_apis:
            for conc in args.concs:
                for t in targets:
                    if t is floor and api != "kserve":
                        continue
                    variants.append(measure_server(t, req, api, conc, args.seconds, work,
                                                   logs / "load-last.txt"))  # fmt: skip
        rounds(results, "tiny", variants, args.rounds)


TINY_SERVERS = {
    "ovserve": [],
    "ovserve-nobatch": ["--dynamic_batching", "off"],
    "ovserve-2workers": ["--grpc_workers", "2"],
    "ovserve-grpcio": ["--grpc_stack", "grpcio"],
}
"""The ovserve servers of the tiny section and their flags (besides --metrics_enable)."""


@contextlib.contextmanager
def affinity(cores: set[int]):  # type: ignore[no-untyped-def]
    """Run the block with this thread's CPU affinity set (children inherit it)."""
    previous = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cores)
    try:
        yield
    finally:
        os.sched_setaffinity(0, previous)


def section_pinned(args: argparse.Namespace, results: Results, models: Path, face: Path) -> None:
    """Server on core 0, load on core 1, in-process on core 0; conv and face."""
    print(f"== pinned: server and in-process on core {SERVER_CORE}, load on core {LOAD_CORE}")
    logs, work = args.out / "logs", args.out / "bodies"
    cases = [("conv", models / "conv", models / "conv" / "1" / "model.onnx", [conv_request()])]
    face_xml = next((face / "1").glob("*.xml"))
    cases.append(("face", face, face_xml, [face_request(s) for s in args.face_sizes]))
    cases = [case for case in cases if case[0] in args.pinned_models]
    apis = [(api, api == "rest") for api in args.pinned_apis]
    trees: list[tuple[str, Path | None, list[str]]] = [("ovserve", None, [])]
    if "grpcio" in args.pinned_stacks:
        trees.append(("ovserve-grpcio", None, ["--grpc_stack", "grpcio"]))
    if args.baseline_src is not None:
        trees.append(("ovserve-baseline", args.baseline_src, []))
    for model, model_dir, model_file, reqs in cases:
        with contextlib.ExitStack() as stack:
            with affinity({SERVER_CORE}):
                sizes = [r.label for r in reqs] if model == "face" else []
                worker = InprocessWorker(model_file, model, sizes, model != "face")
                stack.callback(worker.close)
                flags = ["--shape", "(1,3,-1,-1)"] if model == "face" else []
                targets = []
                for name, src, extra in trees:
                    t = start(name, model, model_dir, logs, flags + extra, env_src=src,
                              prefix=["taskset", "-c", str(SERVER_CORE)])  # fmt: skip
                    stack.callback(servers.stop, t.srv)
                    targets.append(t)
            with affinity({LOAD_CORE}):
                for req in reqs:
                    variants: list[Callable[[], Run]] = []
                    modes = ["throughput"] + (["latency"] if model != "face" else [])
                    for mode in modes:
                        variants.append(inprocess_variant(worker, req, mode, args.seconds))
                    for api, binary in apis:
                        for t in targets:
                            if api == "rest" and t.name == "ovserve-grpcio":
                                continue  # the same REST as "ovserve"
                            conc, log = args.pinned_conc, logs / "load-last.txt"
                            variants.append(
                                measure_server(t, req, api, conc, args.seconds, work, log, binary)
                            )
                    rounds(results, "pinned", variants, args.rounds)


def inprocess_variant(
    worker: InprocessWorker, req: Request, mode: str, seconds: int
) -> Callable[[], Run]:
    """One in-process mode as a repeatable run."""

    def run() -> Run:
        ticks = cpuload.pid_ticks(worker.proc.pid)
        res = worker.measure(mode, req.label, seconds)
        cpu = cpuload.to_us(cpuload.pid_ticks(worker.proc.pid) - ticks) / max(res.n, 1)
        return Run("", "in-process", req.model, req.label, mode, 0, 0, res.rps, cpu_us=cpu)

    return run


def pss_mib(session: int) -> float:
    """Proportional set size of the process group (shared pages split between sharers)."""
    out = subprocess.run(["ps", "-o", "pid=", "-s", str(session)], check=False,
                         capture_output=True, text=True).stdout  # fmt: skip
    total = 0
    for pid in out.split():
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
    return total / 1024


def section_memory(args: argparse.Namespace, results: Results, models: Path, face: Path) -> None:
    """Idle RSS/PSS, then after 50 requests, for face and tiny, 1 and 2 workers (and a baseline)."""
    print("== memory", flush=True)
    logs, work = args.out / "logs", args.out / "bodies"
    trees: list[tuple[str, Path | None]] = [("this tree", None)]
    if args.baseline_src is not None:
        trees.insert(0, (f"baseline {args.baseline_src}", args.baseline_src))
    cases = [("face", face, ["--shape", "(1,3,-1,-1)"], face_request("600x400")),
             ("tiny", models / "tiny", [], tiny_request())]  # fmt: skip
    for tree, src in trees:
        for model, model_dir, flags, req in cases:
            for workers in (1, 2):
                extra = ["--grpc_workers", "2"] if workers == 2 else []
                t = start("ovserve", model, model_dir, logs, [*flags, *extra], env_src=src)
                try:
                    time.sleep(2)
                    idle, idle_pss = t.srv.rss_mib(), pss_mib(t.srv.pid)
                    run = measure_server(t, req, "kserve", 2, 2, work, logs / "load-last.txt")
                    run()
                    time.sleep(1)
                    busy = t.srv.rss_mib()
                finally:
                    servers.stop(t.srv)
                what = f"{model}, {workers} worker{'s' if workers > 1 else ''}, {tree}"
                results.memory.append(
                    (what, "idle / PSS / after 2 s of load", idle, idle_pss, busy)
                )
                print(f"  {what}: idle RSS {idle:.0f} MiB (PSS {idle_pss:.0f}), "
                      f"after load {busy:.0f} MiB", flush=True)  # fmt: skip


def median(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return statistics.median(values) if values else math.nan


def cell(runs: list[Run]) -> str:
    if not runs:
        return "-"
    mid = sorted(runs, key=lambda r: r.rps)[len(runs) // 2]
    rate, cpu = median([r.rps for r in runs]), median([r.cpu_us for r in runs])
    text = f"{rate:,.0f} ({mid.mean_ms:.2f} / {mid.p99_ms:.2f}) {cpu:,.0f} µs"
    batch = median([r.batch for r in runs])
    return text + ("" if math.isnan(batch) else f" b={batch:.2f}")


def ratio(runs: list[Run], over: list[Run], what: str = "rps") -> str:
    """Median of per-round ratios (of req/s, or of ``what``), with their range."""
    by_round = {r.round: getattr(r, what) for r in over}
    values = sorted(
        getattr(r, what) / by_round[r.round]
        for r in runs
        if by_round.get(r.round) and not math.isnan(getattr(r, what))
    )
    if not values:
        return "-"
    return f"{statistics.median(values):.2f} ({values[0]:.2f}..{values[-1]:.2f})"


def cpu_ratio(runs: list[Run], over: list[Run]) -> str:
    """Median of per-round ratios of CPU per inference (``over``) to CPU per request (``runs``).

    What the req/s ratio would be on a core of its own: steadier on a shared machine.
    """
    by_round = {r.round: r.cpu_us for r in over}
    values = sorted(
        by_round[r.round] / r.cpu_us for r in runs if by_round.get(r.round) and r.cpu_us
    )
    if not values:
        return "-"
    return f"{statistics.median(values):.2f} ({values[0]:.2f}..{values[-1]:.2f})"


def tables(results: Results) -> str:
    out = []
    tiny = [r for r in results.runs if r.section == "tiny"]
    if tiny:
        names = list(dict.fromkeys(r.server for r in tiny))
        peers = [n for n in names if not n.startswith("ovserve")]
        head = ["API", "c", *names]
        ovs = [n for n in names if n.startswith("ovserve")]
        head += [f"{n} / {peer}" for peer in peers for n in ovs]
        head += [f"{n} / ovserve" for n in ovs if n != "ovserve"]
        head += [f"CPU/req {n} / ovserve" for n in ovs if n != "ovserve"]
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + " --- |" * len(head))
        for api in dict.fromkeys(r.api for r in tiny):
            for conc in sorted({r.conc for r in tiny if r.api == api}):
                sel = {
                    n: [r for r in tiny if r.server == n and r.api == api and r.conc == conc]
                    for n in names
                }
                row = [api, str(conc), *(cell(sel[n]) for n in names)]
                row += [ratio(sel[n], sel[peer]) for peer in peers for n in ovs]
                row += [ratio(sel[n], sel["ovserve"]) for n in ovs if n != "ovserve"]
                row += [ratio(sel[n], sel["ovserve"], "cpu_us") for n in ovs if n != "ovserve"]
                out.append("| " + " | ".join(row) + " |")
        out.append("\nCells: median req/s (mean / p99 ms of the median run), server CPU per "
                   "request, b= mean requests per inference (ovserve's batches). Ratios: median of "
                   "per-round ratios (range).")  # fmt: skip
    pinned = [r for r in results.runs if r.section == "pinned"]
    if pinned:
        out.append("\n| model | input | API | ovserve req/s (mean / p99 ms) CPU/req "
                   "| in-process/s (best mode) CPU/infer | ovserve / in-process "
                   "| in-process CPU / ovserve CPU |")  # fmt: skip
        out.append("| --- | --- | --- | --- | --- | --- | --- |")
        for model, label in dict.fromkeys((r.model, r.input) for r in pinned):
            mine = [r for r in pinned if r.model == model and r.input == label]
            inproc = [r for r in mine if r.server == "in-process"]
            best: list[Run] = []
            for rnd in sorted({r.round for r in inproc}):
                best.append(max((r for r in inproc if r.round == rnd), key=lambda r: r.rps))
            served = dict.fromkeys((r.api, r.server) for r in mine if r.server != "in-process")
            for api, server in served:
                srv = [r for r in mine if r.api == api and r.server == server]
                rate, cpu = median([r.rps for r in best]), median([r.cpu_us for r in best])
                inp = f"{rate:,.0f} {cpu:,.0f} µs"
                what = api if server == "ovserve" else f"{api} ({server})"
                out.append(
                    f"| {model} | {label} | {what} | {cell(srv)} | {inp} | {ratio(srv, best)} "
                    f"| {cpu_ratio(srv, best)} |"
                )
    if results.memory:
        out.append("\n| server | what | RSS MiB | PSS MiB | RSS after load MiB |")
        out.append("| --- | --- | --- | --- | --- |")
        for name, what, rss, pss, busy in results.memory:
            fmt = lambda v: "-" if math.isnan(v) else f"{v:.0f}"  # noqa: E731
            out.append(f"| {name} | {what} | {fmt(rss)} | {fmt(pss)} | {fmt(busy)} |")
    return "\n".join(out)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run-throughput", description=__doc__.split("\n")[0]
    )
    add = parser.add_argument
    add("--seconds", type=int, default=3)
    add("--rounds", type=int, default=3)
    add("--sections", nargs="+", default=["tiny", "pinned", "memory"],
        choices=["tiny", "pinned", "memory"])  # fmt: skip
    add("--concs", nargs="+", type=int, default=[1, 8, 32])
    add("--tiny_apis", nargs="+", default=["kserve", "rest"], choices=["kserve", "rest"])
    add("--pinned_conc", type=int, default=2, help="requests in flight in the pinned section")
    add("--face_sizes", nargs="+", default=["300x300", "600x400"])
    add("--pinned_models", nargs="+", default=["conv", "face"], choices=["conv", "face"])
    add("--pinned_apis", nargs="+", default=["kserve", "rest"], choices=["kserve", "rest"],
        help="rest = KServe REST with the binary extension")  # fmt: skip
    add("--pinned_stacks", nargs="+", default=["native", "grpcio"], choices=["native", "grpcio"],
        help="gRPC stacks of the pinned section (grpcio: --grpc_stack grpcio as well)")  # fmt: skip
    add("--peers", default="auto")
    add("--baseline_src", type=Path, default=None,
        help="another tree's src/ folder (e.g. main's) run with this venv: memory, and in the "
             "tiny and pinned sections as ovserve-baseline with default flags")  # fmt: skip
    add("--tiny_servers", nargs="+", default=list(TINY_SERVERS), choices=list(TINY_SERVERS),
        help="the ovserve servers of the tiny section")  # fmt: skip
    add("--out", type=Path, default=BENCH / "results")
    return parser.parse_args()


def tables_from(raw: Path) -> str:
    """The tables of a run's saved measurements (``throughput-<time>.json``; no memory table)."""
    results = Results()
    results.runs = [Run(**fields) for fields in json.loads(raw.read_text())]
    return tables(results)


def main() -> int:
    if sys.argv[1:2] == ["--tables_from"]:
        print(tables_from(Path(sys.argv[2])))
        return 0
    args = parse_args()
    started = time.strftime("%Y-%m-%d %H:%M %Z")
    t0 = time.perf_counter()
    before = uptime()
    print(f"uptime: {before}\nmachine: {machine()}", flush=True)
    (args.out / "logs").mkdir(parents=True, exist_ok=True)
    models = args.out / "models"
    make_onnx_models(models)
    face = prepare_face_model(args.out)
    peers = choose_peers(args.peers) if "tiny" in args.sections else []
    results = Results()
    try:
        if "tiny" in args.sections:
            section_tiny(args, results, models, peers)
        if "pinned" in args.sections:
            section_pinned(args, results, models, face)
        if "memory" in args.sections:
            section_memory(args, results, models, face)
    finally:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        raw = args.out / f"throughput-{stamp}.json"
        raw.write_text(json.dumps([r.__dict__ for r in results.runs], indent=0))
        print(f"\n{started}; {machine()}; {time.perf_counter() - t0:.0f} s")
        print(f"command: bench/run-throughput {shlex.join(sys.argv[1:])}".rstrip())
        print(f"uptime before: {before}\nuptime after:  {uptime()}\n")
        print(tables(results))
        print(f"\nruns: {raw}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
