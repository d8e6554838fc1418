"""Unsafe model names are refused per model, and replies never carry filesystem paths.

config.json names ``../evil``, ``a/b``, an empty name and a model whose folder is missing
(under a "secret" directory), next to a good model: the good one serves; each bad one shows
its error in status; no reply (status, ``GET /v1/config``, errors) contains the secret path,
while the server log keeps it.
"""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests
from tritonclient.utils import InferenceServerException

from _mm_helpers import infer, make_repo, model_entry, running_server, write_json_atomically
from _server import run_to_exit

ONES = np.ones((1, 3), np.float32)


def test_unsafe_names_fail_alone_and_no_reply_names_a_path(tmp_path: Path) -> None:
    make_repo(tmp_path / "good", [1])
    make_repo(tmp_path / "good2", [1, 2])
    (tmp_path / "good2" / "2" / "model.bin").unlink()  # version 2 fails: no weights file
    secret = tmp_path / "secret-dir" / "nowhere"
    entries = [
        model_entry("good", tmp_path / "good"),
        model_entry("../evil", tmp_path / "good"),
        model_entry("a/b", tmp_path / "good"),
        model_entry("", tmp_path / "good"),
        model_entry("missing", secret),
        model_entry("good2", tmp_path / "good2", model_version_policy={"all": {}}),
    ]
    config = tmp_path / "config.json"
    write_json_atomically(config, {"model_config_list": entries})
    args = ["--config_path", str(config), "--file_system_poll_wait_seconds", "0"]
    with running_server(args, tmp_path / "server.log") as server:
        client = server.client()
        assert infer(client, "good", {"x": ONES})["y"].tolist() == [[2.0] * 3]
        assert infer(client, "good2", {"x": ONES}, "1")["y"].tolist() == [[2.0] * 3]
        for name in ("../evil", "a/b"):
            with pytest.raises(InferenceServerException) as caught:
                infer(client, name, {"x": ONES})
            assert caught.value.status() == str(grpc.StatusCode.NOT_FOUND)
        rest = f"http://127.0.0.1:{server.rest_port}"
        replies = {
            "config": requests.get(f"{rest}/v1/config", timeout=10).text,
            "missing": requests.get(f"{rest}/v1/models/missing", timeout=10).text,
            "good2": requests.get(f"{rest}/v1/models/good2", timeout=10).text,
            "evil": requests.get(f"{rest}/v1/models/..%2Fevil", timeout=10).text,
            "kserve": requests.get(f"{rest}/v2/models/missing/ready", timeout=10).text,
        }
        everything = json.loads(replies["config"])
        log = server.log()
    assert everything["good"]["model_version_status"][0]["state"] == "AVAILABLE"
    for name in ("../evil", "a/b", ""):
        (status,) = everything[name]["model_version_status"]
        assert "Invalid model name" in status["status"]["error_message"]
    missing = everything["missing"]["model_version_status"][0]["status"]["error_message"]
    assert missing == "Model path does not exist"
    assert "no weights file model.bin" in replies["good2"]
    for where, text in replies.items():
        assert str(tmp_path) not in text, where
    assert f"Model path {secret} does not exist" in log
    assert str(tmp_path / "good2" / "2") in log


def test_an_unsafe_model_name_flag_stops_start_up(tmp_path: Path) -> None:
    make_repo(tmp_path / "good", [1])
    server = run_to_exit(
        ["--model_name", "../evil", "--model_path", str(tmp_path / "good")],
        log_dir=tmp_path / "logs",
    )
    assert server.returncode not in (None, 0)
    assert 'Invalid model name "../evil"' in server.log_text()
