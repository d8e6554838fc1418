"""Rows of one run (kept in a TSV) and the markdown tables made from them.

Each variant (a server x API x concurrency, or an in-process mode) is measured once per round, and
the rounds interleave the variants, so that a ratio compares measurements taken seconds apart.
A table cell shows the median over rounds; a ratio is the median of the per-round ratios, with
their range when there are several rounds.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import astuple, dataclass, fields
from pathlib import Path

API_NAMES = {"kserve": "KServe gRPC", "rest": "KServe REST", "tfs": "TFS gRPC"}
INPROCESS = "in-process"


@dataclass(frozen=True)
class Row:
    """One measurement: a load run against a server, or an in-process rate."""

    time: str
    round: int
    section: str  # a (tiny/conv), b (face), c (TFS on tiny)
    server: str  # ovserve, triton, ..., in-process
    model: str
    input: str
    api: str  # kserve, rest, tfs; throughput / latency for in-process
    conc: int
    seconds: float
    rps: float  # NaN when the run failed or is not available
    mean_ms: float
    p99_ms: float
    errors: int
    n: int
    note: str = ""
    others_cpu: float = math.nan  # share of the machine's CPU other people's processes used
    cpu_us: float = math.nan  # CPU of the measured side (server group or worker) per request
    client_cpu_us: float = math.nan  # CPU of the load generator per request

    @property
    def key(self) -> tuple[str, str, str, str, int]:
        """What a variant is, across rounds."""
        return (self.server, self.model, self.input, self.api, self.conc)


def write_tsv(rows: Iterable[Row], path: Path) -> None:
    """All rows, with a header line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        f.write("\t".join(field.name for field in fields(Row)) + "\n")
        for row in rows:
            f.write("\t".join(_tsv(v) for v in astuple(row)) + "\n")


def _tsv(value: object) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.3f}"
    return str(value).replace("\t", " ").replace("\n", " ")


class Tables:
    """Groups rows by variant and renders the tables."""

    def __init__(self, rows: list[Row]) -> None:
        self.rows = rows
        self.by_key: dict[tuple[str, str, str, str, int], list[Row]] = {}
        for row in rows:
            self.by_key.setdefault(row.key, []).append(row)

    def runs(self, server: str, model: str, label: str, api: str, conc: int) -> list[Row]:
        """Every round of one variant."""
        return self.by_key.get((server, model, label, api, conc), [])

    def limit_by_round(self, model: str, label: str) -> dict[int, Row]:
        """Per round: the faster of THROUGHPUT/AsyncInferQueue and LATENCY/sync in-process."""
        best: dict[int, Row] = {}
        for mode in ("throughput", "latency"):
            for row in self.runs(INPROCESS, model, label, mode, 0):
                if not math.isnan(row.rps) and row.rps > getattr(best.get(row.round), "rps", 0):
                    best[row.round] = row
        return best

    @staticmethod
    def ratio(ours: list[Row], theirs: dict[int, Row]) -> str:
        """Median of per-round throughput ratios, with their range."""
        return _spread([r.rps / theirs[r.round].rps for r in ours if r.round in theirs])

    @staticmethod
    def cpu_ratio(ours: list[Row], limits: dict[int, Row]) -> str:
        """Per round: in-process CPU per inference / (server + client CPU per request)."""
        return _spread([
            limits[r.round].cpu_us / (r.cpu_us + r.client_cpu_us)
            for r in ours if r.round in limits
        ])  # fmt: skip

    def peers(self) -> list[str]:
        """Servers other than ovserve present in the rows, in order of appearance."""
        names = [row.server for row in self.rows if row.server not in ("ovserve", INPROCESS)]
        return list(dict.fromkeys(names))

    def small_models(self) -> str:
        """Sections a and c: tiny and conv, each API and concurrency, with ratios."""
        peers = self.peers()
        head = ["model", "API", "c", "ovserve req/s (mean / p99 ms) CPU/req",
                "in-process limit/s CPU/infer", "ovserve / limit", "CPU-based"]  # fmt: skip
        for peer in peers:
            head += [f"{peer} req/s (mean / p99 ms) CPU/req", f"ovserve / {peer}"]
        lines = [_header(head)]
        order = {"tiny": 0, "conv": 1, "kserve": 0, "rest": 1, "tfs": 2}
        keys = sorted(
            (k for k in self.by_key if k[0] == "ovserve" and k[1] in ("tiny", "conv")),
            key=lambda k: (order[k[1]], order[k[3]], k[4]),
        )
        for key in keys:
            ours = self.by_key[key]
            _, model, label, api, conc = key
            limits = self.limit_by_round(model, label)
            cells = [model, API_NAMES[api], str(conc), _cell(ours), _limit(limits),
                     self.ratio(ours, limits), self.cpu_ratio(ours, limits)]  # fmt: skip
            for peer in peers:
                other = self.runs(peer, model, label, api, conc)
                cells += [_cell(other), self.ratio(ours, {r.round: r for r in other})]
            lines.append(_line(cells))
        return "\n".join(lines)

    def face(self, conc: int) -> str:
        """Section b: face detection per size, both gRPC APIs beside the in-process limit."""
        head = ["size WxH", "in-process limit/s CPU/infer"]
        for api in ("TFS", "KServe"):
            head += [f"{api} gRPC c={conc} req/s (mean / p99 ms) CPU/req", f"{api} / limit",
                     "CPU-based"]  # fmt: skip
        lines = [_header(head)]
        labels = dict.fromkeys(r.input for r in self.rows if r.model == "face")
        for label in labels:
            limits = self.limit_by_round("face", label)
            cells = [label, _limit(limits)]
            for api in ("tfs", "kserve"):
                ours = self.runs("ovserve", "face", label, api, conc)
                cells += [_cell(ours), self.ratio(ours, limits), self.cpu_ratio(ours, limits)]
            lines.append(_line(cells))
        return "\n".join(lines)

    def others(self, models: tuple[str, ...]) -> str:
        """Other people's CPU share during the measured runs of these models."""
        shares = [r.others_cpu for r in self.rows if r.model in models]
        shares = [s for s in shares if not math.isnan(s)]
        if not shares:
            return "others' CPU: not measured"
        return (
            f"others' CPU during these runs: median {statistics.median(shares):.0%}, "
            f"max {max(shares):.0%} of the machine"
        )

    def inprocess(self) -> str:
        """Every in-process mode measured (median and range over rounds)."""
        lines = [_header(["model", "input", "mode", "infer/s median (min..max)", "CPU/infer",
                          "how"])]  # fmt: skip
        for (server, model, label, mode, _), runs in self.by_key.items():
            if server == INPROCESS:
                rates = [r.rps for r in runs if not math.isnan(r.rps)]
                spread = f" ({min(rates):,.0f}..{max(rates):,.0f})" if len(rates) > 1 else ""
                text = _num(_median(rates)) + spread
                cpu = _us(_median(r.cpu_us for r in runs))
                lines.append(_line([model, label, mode, text, cpu, runs[0].note]))
        return "\n".join(lines)


def _spread(values: list[float]) -> str:
    """Median, with the range when there are several values."""
    values = [v for v in values if not math.isnan(v) and v > 0]
    if not values:
        return "-"
    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:.2f}"
    return f"{med:.2f} ({min(values):.2f}..{max(values):.2f})"


def _limit(limits: dict[int, Row]) -> str:
    rows = list(limits.values())
    rate = _median(r.rps for r in rows)
    return f"{_num(rate)} {_us(_median(r.cpu_us for r in rows))}"


def _us(value: float) -> str:
    if math.isnan(value):
        return ""
    return f"{value / 1000:,.1f} ms" if value >= 10_000 else f"{value:,.0f} µs"


def _median(values: Iterable[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return statistics.median(finite) if finite else math.nan


def _header(cells: list[str]) -> str:
    return _line(cells) + "\n" + _line(["---"] * len(cells))


def _line(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _num(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:,.0f}"


def _cell(runs: list[Row]) -> str:
    """Median rate, mean / p99 latency of the median run, median CPU per request, errors."""
    if not runs:
        return "-"
    ok = sorted((r for r in runs if not math.isnan(r.rps)), key=lambda r: r.rps)
    if not ok:
        return runs[0].note or "failed"
    mid = ok[len(ok) // 2]
    text = f"{_median(r.rps for r in ok):,.0f} ({mid.mean_ms:.2f} / {mid.p99_ms:.2f})"
    text += f" {_us(_median(r.cpu_us for r in ok))}".rstrip()
    errors = sum(r.errors for r in runs)
    return text + (f" **{errors} errors**" if errors else "")
