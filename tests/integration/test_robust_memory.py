"""Memory growth over many valid and malformed requests, with a positive control.

Gates (reliability.md §5): RSS growth < 20 MiB over the valid requests of each API and
< 8 MiB over each malformed class. The positive control runs the same gate on a tiny HTTP
server whose handler leaks 32 kB per request: the gate must flag it, or the gate proves
nothing. The default run is bounded (3,000 valid per API, 400 per malformed class); the long
variant (``-m slow``) sends 20,000 valid per API and 5,000 per class.
"""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import grpc
import pytest
import requests
from _fuzz import (
    CLASSES,
    KSERVE_INFER,
    TFS_PREDICT,
    Generator,
    check_good,
    fuzz_config,
    kserve_add,
    send_raw,
    tfs_add,
)
from _leak_gate import growth

from _server import HOST, ServerPool, ServerProcess, free_port

VALID_GATE_MIB = 20.0
MALFORMED_GATE_MIB = 8.0
A_ROWS = [[0.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0]]
REST_BODY = {
    "inputs": [
        {"name": name, "shape": [2, 4], "datatype": "FP32", "data": A_ROWS} for name in ("a", "b")
    ]
}
REST_MALFORMED = {
    "bad JSON": b'{"inputs": [{"name": "a", "shape": [2, 4], "datatype": "FP32", "data": [1, 2',
    "deep JSON": b"[" * 5000 + b"]" * 5000,
    "wrong shape": b'{"inputs":[{"name":"a","shape":[3,4],"datatype":"FP32","data":[1,2]},'
    b'{"name":"b","shape":[2,4],"datatype":"FP32","data":[1,2,3,4,5,6,7,8]}]}',
    "unknown model": b'{"inputs":[]}',
}


def _run(server: ServerProcess, valid: int, per_class: int) -> dict[str, float]:
    grown: dict[str, float] = {}
    rng = random.Random(7)
    session = requests.Session()
    infer = f"{server.rest_url}/v2/models/add/infer"
    with grpc.insecure_channel(server.grpc_target) as channel:
        kserve = kserve_add().SerializeToString()
        tfs = tfs_add().SerializeToString()

        def good_grpc(index: int) -> None:
            path, data = (KSERVE_INFER, kserve) if index % 2 else (TFS_PREDICT, tfs)
            assert send_raw(channel, path, data) is grpc.StatusCode.OK

        def good_rest(index: int) -> None:
            assert session.post(infer, json=REST_BODY, timeout=30).status_code == 200

        grown["valid gRPC"] = growth(server.pid, good_grpc, valid, warmup=valid // 4)
        grown["valid REST"] = growth(server.pid, good_rest, valid, warmup=valid // 4)
        for name, generate in CLASSES.items():
            count = per_class // 10 if name == "thousands of inputs" else per_class

            def malformed(index: int, generate: Generator = generate) -> None:
                send_raw(channel, *generate(rng))

            grown[f"gRPC {name}"] = growth(server.pid, malformed, count, warmup=count // 4)
            check_good(channel)
        for name, body in REST_MALFORMED.items():
            url = infer if name != "unknown model" else f"{server.rest_url}/v2/models/nope/infer"

            def bad_rest(index: int, url: str = url, body: bytes = body) -> None:
                status = session.post(url, data=body, timeout=30).status_code
                assert 400 <= status < 500

            grown[f"REST {name}"] = growth(server.pid, bad_rest, per_class, warmup=per_class // 4)
    session.close()
    return grown


def _check(grown: dict[str, float]) -> None:
    over = {
        name: round(mib, 1)
        for name, mib in grown.items()
        if mib >= (VALID_GATE_MIB if name.startswith("valid") else MALFORMED_GATE_MIB)
    }
    assert not over, f"RSS grew past the gate (MiB): {over}; all: {grown}"


def _memory(server_factory: ServerPool, tmp_path: Path, valid: int, per_class: int) -> None:
    server = server_factory.start(["--config_path", str(fuzz_config(tmp_path))], rest=True)
    grown = _run(server, valid, per_class)
    print("RSS growth (MiB):", {name: round(mib, 2) for name, mib in grown.items()})
    _check(grown)
    assert "Traceback" not in server.log_text()


def test_memory_stays_flat_over_valid_and_malformed_requests(
    server_factory: ServerPool, tmp_path: Path
) -> None:
    _memory(server_factory, tmp_path, valid=3000, per_class=400)


@pytest.mark.slow
def test_memory_stays_flat_long(server_factory: ServerPool, tmp_path: Path) -> None:
    _memory(server_factory, tmp_path, valid=20_000, per_class=5000)


LEAKY_SERVER = textwrap.dedent(
    """
    import socket
    import sys
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    kept = []

    class Leaky(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self):
            super().setup()
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            kept.append(bytearray(32 * 1024))  # the deliberate leak
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Leaky).serve_forever()
    """
)


def test_the_gate_flags_a_leaking_handler(tmp_path: Path) -> None:
    port = free_port()
    script = tmp_path / "leaky.py"
    script.write_text(LEAKY_SERVER)
    process = subprocess.Popen([sys.executable, str(script), str(port)])
    try:
        session = requests.Session()
        url = f"http://{HOST}:{port}/"
        deadline = time.monotonic() + 30
        while True:
            try:
                session.post(url, json=REST_BODY, timeout=2)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "the leaky server did not start"
                time.sleep(0.05)

        def send(index: int) -> None:
            assert session.post(url, json=REST_BODY, timeout=10).status_code == 200

        leaked = growth(process.pid, send, total=1200, warmup=200)
        session.close()
        print(f"positive control: RSS grew {leaked:.1f} MiB over 1,200 requests")
    finally:
        process.terminate()
        process.wait(10)
    with pytest.raises(AssertionError, match="RSS grew past the gate"):
        _check({"valid REST": leaked, "REST leaky": leaked})
