#!/usr/bin/env python
"""Shape variants and bounded memory (issue 10), measured side by side in one run.

    .venv/bin/python bench/variants_shapes.py                    # every section (~12 min)
    .venv/bin/python bench/variants_shapes.py --sections speed --seconds 3 --rounds 3

Sections (tables in bench/variants.md):
  speed   one server serving each model three ways (dynamic with variants off, dynamic with
          variants on, static for the measured shape), KServe gRPC with 2 requests in flight
          (h2load), rounds rotating the order; plus the time from a shape's first repeat to its
          first request served by a variant, and the RSS a variant adds
  mixed   80% one shape, 20% random shapes (2 in flight, grpc.aio, pre-serialised requests),
          variants off vs on, the same request sequence for both in each round
  memory  RSS over 2,000 distinct shapes (default runtime cache vs OpenVINO's 5,000), and RSS
          after one 1920x1080 face request and after 30 s idle (release on vs off)
  equal   >= 2,000 shapes through a server with variants on (f32) against in-process OpenVINO
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt
from tritonclient.grpc import service_pb2 as kserve_pb2
from variants_models import model_input, prepare_mnet, prepare_ocr

import cpuload
import loadgen
import servers
from bench import prepare_face_model
from bodies import GRPC_LIMITS, KSERVE_INFER
from models import ROOT

OUT = ROOT / "bench" / "results"
F32 = {"INFERENCE_PRECISION_HINT": "f32"}
INPUTS = {"face": "data", "ocr": "x", "mnet": "input"}
SPEED_CASES = [("face", 300, 300), ("face", 480, 640), ("face", 720, 1280), ("ocr", 640, 640),
               ("mnet", 224, 224)]  # fmt: skip


def message(model: str, name: str, array: npt.NDArray[np.float32]) -> bytes:
    """A serialised KServe ModelInferRequest with the tensor in raw_input_contents."""
    msg = kserve_pb2.ModelInferRequest(model_name=name)
    tensor = msg.inputs.add(name=INPUTS[model], datatype="FP32")
    tensor.shape.extend(array.shape)
    msg.raw_input_contents.append(array.tobytes())
    data: bytes = msg.SerializeToString()
    return data


def outputs(raw: bytes) -> list[npt.NDArray[np.float32]]:
    """The raw FP32 outputs of a ModelInferResponse."""
    reply = kserve_pb2.ModelInferResponse.FromString(raw)
    return [
        np.frombuffer(data, np.float32).reshape(tuple(out.shape))
        for out, data in zip(reply.outputs, reply.raw_output_contents, strict=True)
    ]


def start(
    config: dict[str, Any], tag: str, logs: Path, extra: Sequence[str] = ()
) -> servers.Running:
    """ovserve with a config.json of ``config``'s models, on free ports."""
    path = logs / f"config-{tag}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"model_config_list": [{"config": c} for c in config["models"]]}))
    grpc_port, rest_port = servers.free_port(), servers.free_port()
    cmd = [str(ROOT / ".venv" / "bin" / "ovserve"), "--config_path", str(path),
           "--port", str(grpc_port), "--rest_port", str(rest_port), "--metrics_enable",
           "--grpc_bind_address", "127.0.0.1", "--rest_bind_address", "127.0.0.1",
           "--file_system_poll_wait_seconds", "0", *extra]  # fmt: skip
    first = config["models"][0]["name"]
    return servers._start("ovserve", cmd, first, grpc_port, rest_port, logs / f"ovserve-{tag}.log")


def entry(name: str, base: Path, shape: str, **more: Any) -> dict[str, Any]:
    """One config.json model entry."""
    return {"name": name, "base_path": str(base), "shape": shape, **more}


def scrape(srv: servers.Running, family: str, name: str) -> float:
    """One metric sample of ``name`` version 1 (0 when absent)."""
    import urllib.request

    with urllib.request.urlopen(f"{srv.rest_base}/metrics", timeout=10) as response:
        text = response.read().decode()
    want = f'{family}{{name="{name}",version="1"}}'
    for line in text.splitlines():
        if line.startswith(want):
            return float(line.split()[-1])
    return 0.0


def call(target: str, body: bytes) -> bytes:
    """One synchronous ModelInfer."""
    with grpc.insecure_channel(target, options=GRPC_LIMITS) as channel:
        raw: bytes = channel.unary_unary(KSERVE_INFER)(body, timeout=120)
    return raw


def frame(body: bytes, path: Path) -> Path:
    """The gRPC length-prefixed frame h2load replays."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00" + len(body).to_bytes(4, "big") + body)
    return path


def median_ratio(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """Median, min and max of the per-round ratios a/b."""
    ratios = [x / y for x, y in zip(a, b, strict=True) if y > 0]
    return statistics.median(ratios), min(ratios), max(ratios)


# ---- speed ---------------------------------------------------------------------------------------
def until_variant_serves(srv: servers.Running, name: str, body: bytes) -> tuple[float, int]:
    """Send ``body`` until a variant answers; seconds from the first repeat, requests sent."""
    with grpc.insecure_channel(srv.grpc_target, options=GRPC_LIMITS) as channel:
        infer = channel.unary_unary(KSERVE_INFER)
        repeat = time.perf_counter()  # the caller sent the first one: this is the repeat
        sent = 0
        while time.perf_counter() - repeat < 120:
            infer(body, timeout=120)
            sent += 1
            if scrape(srv, "ovserve_shape_variant_requests", name) > 0:
                return time.perf_counter() - repeat, sent
    raise RuntimeError(f"{name}: no variant within 120 s")


def speed(args: argparse.Namespace, paths: dict[str, Path], logs: Path) -> list[str]:
    """Dynamic vs dynamic-with-variants vs static at one repeated shape per case."""
    models = []
    for model, h, w in SPEED_CASES:
        tag = f"{model}_{h}x{w}"
        dyn = "(1,3,-1,-1)"
        models += [
            entry(f"{tag}_dyn", paths[model], dyn, max_shape_variants=0),
            entry(f"{tag}_var", paths[model], dyn),
            entry(f"{tag}_static", paths[model], f"(1,3,{h},{w})"),
        ]
    srv = start({"models": models}, "speed", logs)
    lines = ["| model @ HxW | dynamic req/s | variants req/s | static req/s | dynamic / static "
             "| **variants / static** | server CPU ms/request dyn / var / static "
             "| CPU-based: dynamic / static, **variants / static** "
             "| first repeat → variant serving | RSS the variant adds |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    try:
        for model, h, w in SPEED_CASES:
            tag = f"{model}_{h}x{w}"
            array = model_input(model, h, w)
            frames = {}
            for kind in ("dyn", "var", "static"):
                body = message(model, f"{tag}_{kind}", array)
                call(srv.grpc_target, body)  # checked once: raises on a bad status
                frames[kind] = frame(body, logs / "bodies" / f"{tag}_{kind}.grpc")
            var_body = message(model, f"{tag}_var", array)
            call(srv.grpc_target, var_body)  # first sight: the dynamic model allocates for it
            rss_before = srv.rss_mib()
            took, sent = until_variant_serves(srv, f"{tag}_var", var_body)
            rss_added = srv.rss_mib() - rss_before
            rates: dict[str, list[float]] = {"dyn": [], "var": [], "static": []}
            cpu: dict[str, list[float]] = {"dyn": [], "var": [], "static": []}  # ms/request
            order = ["dyn", "var", "static"]
            for round_ in range(args.rounds):
                for kind in order[round_ % 3 :] + order[: round_ % 3]:
                    ticks = cpuload.session_ticks(srv.pid)
                    result = loadgen.h2load(srv.grpc_target, "kserve", frames[kind], 2,
                                            args.seconds, log=logs / "h2load.txt")  # fmt: skip
                    ticks = cpuload.session_ticks(srv.pid) - ticks
                    if result.errors:
                        raise RuntimeError(f"{tag}_{kind}: {result.errors} errors")
                    rates[kind].append(result.rps)
                    cpu[kind].append(cpuload.to_us(ticks) / 1e3 / max(result.n, 1))
            d, v, s = (statistics.median(rates[k]) for k in ("dyn", "var", "static"))
            ds, vs = (
                median_ratio(rates["dyn"], rates["static"]),
                median_ratio(rates["var"], rates["static"]),
            )
            cd, cv, cs = (statistics.median(cpu[k]) for k in ("dyn", "var", "static"))
            lines.append(
                f"| {model} @ {h}x{w} | {d:.1f} | {v:.1f} | {s:.1f} | {ds[0]:.2f} "
                f"({ds[1]:.2f}..{ds[2]:.2f}) | **{vs[0]:.2f}** ({vs[1]:.2f}..{vs[2]:.2f}) | "
                f"{cd:.1f} / {cv:.1f} / {cs:.1f} | {cs / cd:.2f} / **{cs / cv:.2f}** | "
                f"{took:.2f} s ({sent} requests) | {rss_added:+.0f} MiB |"
            )
            print(lines[-1], flush=True)
    finally:
        servers.stop(srv)
    return lines


# ---- mixed ---------------------------------------------------------------------------------------
async def closed_loop(target: str, bodies: list[tuple[bool, bytes]], seconds: float,
                      conc: int = 2) -> tuple[float, list[float], list[float]]:  # fmt: skip
    """``conc`` in flight over ``bodies`` in order; req/s, latencies (ms) of hot and new."""
    hot: list[float] = []
    new: list[float] = []
    position = 0
    async with grpc.aio.insecure_channel(target, options=GRPC_LIMITS) as channel:
        infer = channel.unary_unary(KSERVE_INFER)
        deadline = time.perf_counter() + seconds
        started = time.perf_counter()

        async def worker() -> None:
            nonlocal position
            while time.perf_counter() < deadline:
                is_hot, body = bodies[position % len(bodies)]
                position += 1
                t0 = time.perf_counter()
                await infer(body, timeout=120)
                (hot if is_hot else new).append((time.perf_counter() - t0) * 1e3)

        await asyncio.gather(*(worker() for _ in range(conc)))
        elapsed = time.perf_counter() - started
    return (len(hot) + len(new)) / elapsed, hot, new


def mixed(args: argparse.Namespace, paths: dict[str, Path], logs: Path) -> list[str]:
    """80% 480x640, 20% random sizes on the face model: variants off vs on."""
    dyn = "(1,3,-1,-1)"
    config = {"models": [entry("face_dyn", paths["face"], dyn, max_shape_variants=0),
                         entry("face_var", paths["face"], dyn)]}  # fmt: skip
    srv = start(config, "mixed", logs)
    hot_array = model_input("face", 480, 640)
    rows: dict[str, dict[str, list[float]]] = {
        k: {"rps": [], "hot": [], "new": []} for k in ("face_dyn", "face_var")
    }
    try:
        for round_ in range(args.rounds):
            rng = random.Random(1000 + round_)
            plan: list[tuple[bool, int, int]] = []
            for _ in range(300):  # replayed in a loop; its ~60 random bodies are ~4 MB each
                if rng.random() < 0.8:
                    plan.append((True, 480, 640))
                else:
                    plan.append((False, rng.randrange(160, 721), rng.randrange(160, 1281)))
            order = ["face_dyn", "face_var"] if round_ % 2 == 0 else ["face_var", "face_dyn"]
            for name in order:
                hot_body = message("face", name, hot_array)
                bodies = [
                    (True, hot_body)
                    if is_hot
                    else (False, message("face", name, model_input("face", h, w)))
                    for is_hot, h, w in plan
                ]
                rps, hot, new = asyncio.run(closed_loop(srv.grpc_target, bodies, args.seconds * 2))
                rows[name]["rps"].append(rps)
                rows[name]["hot"].append(float(np.percentile(hot, 50)) if hot else float("nan"))
                rows[name]["new"].append(float(np.percentile(new, 99)) if new else float("nan"))
                print(f"mixed round {round_} {name}: {rps:.1f} req/s", flush=True)
        variants = scrape(srv, "ovserve_shape_variants_compiled", "face_var")
    finally:
        servers.stop(srv)
    ratio = median_ratio(rows["face_var"]["rps"], rows["face_dyn"]["rps"])
    lines = ["| face, 80% 480x640 + 20% random | req/s | p50 ms at 480x640 "
             "| p99 ms at a new shape |",
             "| --- | --- | --- | --- |"]  # fmt: skip
    for name, label in (("face_dyn", "variants off"), ("face_var", "variants on")):
        r = rows[name]
        rps, hot, new = (statistics.median(r[key]) for key in ("rps", "hot", "new"))
        lines.append(f"| {label} | {rps:.1f} | {hot:.1f} | {new:.1f} |")
    lines.append(f"| **on / off** | **{ratio[0]:.2f}** ({ratio[1]:.2f}..{ratio[2]:.2f}) | | |")
    lines.append(f"\n(variants compiled during the run: {variants:.0f})")
    return lines


# ---- memory --------------------------------------------------------------------------------------
def distinct_shapes(srv: servers.Running, model: str, name: str, count: int) -> None:
    """``count`` distinct HxW, one request each (sequential)."""
    rng = random.Random(7)
    low, high = (32, 160) if model == "mnet" else (64, 320)
    seen: set[tuple[int, int]] = set()
    while len(seen) < count:
        seen.add((rng.randrange(low, high), rng.randrange(low, high)))
    with grpc.insecure_channel(srv.grpc_target, options=GRPC_LIMITS) as channel:
        infer = channel.unary_unary(KSERVE_INFER)
        for h, w in sorted(seen, key=lambda _: rng.random()):
            infer(message(model, name, model_input(model, h, w, seed=h * 1000 + w)), timeout=120)


def memory(args: argparse.Namespace, paths: dict[str, Path], logs: Path) -> list[str]:
    """RSS over 2,000 distinct shapes; RSS after a 1920x1080 face request and after idle."""
    lines = ["| model | runtime cache | RSS before | after 2,000 distinct shapes | growth |",
             "| --- | --- | --- | --- | --- |"]  # fmt: skip
    for model in args.memory_models:
        for label, plugin in (
            ("default (64)", {}),
            ("OpenVINO's 5,000", {"CPU_RUNTIME_CACHE_CAPACITY": 5000}),
        ):
            config = {"models": [entry(model, paths[model], "(1,3,-1,-1)", plugin_config=plugin)]}
            srv = start(config, f"memory-{model}", logs)
            try:
                warm = message(model, model, model_input(model, 96, 96))
                for _ in range(20):
                    call(srv.grpc_target, warm)
                before = srv.rss_mib()
                distinct_shapes(srv, model, model, args.shapes)
                after = srv.rss_mib()
            finally:
                servers.stop(srv)
            lines.append(f"| {model} | {label} | {before:.0f} MiB | {after:.0f} MiB | "
                         f"**{after - before:+.0f} MiB** |")  # fmt: skip
            print(lines[-1], flush=True)
    lines += ["", "| face, one 1920x1080 request | RSS warm at 480x640 | right after 1920x1080 | "
              f"after {args.idle:.0f} s idle | idle - warm |",
              "| --- | --- | --- | --- | --- |"]  # fmt: skip
    started = []
    for label, more in (("idle release on (default 10 s)", {}),
                        ("idle release off", {"idle_memory_release_seconds": 0})):  # fmt: skip
        config = {"models": [entry("face", paths["face"], "(1,3,-1,-1)", **more)]}
        started.append((label, start(config, f"idle-{len(started)}", logs)))
    try:
        warm = message("face", "face", model_input("face", 480, 640))
        big = message("face", "face", model_input("face", 1080, 1920))
        figures = {}
        for label, srv in started:
            for _ in range(10):
                call(srv.grpc_target, warm)
            figures[label] = [srv.rss_mib()]
        for label, srv in started:
            call(srv.grpc_target, big)
            figures[label].append(srv.rss_mib())
        time.sleep(args.idle)
        for label, srv in started:
            figures[label].append(srv.rss_mib())
    finally:
        for _, srv in started:
            servers.stop(srv)
    for label, (warm_rss, big_rss, idle_rss) in figures.items():
        lines.append(f"| {label} | {warm_rss:.0f} MiB | {big_rss:.0f} MiB | {idle_rss:.0f} MiB | "
                     f"**{idle_rss - warm_rss:+.0f} MiB** |")  # fmt: skip
        print(lines[-1], flush=True)
    return lines


# ---- equal ---------------------------------------------------------------------------------------
def equal(args: argparse.Namespace, paths: dict[str, Path], logs: Path) -> list[str]:
    """Every answer of a variants-on server (f32) against in-process OpenVINO (f32, dynamic)."""
    import openvino as ov

    config = {"models": [entry("mnet", paths["mnet"], "(1,3,-1,-1)", plugin_config=F32,
                               shape_variant_threshold=2)]}  # fmt: skip
    srv = start(config, "equal", logs)
    core = ov.Core()
    reference = core.compile_model(str(paths["mnet"] / "1" / "model.xml"), "CPU", F32)
    rng = random.Random(11)
    hot = [(64, 64), (96, 128), (160, 120)]
    shapes: set[tuple[int, int]] = set()
    while len(shapes) < args.shapes:
        shapes.add((rng.randrange(32, 192), rng.randrange(32, 192)))
    plan = []
    for index, shape in enumerate(sorted(shapes, key=lambda _: rng.random())):
        plan.append(shape)
        if index % 4 == 0:
            plan.append(hot[index % 3])
    worst, bad = 0.0, 0
    try:
        with grpc.insecure_channel(srv.grpc_target, options=GRPC_LIMITS) as channel:
            infer = channel.unary_unary(KSERVE_INFER)
            for index, (h, w) in enumerate(plan):
                array = model_input("mnet", h, w, seed=index)
                (served,) = outputs(infer(message("mnet", "mnet", array), timeout=120))
                expected = reference(array)[0]
                diff = float(np.max(np.abs(served - expected)))
                worst = max(worst, diff)
                bad += not np.allclose(served, expected, rtol=1e-5, atol=1e-6)
        by_variant = scrape(srv, "ovserve_shape_variant_requests", "mnet")
    finally:
        servers.stop(srv)
    return [
        "| requests | distinct shapes | answered by a variant | not equal (rtol 1e-5, atol 1e-6) "
        "| largest abs difference |",
        "| --- | --- | --- | --- | --- |",
        f"| {len(plan)} | {len(set(plan))} | {by_variant:.0f} | **{bad}** | {worst:.1e} |",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sections", nargs="+", default=["speed", "mixed", "memory", "equal"])
    parser.add_argument("--seconds", type=int, default=4, help="per h2load run (default 4)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--shapes", type=int, default=2000, help="distinct shapes (memory, equal)")
    parser.add_argument("--idle", type=float, default=30.0, help="idle seconds (memory)")
    parser.add_argument("--memory_models", nargs="+", default=["mnet", "face"])
    args = parser.parse_args()
    logs = OUT / "logs" / "variants"
    paths = {"face": prepare_face_model(OUT), "ocr": prepare_ocr(OUT), "mnet": prepare_mnet(OUT)}
    print(
        subprocess.run(["uptime"], check=False, capture_output=True, text=True).stdout.strip(),
        flush=True,
    )
    for section in args.sections:
        t0 = time.perf_counter()
        lines = {"speed": speed, "mixed": mixed, "memory": memory, "equal": equal}[section](
            args, paths, logs
        )
        print(f"\n## {section} ({time.perf_counter() - t0:.0f} s)\n\n" + "\n".join(lines) + "\n",
              flush=True)  # fmt: skip
    print(
        subprocess.run(["uptime"], check=False, capture_output=True, text=True).stdout.strip(),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
