"""A protobuf fuzzer for KServe ModelInfer and TF Serving Predict, by class of malformation.

Each class sends ``PER_CLASS`` messages (``thousands of inputs`` fewer: each is large), then a
checked good request of each kind; every malformed message must get a client-error status
(never UNKNOWN or INTERNAL) and the server must log no traceback. The long variant
(``-m slow``) sends 5,000 per class.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import grpc
import pytest
from _fuzz import ALLOWED, CLASSES, check_good, fuzz_config, send_raw

from _server import ServerPool

PER_CLASS = 500
SLOW_PER_CLASS = 5000
MANY_INPUTS_SHARE = 10
"""``thousands of inputs`` messages are ~100 kB each: a tenth as many."""
CHANNEL_OPTIONS = [("grpc.max_send_message_length", 64 * 1024 * 1024)]


def _fuzz(server_factory: ServerPool, tmp_path: Path, per_class: int) -> None:
    config = fuzz_config(tmp_path)
    server = server_factory.start(["--config_path", str(config)])
    rng = random.Random(20261130)
    total = 0
    bad: dict[str, Counter[str]] = {}
    with grpc.insecure_channel(server.grpc_target, options=CHANNEL_OPTIONS) as channel:
        check_good(channel)
        for name, generate in CLASSES.items():
            count = per_class // MANY_INPUTS_SHARE if name == "thousands of inputs" else per_class
            statuses: Counter[str] = Counter()
            for _ in range(count):
                path, data = generate(rng)
                statuses[send_raw(channel, path, data).name] += 1
            total += count
            print(f"{name}: {count} messages, {dict(statuses)}")
            if any(grpc.StatusCode[status] not in ALLOWED for status in statuses):
                bad[name] = statuses
            check_good(channel)
    assert not bad, f"statuses outside {sorted(s.name for s in ALLOWED)}: {bad}"
    assert total >= 4000
    log = server.log_text()
    assert "Traceback" not in log
    assert "unexpected error" not in log


def test_malformed_grpc_messages_get_client_errors(
    server_factory: ServerPool, tmp_path: Path
) -> None:
    _fuzz(server_factory, tmp_path, PER_CLASS)


@pytest.mark.slow
def test_malformed_grpc_messages_long(server_factory: ServerPool, tmp_path: Path) -> None:
    _fuzz(server_factory, tmp_path, SLOW_PER_CLASS)
