"""A corrupt new version under load: the old one keeps serving with 0 failed requests.

Serving v1 with polling on, a garbage ``2/model.onnx`` appears: v2 fails and shows its error
in status, v1 keeps answering every request. Then a good v2 replaces the garbage: v2 serves
and v1 is retired (the default policy serves the latest version). A client sends requests
to the default version all along; none may fail.
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import ovmsclient

from _mm_helpers import add_model, eventually, infer, running_server, save_model

ONES = np.ones((1, 3), np.float32)


def statuses(grpc_url: str) -> dict[int, dict[str, Any]]:
    result: dict[int, dict[str, Any]] = ovmsclient.make_grpc_client(grpc_url).get_model_status("m")
    return result


class LightLoad:
    """Requests to the default version every 20 ms from a thread: answers seen, failures."""

    def __init__(self, server: Any) -> None:
        self._client = server.client()
        self.answers: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def __enter__(self) -> LightLoad:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.answers.append(float(infer(self._client, "m", {"x": ONES})["y"][0, 0]))
            except Exception as error:  # every failure counts, whatever its kind
                self.failures.append(repr(error))
            time.sleep(0.02)


def test_a_corrupt_version_never_interrupts_the_serving_one(tmp_path: Path) -> None:
    base = tmp_path / "m"
    save_model(add_model((1, 3), 1.0), base / "1")  # v1 answers x + 1
    args = ["--model_name", "m", "--model_path", str(base), "--file_system_poll_wait_seconds", "1"]
    with running_server(args, tmp_path / "server.log") as server, LightLoad(server) as load:
        eventually(lambda: len(load.answers) >= 10, what="the first answers")

        garbage = tmp_path / "staging-garbage"
        garbage.mkdir()
        (garbage / "model.onnx").write_bytes(b"\x08\x07garbage, not a model\x00" * 64)
        garbage.rename(base / "2")
        eventually(
            lambda: statuses(server.grpc_url).get(2, {}).get("state") == "END",
            what="version 2 failing",
        )
        status = statuses(server.grpc_url)
        assert status[1]["state"] == "AVAILABLE"
        assert "cannot read model file model.onnx" in status[2]["error_message"]
        seen = len(load.answers)
        time.sleep(2.5)  # two more polls: v2 is not retried, v1 keeps answering
        assert len(load.answers) > seen
        assert set(load.answers) == {2.0}

        good = tmp_path / "staging-good"
        save_model(add_model((1, 3), 2.0), good)  # v2 answers x + 2
        shutil.rmtree(base / "2")
        good.rename(base / "2")
        eventually(lambda: load.answers[-1] == 3.0, what="version 2 answering")
        eventually(lambda: statuses(server.grpc_url)[1]["state"] == "END", what="version 1 retired")
        assert statuses(server.grpc_url)[2] == {
            "state": "AVAILABLE",
            "error_code": 0,
            "error_message": "OK",
        }
    assert load.failures == []
    assert set(load.answers) == {2.0, 3.0}
    assert "Model m version 2 failed to load" in server.log()
