"""Closed-loop load: h2load for gRPC (pre-serialised frames), hey for REST (as the peer kit drives).

h2load opens C connections with one stream each and keeps every stream busy, so C requests are in
flight for the whole run; latencies come from its --log-file. hey runs C keep-alive workers.
"""

from __future__ import annotations

import math
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bodies import KSERVE_INFER, TFS_PREDICT


@dataclass(frozen=True)
class LoadResult:
    """One measured run."""

    rps: float
    mean_ms: float
    p99_ms: float
    errors: int
    n: int


def h2load(target: str, api: str, frame: Path, conc: int, seconds: int, *, log: Path) -> LoadResult:
    """C connections x 1 stream, POSTing the gRPC frame for ``seconds``."""
    method = KSERVE_INFER if api == "kserve" else TFS_PREDICT
    with tempfile.NamedTemporaryFile(suffix=".tsv") as per_request:
        cmd = [
            "h2load", "-D", str(seconds), "-c", str(conc), "-m", "1", "-t", "1",
            "-H", "content-type: application/grpc", "-H", "te: trailers",
            "-d", str(frame), f"--log-file={per_request.name}", f"http://{target}{method}",
        ]  # fmt: skip
        proc = subprocess.run(
            cmd, check=False, capture_output=True, text=True, timeout=seconds + 120
        )
        rows = [line.split("\t") for line in Path(per_request.name).read_text().splitlines()]
    with log.open("a") as f:
        f.write(" ".join(cmd) + "\n" + proc.stdout + proc.stderr + "\n")
    rate = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", proc.stdout)
    counts = re.search(
        r"requests: \d+ total, \d+ started, \d+ done, \d+ succeeded, (\d+) failed, "
        r"(\d+) errored, (\d+) timeout",
        proc.stdout,
    )
    if not rate or not counts:
        raise RuntimeError("h2load output not understood:\n" + (proc.stdout + proc.stderr)[-1500:])
    ok = np.array([int(r[2]) for r in rows if len(r) > 2 and r[1] == "200"]) / 1000.0
    bad_status = sum(1 for r in rows if len(r) > 2 and r[1] != "200")
    errors = max(int(counts.group(1)), bad_status) + int(counts.group(2)) + int(counts.group(3))
    mean, p99 = (float(ok.mean()), float(np.percentile(ok, 99))) if len(ok) else (math.nan,) * 2
    return LoadResult(float(rate.group(1)), mean, p99, errors, len(ok))


def hey(
    url: str,
    body: Path,
    conc: int,
    seconds: int,
    *,
    log: Path,
    headers: list[str] | None = None,
    content_type: str = "application/json",
) -> LoadResult:
    """C keep-alive workers POSTing the body (JSON unless told) for ``seconds``."""
    extra = [part for header in headers or [] for part in ("-H", header)]
    cmd = [
        "hey", "-z", f"{seconds}s", "-c", str(conc), "-m", "POST",
        "-T", content_type, *extra, "-D", str(body), url,
    ]  # fmt: skip
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=seconds + 120)
    out = proc.stdout
    with log.open("a") as f:
        f.write(" ".join(cmd) + "\n" + out + "\n")
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not rps:
        raise RuntimeError("hey output not understood:\n" + out[-1500:])
    avg = re.search(r"Average:\s+([\d.]+) secs", out)
    # below 100 responses hey prints no 99% line; the nearest-rank p99 of n <= 100 is the maximum
    p99 = re.search(r"99% in ([\d.]+) secs", out) or re.search(r"Slowest:\s+([\d.]+) secs", out)
    codes = {int(c): int(n) for c, n in re.findall(r"\[(\d+)\]\s+(\d+) responses", out)}
    err_section = out.split("Error distribution:")[1] if "Error distribution:" in out else ""
    errors = sum(n for c, n in codes.items() if c != 200)
    errors += sum(int(n) for n in re.findall(r"\[(\d+)\]", err_section))
    return LoadResult(
        float(rps.group(1)),
        float(avg.group(1)) * 1e3 if avg else math.nan,
        float(p99.group(1)) * 1e3 if p99 else math.nan,
        errors,
        codes.get(200, 0),
    )
