"""What the dynamic-batching path costs a request, in-process, on the real tiny model.

usage: .venv/bin/python bench/batching_overhead.py [--baseline_src PATH] [--rounds N]
                                                   [--requests N] [--burst N]

The server's per-request shape without the network: each request is its own task (as a
front-end handler is) awaiting ``infer`` on the model the engine returns. Variants, interleaved
in rounds with the order rotating: ``direct`` (the compiled model, as --dynamic_batching off),
``batching`` (this tree's BatchingModel) and, with --baseline_src, ``baseline`` (that tree's
``ovserve/serving/batching.py`` around the same compiled model). Per variant: CPU time per
request (the process's, one request at a time) and, for a burst of --burst tasks started
together, inferences per burst (how many requests batches take together).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import statistics
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ovserve.config.model_config import ModelConfig
from ovserve.engine.base import CompiledModel
from ovserve.engine.openvino_engine import OpenVINOEngine

from models import make_onnx_models

BENCH = Path(__file__).resolve().parent


def batching_module(path: Path, name: str) -> ModuleType:
    """``batching.py`` of a tree, imported under its own name (its imports are this tree's)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def wrap(module: ModuleType, inner: CompiledModel, counts: list[int]) -> Any:
    return module.BatchingModel(inner, 32, 0, True, counts.append)


async def sequential(model: Any, requests: int) -> tuple[float, float]:
    """CPU µs and wall µs per request, one request at a time, each in its own task."""
    inputs = {"x": np.ones((1, 16), np.float32)}
    loop = asyncio.get_running_loop()

    async def handler() -> None:
        await model.infer(inputs)

    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(requests):
        await loop.create_task(handler())
    return (
        (time.process_time() - cpu) / requests * 1e6,
        (time.perf_counter() - wall) / requests * 1e6,
    )


async def bursts(model: Any, counts: list[int], size: int, repeats: int) -> float:
    """Mean inferences per burst of ``size`` tasks started together."""
    inputs = {"x": np.ones((1, 16), np.float32)}
    before = len(counts)
    for _ in range(repeats):
        await asyncio.gather(*(model.infer(inputs) for _ in range(size)))
    return (len(counts) - before) / repeats


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline_src", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--burst", type=int, default=8)
    parser.add_argument("--out", type=Path, default=BENCH / "results")
    args = parser.parse_args()
    models = args.out / "models"
    make_onnx_models(models)
    engine = OpenVINOEngine()
    inner = engine.load(models / "tiny" / "1" / "model.onnx", ModelConfig("tiny", models / "tiny"))
    here = batching_module(BENCH.parent / "src" / "ovserve" / "serving" / "batching.py", "here")
    counts: dict[str, list[int]] = {"direct": [], "batching": []}
    variants: dict[str, Any] = {"direct": inner, "batching": wrap(here, inner, counts["batching"])}
    if args.baseline_src is not None:
        base = batching_module(args.baseline_src / "ovserve" / "serving" / "batching.py", "base")
        counts["baseline"] = []
        variants["baseline"] = wrap(base, inner, counts["baseline"])
    names = list(variants)
    cpu: dict[str, list[float]] = {name: [] for name in names}
    wall: dict[str, list[float]] = {name: [] for name in names}

    async def run() -> None:
        for name in names:  # warm-up
            await sequential(variants[name], 500)
        for r in range(args.rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                c, w = await sequential(variants[name], args.requests)
                cpu[name].append(c)
                wall[name].append(w)

    asyncio.run(run())
    burst = {
        name: asyncio.run(bursts(variants[name], counts[name], args.burst, 200))
        for name in names
        if name != "direct"
    }
    print(f"{args.rounds} rounds x {args.requests} sequential requests; bursts of {args.burst}")
    print("| variant | CPU µs/request | wall µs/request | CPU / direct (per-round median) |"
          " inferences per burst |")  # fmt: skip
    print("| --- | --- | --- | --- | --- |")
    for name in names:
        ratios = sorted(c / d for c, d in zip(cpu[name], cpu["direct"], strict=True))
        per_burst = f"{burst[name]:.2f}" if name in burst else "-"
        print(
            f"| {name} | {statistics.median(cpu[name]):.1f} | {statistics.median(wall[name]):.1f}"
            f" | {statistics.median(ratios):.3f} ({ratios[0]:.3f}..{ratios[-1]:.3f}) |"
            f" {per_burst} |"
        )
    inner.close()
    engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
