"""Model management against a real server: config.json, version policies, hot reload without
dropped requests, ``auto`` shapes, layouts, mapping aliases, the model cache."""

from __future__ import annotations

import shutil
import threading
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import ovmsclient
import pytest
import requests
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from _mm_helpers import (
    F32,
    ServerProcess,
    add_model,
    channel_scale_model,
    eventually,
    infer,
    make_repo,
    model_entry,
    ready_versions,
    running_server,
    save_model,
    start_server,
    two_input_model,
    write_json_atomically,
)

POLL = "0.1"
ONES = np.ones((1, 3), np.float32)


def statuses(server: ServerProcess, name: str) -> dict[int, dict[str, Any]]:
    """TF Serving GetModelStatus through ovmsclient: version to state and error."""
    result: dict[int, dict[str, Any]] = ovmsclient.make_grpc_client(
        server.grpc_url
    ).get_model_status(name)
    return result


def states(server: ServerProcess, name: str) -> dict[int, str]:
    return {version: entry["state"] for version, entry in statuses(server, name).items()}


def config_server(
    tmp_path: Path, entries: list[dict[str, Any]], *extra: str
) -> tuple[Path, AbstractContextManager[ServerProcess]]:
    config = tmp_path / "config.json"
    write_json_atomically(config, {"model_config_list": entries})
    args = ["--config_path", str(config), "--file_system_poll_wait_seconds", POLL, *extra]
    return config, running_server(args, tmp_path / "server.log")


# ---------------------------------------------------------------------------------------------
# config.json, policies
# ---------------------------------------------------------------------------------------------
def test_two_models_from_config(tmp_path: Path) -> None:
    make_repo(tmp_path / "a", [1, 2, 3])
    make_repo(tmp_path / "b", [5])
    entries = [
        model_entry("a", "a", model_version_policy={"all": {}}, nireq=2),
        model_entry("b", "b", nireq=3),
    ]
    _, server_cm = config_server(tmp_path, entries)
    with server_cm as server:
        client = server.client()
        assert ready_versions(client, "a") == [1, 2, 3]
        for version in (1, 2, 3):
            assert infer(client, "a", {"x": ONES}, str(version))["y"].tolist() == [
                [1.0 + version] * 3
            ]
        assert infer(client, "a", {"x": ONES})["y"].tolist() == [[4.0] * 3]
        assert infer(client, "b", {"x": ONES})["y"].tolist() == [[6.0] * 3]
        assert states(server, "a") == {1: "AVAILABLE", 2: "AVAILABLE", 3: "AVAILABLE"}
        log = server.log()
    # each model compiled with its own infer-request pool
    assert "Loaded model a version 3 from" in log
    assert "nireq 2" in log.split("Loaded model a version 3")[1].splitlines()[0]
    assert "nireq 3" in log.split("Loaded model b version 5")[1].splitlines()[0]


def test_every_version_policy(tmp_path: Path) -> None:
    make_repo(tmp_path / "m", [1, 2, 3])
    entries = [
        model_entry("default", "m"),
        model_entry("latest2", "m", model_version_policy={"latest": {"num_versions": 2}}),
        model_entry("all", "m", model_version_policy={"all": {}}),
        model_entry("specific", "m", model_version_policy={"specific": {"versions": [1, 3, 9]}}),
    ]
    _, server_cm = config_server(tmp_path, entries)
    with server_cm as server:
        client = server.client()
        assert ready_versions(client, "default") == [3]
        assert ready_versions(client, "latest2") == [2, 3]
        assert ready_versions(client, "all") == [1, 2, 3]
        assert ready_versions(client, "specific") == [1, 3]
        assert infer(client, "specific", {"x": ONES}, "1")["y"].tolist() == [[2.0] * 3]
        with pytest.raises(InferenceServerException, match="requested version is not found"):
            infer(client, "specific", {"x": ONES}, "2")


# ---------------------------------------------------------------------------------------------
# hot reload with a client running
# ---------------------------------------------------------------------------------------------
class ClientLoop:
    """Threads sending requests to the default version of some models, counting failures."""

    def __init__(self, server: ServerProcess, models: list[str]) -> None:
        self._server = server
        self._models = models
        self._stop = threading.Event()
        self.failures: list[str] = []
        """Requests that got an error."""
        self.wrong: list[str] = []
        """Requests answered with values their version does not compute."""
        self.count = 0
        self.versions: dict[str, str] = {}
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(m,)) for m in models]

    def __enter__(self) -> ClientLoop:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _run(self, model: str) -> None:
        client = grpcclient.InferenceServerClient(self._server.grpc_url)
        try:
            while not self._stop.is_set():
                request = grpcclient.InferInput("x", [1, 3], "FP32")
                request.set_data_from_numpy(ONES)
                try:
                    result = client.infer(model, [request])
                except InferenceServerException as error:
                    with self._lock:
                        self.failures.append(f"{model}: {error}")
                    continue
                version = result.get_response().model_version
                expected = 1.0 + float(version)
                with self._lock:
                    self.count += 1
                    self.versions[model] = version
                    if result.as_numpy("y").tolist() != [[expected] * 3]:
                        self.wrong.append(f"{model} v{version}: {result.as_numpy('y')}")
        finally:
            client.close()

    def seen(self, model: str) -> str:
        with self._lock:
            return self.versions.get(model, "")

    def requests(self) -> int:
        with self._lock:
            return self.count


def test_versions_and_config_edits_drop_no_request(tmp_path: Path) -> None:
    make_repo(tmp_path / "a", [1, 2, 3])
    make_repo(tmp_path / "b", [1])
    make_repo(tmp_path / "c", [7])
    a_all = model_entry("a", "a", model_version_policy={"all": {}})
    config, server_cm = config_server(tmp_path, [a_all, model_entry("b", "b")])
    with server_cm as server, ClientLoop(server, ["a", "b"]) as loop:
        client = server.client()
        eventually(lambda: loop.requests() > 20, what="the client loop to run")
        # a new version becomes the default
        save_model(add_model((1, 3), 4.0), tmp_path / "a" / "4")
        eventually(lambda: loop.seen("a") == "4", what="version 4 to be the default")
        # a removed version is unloaded after its in-flight requests
        shutil.rmtree(tmp_path / "a" / "1")
        eventually(lambda: states(server, "a").get(1) == "END", what="version 1 to end")
        # config edits: add c, recompile b (nireq), then remove c and narrow a's policy
        write_json_atomically(
            config,
            {"model_config_list": [a_all, model_entry("b", "b", nireq=3), model_entry("c", "c")]},
        )
        eventually(lambda: ready_versions(client, "c") == [7], what="model c to load")
        eventually(
            lambda: server.log().count("Loaded model b version 1") == 2, what="b to recompile"
        )
        write_json_atomically(
            config, {"model_config_list": [model_entry("a", "a"), model_entry("b", "b", nireq=3)]}
        )
        eventually(lambda: ready_versions(client, "a") == [4], what="a to serve only 4")
        eventually(lambda: states(server, "c") == {7: "END"}, what="c to be retired")
        before = loop.requests()
        eventually(lambda: loop.requests() > before + 20, what="more requests")
    assert loop.failures == []
    assert loop.wrong == []
    assert loop.seen("a") == "4"
    assert loop.requests() > 100


def test_config_reload_and_config_endpoints(tmp_path: Path) -> None:
    make_repo(tmp_path / "a", [1])
    make_repo(tmp_path / "b", [2])
    config = tmp_path / "config.json"
    write_json_atomically(config, {"model_config_list": [model_entry("a", "a")]})
    args = ["--config_path", str(config), "--file_system_poll_wait_seconds", "0"]
    with running_server(args, tmp_path / "log") as server:
        url = f"http://127.0.0.1:{server.rest_port}/v1/config"
        unchanged = requests.post(f"{url}/reload", timeout=30)
        assert unchanged.status_code == 200
        assert unchanged.json() == requests.get(url, timeout=30).json()
        assert unchanged.json()["a"]["model_version_status"][0]["state"] == "AVAILABLE"

        write_json_atomically(
            config, {"model_config_list": [model_entry("a", "a"), model_entry("b", "b")]}
        )
        changed = requests.post(f"{url}/reload", timeout=60)
        assert changed.status_code == 201
        (b_status,) = changed.json()["b"]["model_version_status"]
        assert (b_status["version"], b_status["state"]) == ("2", "AVAILABLE")
        assert requests.get(url, timeout=30).json() == changed.json()

        config.write_text("{")
        invalid = requests.post(f"{url}/reload", timeout=30)
        assert invalid.status_code >= 400
        assert "Reloading config file failed" in invalid.json()["error"]
        assert "is not valid JSON" in server.log()
        assert infer(server.client(), "b", {"x": ONES})["y"].tolist() == [[3.0] * 3]


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------
def test_invalid_config_at_start_exits(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text('{"model_config_list": [')
    server = start_server(["--config_path", str(config)], tmp_path / "log", wait=False)
    assert server.process.wait(60) != 0
    assert "is not valid JSON" in server.log()


def test_bad_config_cases_leave_good_models_serving(tmp_path: Path) -> None:
    make_repo(tmp_path / "good", [1])
    (tmp_path / "good" / "0").mkdir()
    (tmp_path / "good" / "abc").mkdir()
    good = model_entry("good", "good", model_version_policy={"all": {}})
    entries = [
        good,
        model_entry("missing", "nowhere"),
        model_entry("dup", "good"),
        model_entry("dup", "good"),
        model_entry("badshape", "good", shape="(1,x)"),
    ]
    config, server_cm = config_server(tmp_path, entries)
    with server_cm as server:
        client = server.client()
        assert infer(client, "good", {"x": ONES})["y"].tolist() == [[2.0] * 3]
        assert "does not exist" in statuses(server, "missing")[0]["error_message"]
        assert "Duplicated model name dup" in statuses(server, "dup")[0]["error_message"]
        bad_shape = statuses(server, "badshape")[0]["error_message"]
        assert "model_config_list[4].config.shape: Couldn't parse shape parameter" in bad_shape
        log = server.log()
        assert "ignoring 0, abc" in log
        assert "expected version directory name to be a number greater than 0" in log

        # not JSON, then a schema failure: logged, nothing applied
        config.write_text('{"model_config_list": [')
        eventually(lambda: "is not valid JSON" in server.log(), what="the JSON error log")
        write_json_atomically(
            config, {"model_config_list": [{"config": {**good["config"], "shapes": "(1,3)"}}]}
        )
        eventually(lambda: "unknown key 'shapes'" in server.log(), what="the schema error log")
        assert infer(client, "good", {"x": ONES})["y"].tolist() == [[2.0] * 3]
        assert ready_versions(client, "good") == [1]

        # a new version folder holding garbage fails alone
        (tmp_path / "good" / "2").mkdir()
        (tmp_path / "good" / "2" / "model.xml").write_text("this is not a model")
        (tmp_path / "good" / "2" / "model.bin").write_bytes(b"\0" * 16)
        eventually(lambda: states(server, "good").get(2) == "END", what="version 2 to fail")
        assert "cannot read model file" in statuses(server, "good")[2]["error_message"]
        assert infer(client, "good", {"x": ONES})["y"].tolist() == [[2.0] * 3]

        # the served model's file is replaced by garbage, then its config changes
        (tmp_path / "good" / "1" / "model.xml").write_text("garbage")
        write_json_atomically(
            config,
            {
                "model_config_list": [
                    model_entry("good", "good", model_version_policy={"all": {}}, nireq=2)
                ]
            },
        )
        eventually(
            lambda: "still serving" in statuses(server, "good")[1]["error_message"],
            what="the failed reload in status",
        )
        assert statuses(server, "good")[1]["state"] == "AVAILABLE"
        assert infer(client, "good", {"x": ONES})["y"].tolist() == [[2.0] * 3]
        assert server.log().count("is not valid JSON") == 1


# ---------------------------------------------------------------------------------------------
# auto, layout, mapping, cache
# ---------------------------------------------------------------------------------------------
def _fixed_reshape_model() -> ov.Model:
    """``(1,3)`` input reshaped to a constant ``(1,3)``: no other shape compiles."""
    x = ops.parameter([1, 3], ov.Type.f32, name="x")
    x.output(0).get_tensor().set_names({"x"})
    y = ops.reshape(x, ops.constant(np.array([1, 3], np.int64)), special_zero=False)
    y.output(0).get_tensor().set_names({"y"})
    return ov.Model([y], [x], "fixed")


def test_auto_shape_reshapes_under_concurrent_requests(tmp_path: Path) -> None:
    make_repo(tmp_path / "m", [1])
    args = ["--model_name", "m", "--model_path", str(tmp_path / "m"), "--shape", "auto"]
    failures: list[str] = []

    def send(server: ServerProcess, rows: int) -> None:
        client = grpcclient.InferenceServerClient(server.grpc_url)
        try:
            for _ in range(15):
                data = np.full((rows, 3), rows, np.float32)
                try:
                    out = infer(client, "m", {"x": data})["y"]
                except InferenceServerException as error:
                    failures.append(str(error))
                    continue
                if out.shape != (rows, 3) or not np.all(out == rows + 1):
                    failures.append(f"rows {rows}: {out}")
        finally:
            client.close()

    with running_server(args, tmp_path / "log") as server:
        threads = [threading.Thread(target=send, args=(server, rows)) for rows in (1, 2, 1, 2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        log = server.log()
    assert failures == []
    assert "Shape auto is deprecated. Use model dynamic shapes instead" in log
    assert "reshaping to input (2,3)" in log


def test_failed_auto_reshape_is_412_and_keeps_serving(tmp_path: Path) -> None:
    save_model(_fixed_reshape_model(), tmp_path / "m" / "1")
    args = ["--model_name", "m", "--model_path", str(tmp_path / "m"), "--shape", "auto"]
    with running_server(args, tmp_path / "log") as server:
        client = server.client()
        with pytest.raises(InferenceServerException) as caught:
            infer(client, "m", {"x": np.ones((2, 3), np.float32)})
        assert caught.value.status() == "StatusCode.FAILED_PRECONDITION"
        assert "Model could not be reshaped with requested shape" in caught.value.message()
        assert infer(client, "m", {"x": ONES})["y"].tolist() == [[1.0] * 3]


def test_batch_size_auto(tmp_path: Path) -> None:
    make_repo(tmp_path / "m", [1])
    args = ["--model_name", "m", "--model_path", str(tmp_path / "m"), "--batch_size", "auto"]
    with running_server(args, tmp_path / "log") as server:
        client = server.client()
        x = np.arange(9, dtype=np.float32).reshape(3, 3)
        assert infer(client, "m", {"x": x})["y"].tolist() == (x + 1).tolist()
        assert [int(d) for d in client.get_model_metadata("m").inputs[0].shape] == [3, 3]
        with pytest.raises(InferenceServerException, match="Invalid input shape"):
            infer(client, "m", {"x": np.ones((3, 4), np.float32)})
        assert "Batch size auto is deprecated" in server.log()


@pytest.mark.parametrize("layout", ["NHWC:NCHW", '{"x": "NHWC:NCHW"}'])
def test_layout_nhwc_to_nchw(tmp_path: Path, layout: str) -> None:
    save_model(channel_scale_model(), tmp_path / "m" / "1")
    args = [
        "--model_name", "m", "--model_path", str(tmp_path / "m"),
        "--layout", layout, "--plugin_config", '{"INFERENCE_PRECISION_HINT":"f32"}',
    ]  # fmt: skip
    nhwc = np.random.default_rng(0).standard_normal((1, 4, 5, 3)).astype(np.float32)
    compiled = ov.Core().compile_model(channel_scale_model(), "CPU", F32)
    expected = compiled([nhwc.transpose(0, 3, 1, 2)])[0]
    with running_server(args, tmp_path / "log") as server:
        client = server.client()
        metadata = client.get_model_metadata("m")
        assert [int(d) for d in metadata.inputs[0].shape] == [1, 4, 5, 3]
        result = infer(client, "m", {"x": nhwc})["y"]
        with pytest.raises(InferenceServerException, match="Invalid input shape"):
            infer(client, "m", {"x": nhwc.transpose(0, 3, 1, 2).copy()})
    np.testing.assert_array_equal(result, expected)


def test_mapping_aliases(tmp_path: Path) -> None:
    folder = tmp_path / "m" / "1"
    save_model(two_input_model(), folder)
    (folder / "mapping_config.json").write_text(
        '{"inputs": {"a": "first", "b": "second"}, "outputs": {"sum": "total"}}'
    )
    args = [
        "--model_name",
        "m",
        "--model_path",
        str(tmp_path / "m"),
        "--shape",
        '{"first": "(-1,3)"}',
    ]
    with running_server(args, tmp_path / "log") as server:
        client = server.client()
        metadata = client.get_model_metadata("m")
        inputs = {tensor.name: [int(d) for d in tensor.shape] for tensor in metadata.inputs}
        assert inputs == {"first": [-1, 3], "second": [1, 3]}
        assert sorted(tensor.name for tensor in metadata.outputs) == ["diff", "total"]
        a = np.array([[1, 2, 3]], np.float32)
        b = np.array([[10, 20, 30]], np.float32)
        result = infer(client, "m", {"first": a, "second": b})
        assert result["total"].tolist() == [[11, 22, 33]]
        assert result["diff"].tolist() == [[-9, -18, -27]]
        with pytest.raises(InferenceServerException, match="Required input: first"):
            infer(client, "m", {"a": a, "second": b})
        tfs = ovmsclient.make_grpc_client(server.grpc_url).get_model_metadata("m")
        assert set(tfs["inputs"]) == {"first", "second"}


def test_cache_dir(tmp_path: Path) -> None:
    make_repo(tmp_path / "m", [1])
    cache = tmp_path / "cache"
    args = ["--model_name", "m", "--model_path", str(tmp_path / "m"), "--cache_dir", str(cache)]
    for _ in range(2):
        with running_server(args, tmp_path / "log") as server:
            assert infer(server.client(), "m", {"x": ONES})["y"].tolist() == [[2.0] * 3]
        assert any(path.is_file() for path in cache.rglob("*"))
